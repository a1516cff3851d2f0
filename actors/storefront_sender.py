"""Delivering the platform outbox: the stores' platforms told of their orders' parcels.

Calls are claimed, delivered outside any transaction, and each result recorded on its
own: a platform that is slow or throttles holds up no order turn and no other call. A
temporary failure is tried again with back-off (after the wait the platform asked for,
when it said); a refusal is recorded for good and shown with the order. A process that
dies while delivering leaves its claim to run out; the call then goes again, and the
adapter finds what its first try recorded (see :class:`actors.storefront.Storefront`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from actors.errors import printable
from actors.loops import drain_repeatedly
from actors.ports.observe import UNOBSERVED, Observer, timed
from actors.ports.outboxes import DueCall, PlatformOutbox
from actors.storefront import (
    ParcelDelivered,
    ParcelShipped,
    PlatformError,
    Storefront,
    TrackingChanged,
)

log = logging.getLogger("orderd.storefront")


class StorefrontSender:
    def __init__(
        self,
        *,
        calls: PlatformOutbox,
        platforms: Mapping[str, Storefront],
        retry_max_s: float = 600.0,
        lease_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        observer: Observer = UNOBSERVED,
    ) -> None:
        self._observer = observer
        self._calls = calls
        self._platforms = dict(platforms)
        self._retry_max_s = retry_max_s
        self._lease_s = lease_s
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self, limit: int = 20) -> int:
        """Deliver every call that is due; return how many were tried."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        due = await self._calls.claim_due(now, self._lease_s, limit)
        if due:
            await asyncio.gather(*(self._deliver(call, now) for call in due))
        return len(due)

    async def _deliver(self, call: DueCall, now: datetime) -> None:
        parcel = call.parcel
        platform = self._platforms.get(parcel.platform)
        try:
            if platform is None:
                raise PlatformError(
                    f"write-back to {parcel.platform} is not configured", temporary=False
                )
            match parcel:
                case ParcelShipped():
                    told = platform.parcel_shipped(parcel)
                case ParcelDelivered():
                    told = platform.parcel_delivered(parcel)
                case TrackingChanged():
                    told = platform.tracking_changed(parcel)
            result = await timed(self._observer, "platform", parcel.platform, told)
        except Exception as exc:
            await self._failed(call, exc, now)
            return
        await self._calls.sent(call.key, result, now)
        log.info("%s told of %s", parcel.platform, call.key.split(":", 1)[1])

    async def _failed(self, call: DueCall, exc: Exception, now: datetime) -> None:
        error = printable(str(exc) if isinstance(exc, PlatformError) else type(exc).__name__)
        if isinstance(exc, PlatformError) and not exc.temporary:
            log.warning("%s refused %s for good: %s", call.parcel.platform, call.key, error)
            await self._calls.failed(call.key, error)
            return
        # As long as the platform asked to wait (a throttle), else backing off.
        asked = exc.retry_after_s if isinstance(exc, PlatformError) else None
        delay = min(
            self._retry_max_s, asked if asked is not None else 2.0 ** min(call.attempts, 16)
        )
        log.warning(
            "telling %s of %s failed (attempt %d), again in %.1f s: %s",
            call.parcel.platform, call.key, call.attempts + 1, delay, error,
        )  # fmt: skip
        await self._calls.retry(call.key, error, now + timedelta(seconds=delay))

    async def run(self, stopping: asyncio.Event, every_s: float = 1.0) -> None:
        """Deliver due calls until ``stopping`` is set."""
        await drain_repeatedly(
            self.send_due,
            stopping,
            every_s=every_s,
            failed="telling the platforms failed",
            log=log,
            wake=self._wake,
        )

    async def close(self) -> None:
        for platform in self._platforms.values():
            await platform.close()
