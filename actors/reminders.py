"""Durable reminders: an order actor's timers that survive restarts.

A reminder is a row in PostgreSQL; Redis keeps a sorted set of what is due when, which
:meth:`Reminders.rebuild` recreates from the rows. When one comes due it is sent to its
order as a :class:`ReminderDue` message, which activates the actor like any other. Firing
marks the row in the same transaction that stores the message, so two processes firing
together send it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from actors.mail import Mail
from actors.order.messages import ReminderDue
from actors.order.reminder import ReminderKey
from adapters.postgres import mailbox
from adapters.redis.keys import RuntimeKeys

log = logging.getLogger("orderd.reminders")


class Reminders:
    def __init__(
        self,
        *,
        pool: Any,
        redis: Redis,
        keys: RuntimeKeys,
        mail: Mail,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._mail = mail
        self._clock = clock

    async def rebuild(self) -> int:
        """Put every reminder not yet fired back in Redis; return how many."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT key, due_at FROM reminders WHERE fired_at IS NULL")
        if rows:
            await self._redis.zadd(
                self._keys.reminders,
                {r["key"]: int(r["due_at"].timestamp() * 1000) for r in rows},
            )
        return len(rows)

    async def fire_due(self, limit: int = 100) -> int:
        """Send every reminder that is due; return how many were sent."""
        now_ms = int(self._clock() * 1000)
        due = await self._redis.zrangebyscore(self._keys.reminders, "-inf", now_ms, 0, limit)
        keys = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in due]
        # PostgreSQL is the record: a reminder whose copy never reached Redis (it failed
        # just after the turn was saved) is found there too.
        async with self._pool.acquire() as conn:
            missed = await conn.fetch(
                """
                SELECT key FROM reminders
                WHERE fired_at IS NULL AND due_at <= $1
                ORDER BY due_at LIMIT $2
                """,
                datetime.fromtimestamp(now_ms / 1000, UTC),
                limit,
            )
        keys.extend(r["key"] for r in missed if r["key"] not in keys)
        sent = 0
        for key in keys:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """
                    UPDATE reminders SET fired_at = now()
                    WHERE key = $1 AND fired_at IS NULL
                    RETURNING order_id, kind, due_at
                    """,
                    key,
                )
                posted = []
                message = None if row is None else _due(key, row["order_id"], row["due_at"])
                if message is not None:
                    posted = await mailbox.post(conn, [message])
            await self._mail.stream(posted)
            await self._redis.zrem(self._keys.reminders, key)
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
