"""Sending the outbox of customer messages, apart from the order actors.

A message is claimed, sent, then marked sent: a crash in between leaves the claim to run
out, and the resend carries the same Message-ID, so the customer's mail program can tell.
Temporary failures are tried again with back-off, up to a number of
attempts; permanent ones are recorded and shown on the order. An order never waits for a
message; it hears only when a follow-up it is waiting for has been sent or given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from msgspec import Struct

from actors.loops import drain_repeatedly
from actors.mail import Mail
from actors.order.behaviour import FOLLOW_UPS
from actors.order.messages import NotificationSettled
from adapters.errors import OrderdError, printable
from adapters.notify.model import Notifier, NotifyError
from adapters.notify.rules import quiet_until
from adapters.postgres import mailbox, notifications

log = logging.getLogger("orderd.notifier")


class NotifierSettings(Struct, frozen=True, kw_only=True):
    max_attempts: int = 12
    retry_max_s: float = 3600.0
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    # Longer than any send takes: a claim that runs out means its sender died.
    claim_s: float = 120.0


class Outbox:
    def __init__(
        self,
        *,
        pool: Any,
        mail: Mail,
        senders: Mapping[str, Notifier],
        settings: NotifierSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._mail = mail
        self._senders = dict(senders)
        self._settings = settings
        self._clock = clock
        self._quiet = (_clock_time(settings.quiet_start), _clock_time(settings.quiet_end))
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self, limit: int = 20) -> int:
        """Send every message that is due; return how many were tried.

        Messages are claimed in one short transaction, sent outside any, and each result
        recorded in its own: nothing that fails after a message went out can undo the
        record of it and send it again (only a crash can, once, with the same Message-ID).
        """
        now = datetime.fromtimestamp(self._clock(), UTC)
        claim = now + timedelta(seconds=self._settings.claim_s)
        async with self._pool.acquire() as conn, conn.transaction():
            due = await notifications.claim_due(conn, now, claim, limit)
        if not due:
            return 0
        outcomes = await asyncio.gather(
            *(self._send(item.message, now) for item in due), return_exceptions=True
        )
        for item, outcome in zip(due, outcomes, strict=True):
            async with self._pool.acquire() as conn, conn.transaction():
                final = await self._record(conn, item, outcome, now)
                if final is not None and item.message.kind in FOLLOW_UPS:
                    settled = NotificationSettled(
                        order_id=item.order_id, kind=item.message.kind, status=final
                    )
                    posted = await mailbox.post(conn, [settled])
                else:
                    posted = []
            await self._mail.stream(posted)
        return len(due)

    async def _send(self, message: Any, now: datetime) -> str | datetime:
        """The Message-ID of the sent message, or when to try (quiet hours)."""
        sender = self._senders.get(message.channel)
        if sender is None:
            raise NotifyError(f"the {message.channel} channel is not enabled", temporary=False)
        if message.channel == "sms":
            start, end = self._quiet
            until = quiet_until(now, message.context.get("country"), start=start, end=end)
            if until is not None:
                return until
        sent = await sender.send(message)
        return sent.message_id

    async def _record(
        self, conn: Any, item: notifications.Due, outcome: object, now: datetime
    ) -> Literal["sent", "failed"] | None:
        """Write what became of one message; its final status, or None while pending."""
        kind, channel = item.message.kind, item.message.channel
        if isinstance(outcome, datetime):
            await notifications.later(conn, item.id, outcome, None, tried=False)
            return None
        if isinstance(outcome, str):
            await notifications.sent(conn, item.id, outcome, now)
            log.info("sent %s by %s for order %s", kind, channel, item.order_id)
            return "sent"
        error = printable(
            str(outcome) if isinstance(outcome, OrderdError) else type(outcome).__name__
        )
        temporary = not isinstance(outcome, OrderdError) or getattr(outcome, "temporary", False)
        attempts = item.attempts  # counted when it was claimed
        if temporary and attempts < self._settings.max_attempts:
            delay = min(self._settings.retry_max_s, 2.0 ** min(attempts, 16))
            await notifications.later(conn, item.id, now + timedelta(seconds=delay), error, True)
            log.warning(
                "%s by %s for order %s failed (attempt %d), again in %.0f s: %s",
                kind, channel, item.order_id, attempts, delay, error,
            )  # fmt: skip
            return None
        await notifications.failed(conn, item.id, error)
        log.warning(
            "%s by %s for order %s failed for good: %s", kind, channel, item.order_id, error
        )
        return "failed"

    async def run(self, stopping: asyncio.Event, every_s: float = 0.5) -> None:
        """Send due messages until ``stopping`` is set."""
        await drain_repeatedly(
            self.send_due,
            stopping,
            every_s=every_s,
            failed="sending customer messages failed",
            log=log,
            wake=self._wake,
        )

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()


def _clock_time(text: str) -> Any:
    hours, minutes = (int(part) for part in text.split(":"))
    return datetime.min.replace(hour=hours, minute=minutes).time()
