"""Delivering fulfillment requests to the warehouse system, apart from the order actors.

An order's turn stores its request; this dispatcher delivers it, retrying with back-off
while the warehouse system is away, so no order waits in a turn for a WMS. A request the
WMS refuses for good is marked failed and the order is told (it is then held for a
person). Whatever messages a delivery answers with (the sandbox's picked and packed) are
stored in the same transaction that marks it sent: each reaches the order once. A process
that dies while delivering leaves its claim to run out; another then delivers again, with
the same idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from actors.errors import printable
from actors.loops import drain_repeatedly
from actors.mail import Mail
from actors.order.messages import Message, WarehouseRefused
from actors.ports.observe import UNOBSERVED, Observer, timed
from actors.ports.outboxes import DueRequest, RequestOutbox
from actors.shipping.warehouse import WarehouseSystem, WmsError

log = logging.getLogger("orderd.fulfillment")


class Dispatcher:
    def __init__(
        self,
        *,
        requests: RequestOutbox,
        mail: Mail,
        warehouse: WarehouseSystem,
        retry_max_s: float = 300.0,
        lease_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        observer: Observer = UNOBSERVED,
    ) -> None:
        self._observer = observer
        self._requests = requests
        self._mail = mail
        self.warehouse = warehouse
        self._retry_max_s = retry_max_s
        self._lease_s = lease_s
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New requests were stored: look for due ones now rather than at the next tick."""
        self._wake.set()

    async def dispatch_due(self, limit: int = 50) -> int:
        """Deliver every request that is due; return how many were tried.

        Requests are claimed in one short transaction, delivered outside any, and settled
        in another: a slow warehouse system holds no locks that order turns wait for.
        """
        now = datetime.fromtimestamp(self._clock(), UTC)
        due = await self._requests.claim_due(now, self._lease_s, limit)
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._deliver(d) for d in due), return_exceptions=True)
        delivered: list[tuple[str, str]] = []
        answers: list[Message] = []
        async with self._requests.settling() as settling:
            for item, outcome in zip(due, outcomes, strict=True):
                request, kind = item.request, item.kind
                if isinstance(outcome, list):
                    delivered.append((request.shipment_id, kind))
                    answers.extend(outcome)
                    continue
                error = _error_text(outcome)
                if isinstance(outcome, WmsError) and not outcome.temporary:
                    log.warning(
                        "the warehouse refused the %s of shipment %s: %s",
                        kind, request.shipment_id, error,
                    )  # fmt: skip
                    refused = await settling.failed(request.shipment_id, kind, error)
                    if refused and kind == "request":
                        answers.append(
                            WarehouseRefused(
                                order_id=request.order_id,
                                shipment_id=request.shipment_id,
                                reason=error,
                            )
                        )
                    continue
                delay = min(self._retry_max_s, 2.0 ** min(item.attempts, 16))
                log.warning(
                    "delivering the %s of shipment %s failed (attempt %d), again in %.0f s: %s",
                    kind, request.shipment_id, item.attempts + 1, delay, error,
                )  # fmt: skip
                await settling.retry(
                    request.shipment_id, kind, error, now + timedelta(seconds=delay)
                )
            await settling.sent(delivered, now)
            # Answers of requests withdrawn meanwhile reach a cancelled order, which
            # ignores them.
            posted = await settling.post(answers)
        await self._mail.stream(posted)
        return len(due)

    async def _deliver(self, due: DueRequest) -> list[Message]:
        name = self.warehouse.name
        if due.kind == "cancel":
            await timed(self._observer, "wms", name, self.warehouse.cancel(due.request))
            return []
        return await timed(self._observer, "wms", name, self.warehouse.send(due.request))

    async def run(self, stopping: asyncio.Event, every_s: float = 0.5) -> None:
        """Deliver due requests until ``stopping`` is set."""
        await drain_repeatedly(
            self.dispatch_due,
            stopping,
            every_s=every_s,
            failed="delivering fulfillment requests failed",
            log=log,
            wake=self._wake,
        )

    async def close(self) -> None:
        await self.warehouse.close()


def _error_text(outcome: BaseException) -> str:
    if isinstance(outcome, WmsError):
        return printable(str(outcome))
    return printable(f"{type(outcome).__name__}: {outcome}")
