"""Durable reminders: an order actor's timers that survive restarts.

A reminder is a row in PostgreSQL (the store); Redis keeps a sorted set of what is due
when (the schedule), which :meth:`Reminders.rebuild` recreates from the rows. When one
comes due it is sent to its order as a :class:`ReminderDue` message, which activates the
actor like any other. Firing marks the row in the same transaction that stores the
message, so two processes firing together send it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from actors.mail import Mail
from actors.order.messages import ReminderDue
from actors.order.reminder import ReminderKey
from actors.ports.mail import Posted
from actors.ports.reminders import ReminderSchedule, ReminderStore

log = logging.getLogger("orderd.reminders")


class Reminders:
    def __init__(
        self,
        *,
        store: ReminderStore,
        schedule: ReminderSchedule,
        mail: Mail,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._schedule = schedule
        self._mail = mail
        self._clock = clock

    async def rebuild(self) -> int:
        """Put every reminder not yet fired back in the schedule; return how many."""
        unfired = await self._store.unfired()
        if unfired:
            await self._schedule.add(unfired)
        return len(unfired)

    async def fire_due(self, limit: int = 100) -> int:
        """Send every reminder that is due; return how many were sent."""
        now_ms = int(self._clock() * 1000)
        keys = await self._schedule.due(now_ms, limit)
        # The store is the record: a reminder whose copy never reached the schedule (it
        # failed just after the turn was saved) is found there too.
        missed = await self._store.due(datetime.fromtimestamp(now_ms / 1000, UTC), limit)
        keys.extend(key for key in missed if key not in keys)
        sent = 0
        for key in keys:
            async with self._store.firing() as firing:
                reminder = await firing.fire(key)
                posted: list[Posted] = []
                message = (
                    None if reminder is None else _due(key, reminder.order_id, reminder.due_at)
                )
                if message is not None:
                    posted = await firing.post([message])
            await self._mail.stream(posted)
            await self._schedule.remove(key)
            sent += len(posted)
        return sent

    async def run(self, stopping: asyncio.Event, every_s: float = 1.0) -> None:
        """Fire due reminders until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.fire_due()
            except Exception as exc:
                # Redis or PostgreSQL away, most likely: what is due stays due, for the
                # next pass. Nothing here may end the loop but ``stopping``.
                log.warning("firing reminders failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_s)


def _due(key: str, order_id: str, due_at: datetime) -> ReminderDue | None:
    """The message a fired reminder sends its order; None for a key no order reads (of
    a kind this version does not know), which is fired without a message."""
    try:
        parsed = ReminderKey.parse(key)
    except ValueError as exc:
        log.warning("reminder %s of order %s not sent: %s", key, order_id, exc)
        return None
    return ReminderDue(
        order_id=order_id, kind=parsed.kind, key=key, due_at=due_at, scope=parsed.scope
    )
