"""Sending the outbox of customer messages, apart from the order actors.

A message is claimed just before it is sent and marked sent as soon as the server took it,
not after the others claimed with it: a crash in between leaves the claim to run out, and
only such a message goes again, with the same Message-ID, so the customer's mail program
can tell. Results that come while earlier ones are being written share the next
transaction. Claims are kept in the database's real time, never the business clock (which
runs scaled in demos and tests, from each process's own start). Temporary failures are
tried again with back-off, up to a number of attempts; permanent ones are recorded and
shown on the order. An order never waits for a message; it hears only when a follow-up it
is waiting for has been sent or given up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Literal, NamedTuple

from msgspec import Struct

from actors.batching import Coalescer
from actors.errors import OrderdError, printable
from actors.loops import drain_repeatedly
from actors.mail import Mail
from actors.notify.model import MARKETING, Notifier, NotifyError, Outgoing
from actors.notify.rules import quiet_until
from actors.order.behaviour import FOLLOW_UPS
from actors.order.messages import NotificationSettled
from actors.ports.mail import Posted
from actors.ports.observe import UNOBSERVED, Observer, timed
from actors.ports.outboxes import DueNotification, NotificationOutbox, NotificationSettling

log = logging.getLogger("orderd.notifier")


class NotifierSettings(Struct, frozen=True, kw_only=True):
    max_attempts: int = 12
    retry_max_s: float = 3600.0
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    # Real seconds a process holds the messages it took. A send is cut off after half of
    # it, leaving the rest to record the result: a claim that runs out means its sender
    # died, never that it was slow.
    claim_s: float = 120.0


class Outbox:
    def __init__(
        self,
        *,
        notifications: NotificationOutbox,
        mail: Mail,
        senders: Mapping[str, Notifier],
        settings: NotifierSettings,
        clock: Callable[[], float] = time.time,
        observer: Observer = UNOBSERVED,
    ) -> None:
        self._observer = observer
        self._notifications = notifications
        self._mail = mail
        self._senders = dict(senders)
        self._settings = settings
        self._clock = clock
        self._quiet = (_clock_time(settings.quiet_start), _clock_time(settings.quiet_end))
        self._wake = asyncio.Event()
        # One write at a time: the results that come meanwhile go together in the next.
        self._results: Coalescer[_Result, list[Posted]] = Coalescer(
            self._record_together, max_in_flight=1
        )

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self, limit: int = 20) -> int:
        """Send every message that is due; return how many were tried.

        Messages are claimed in one short transaction and all sent at once, outside any;
        each result is recorded as soon as it is known, not after the others, together
        with those known while the previous write was on its way: nothing that happens to
        one message (a slow server, a failure to record) keeps another that went out from
        being recorded, and only a message still on its way when the process dies can go
        again.
        """
        now = datetime.fromtimestamp(self._clock(), UTC)
        loop = asyncio.get_running_loop()
        # Taken before the claim, so both ends come before the database's.
        claim_ends = loop.time() + self._settings.claim_s
        due = await self._notifications.claim_due(
            now, timedelta(seconds=self._settings.claim_s), limit
        )
        if not due:
            return 0
        send_by = claim_ends - self._settings.claim_s / 2
        done = await asyncio.gather(
            *(self._deliver(item, now, send_by, claim_ends) for item in due),
            return_exceptions=True,
        )
        for item, outcome in zip(due, done, strict=True):
            if isinstance(outcome, Exception):
                log.warning(
                    "%s for order %s not recorded, it goes again when its claim runs out: %s",
                    item.message.kind, item.order_id, outcome,
                )  # fmt: skip
        return len(due)

    async def _deliver(
        self, item: DueNotification, now: datetime, send_by: float, claim_ends: float
    ) -> None:
        """Send one claimed message and record what became of it, within its claim."""
        outcome: object
        try:
            async with asyncio.timeout_at(send_by):
                outcome = await self._send(item.message, now)
        except TimeoutError:
            outcome = NotifyError(
                f"sending took longer than {self._settings.claim_s / 2:.0f} s", temporary=True
            )
        except Exception as exc:
            outcome = exc
        pause = 0.05
        while True:
            try:
                posted = await self._results.submit(_Result(item, outcome, now))
                break
            except Exception as exc:
                # A message that went out and is not recorded goes again once the claim
                # runs out: keep trying while it holds.
                loop = asyncio.get_running_loop()
                if loop.time() + pause >= claim_ends:
                    raise
                log.warning("recording %s failed, trying again: %s", item.message.kind, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
        await self._mail.stream(posted)

    async def _send(self, message: Outgoing, now: datetime) -> str | datetime:
        """The Message-ID of the sent message, or when to try (quiet hours)."""
        sender = self._senders.get(message.channel)
        if sender is None:
            raise NotifyError(f"the {message.channel} channel is not enabled", temporary=False)
        if (
            message.kind in MARKETING
            and message.channel == "email"
            and await self._notifications.opted_out(message.to)
        ):
            raise Unsubscribed("the customer unsubscribed from these messages")
        if message.channel == "sms":
            start, end = self._quiet
            until = quiet_until(now, message.context.get("country"), start=start, end=end)
            if until is not None:
                return until
        sent = await timed(self._observer, "notifier", message.channel, sender.send(message))
        return sent.message_id

    async def _record_together(
        self, results: Sequence[_Result]
    ) -> Sequence[list[Posted] | BaseException]:
        """Record ``results`` in one transaction; should that fail, each in one of its own,
        so that a result that cannot be recorded keeps no other from it."""
        if len(results) > 1:
            try:
                return await self._record(results)
            except Exception as exc:
                log.warning("recording %d results together failed: %s", len(results), exc)
        return await asyncio.gather(
            *(self._record_alone(result) for result in results), return_exceptions=True
        )

    async def _record_alone(self, result: _Result) -> list[Posted]:
        [posted] = await self._record([result])
        return posted

    async def _record(self, results: Sequence[_Result]) -> list[list[Posted]]:
        """Record the messages' outcomes, and tell their orders of follow-ups settled, in
        one transaction; return what was posted to each message's order."""
        told: list[tuple[int, NotificationSettled]] = []
        async with self._notifications.settling() as settling:
            # The messages that went out, most of them, are recorded in one write.
            went = [(r.item.id, r.outcome, r.now) for r in results if isinstance(r.outcome, str)]
            recorded = await settling.sent(went) if went else set()
            for index, (item, outcome, now) in enumerate(results):
                final = await self._settle(settling, item, outcome, now, recorded)
                if final is not None and item.message.kind in FOLLOW_UPS:
                    settled = NotificationSettled(
                        order_id=item.order_id, kind=item.message.kind, status=final
                    )
                    told.append((index, settled))
            # Sorted by order: two such transactions take the orders' counters in one order.
            told.sort(key=lambda pair: pair[1].order_id)
            posted = await settling.post([settled for _, settled in told])
        per_result: list[list[Posted]] = [[] for _ in results]
        for (index, _), message in zip(told, posted, strict=True):
            per_result[index].append(message)
        return per_result

    async def _settle(
        self,
        settling: NotificationSettling,
        item: DueNotification,
        outcome: object,
        now: datetime,
        recorded: set[int],
    ) -> Literal["sent", "failed", "skipped"] | None:
        """Write what became of one message (one sent is written already: its row is in
        ``recorded`` unless it was recorded sent before); its final status, or None while
        pending (or when another sender holds it now and records it)."""
        kind, channel = item.message.kind, item.message.channel
        if isinstance(outcome, datetime):
            await settling.later(item.id, item.claim, outcome, None, tried=False)
            return None
        if isinstance(outcome, str):
            if item.id not in recorded:
                return None
            log.info("sent %s by %s for order %s", kind, channel, item.order_id)
            return "sent"
        if isinstance(outcome, Unsubscribed):
            if not await settling.skipped(item.id, item.claim, str(outcome)):
                return None
            log.info("%s for order %s not sent: unsubscribed", kind, item.order_id)
            return "skipped"
        error = printable(
            str(outcome) if isinstance(outcome, OrderdError) else type(outcome).__name__
        )
        temporary = not isinstance(outcome, OrderdError) or getattr(outcome, "temporary", False)
        attempts = item.attempts  # counted when it was claimed
        if temporary and attempts < self._settings.max_attempts:
            delay = min(self._settings.retry_max_s, 2.0 ** min(attempts, 16))
            when = now + timedelta(seconds=delay)
            if await settling.later(item.id, item.claim, when, error, tried=True):
                log.warning(
                    "%s by %s for order %s failed (attempt %d), again in %.0f s: %s",
                    kind, channel, item.order_id, attempts, delay, error,
                )  # fmt: skip
            return None
        if not await settling.failed(item.id, item.claim, error):
            return None
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
        # Results known by now are written before the database goes.
        await self._results.drain()
        for sender in self._senders.values():
            await sender.close()


class Unsubscribed(OrderdError):
    """The message sells, and its customer unsubscribed: it is skipped, not failed."""


class _Result(NamedTuple):
    """What became of a claimed message, to be recorded."""

    item: DueNotification
    outcome: object  # a Message-ID, when to try again, or the exception
    now: datetime


def _clock_time(text: str) -> clock_time:
    hours, minutes = (int(part) for part in text.split(":"))
    return datetime.min.replace(hour=hours, minute=minutes).time()
