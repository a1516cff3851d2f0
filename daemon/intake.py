"""Taking verified, parsed webhooks in: store them, recognise repeats, hand orders over.

Each delivery goes into the webhook inbox and, when it carries a paid order or a
cancellation, a message goes into the order's mailbox, in one transaction. Only then is
the platform told 202; the message is streamed to the actors right after. Deliveries
arriving together share one transaction (a handful of statements for the whole batch),
which is what lets intake keep up with a platform's bursts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from msgspec import Struct

from actors.mail import Mail
from actors.order.messages import CancelRequested, Message, OrderPaid, TrackingUpdated
from adapters.batching import Coalescer
from adapters.carriers.webhooks import TrackingUpdate
from adapters.platforms import Cancelled, Ignored, Paid
from adapters.postgres import mailbox

log = logging.getLogger("orderd.intake")


class ForOrder(Struct, frozen=True):
    """A callback (from the warehouse system) carrying a message for one of its shipments."""

    message: Message
    shipment_id: str


class Tracked(Struct, frozen=True):
    """A carrier's news of a parcel, found by its tracking number."""

    update: TrackingUpdate


Decision = Paid | Cancelled | Ignored | ForOrder | Tracked


class Answer(Struct, frozen=True):
    status: int
    body: dict[str, Any]


class Delivery(Struct, frozen=True, kw_only=True):
    source: str
    topic: str
    delivery_id: str
    event_id: str | None
    body: bytes
    decision: Decision


class StoreUnavailable(Exception):
    """PostgreSQL could not store the delivery: the platform should retry (503)."""


class Intake:
    def __init__(self, pool: Any, mail: Mail, *, max_batch: int = 256) -> None:
        self._pool = pool
        self._mail = mail
        self._batches: Coalescer[Delivery, Answer] = Coalescer(
            self._accept_batch, max_batch=max_batch, max_in_flight=4
        )
        self.outcomes: Counter[str] = Counter()

    async def accept(
        self,
        *,
        source: str,
        topic: str,
        delivery_id: str,
        event_id: str | None,
        body: bytes,
        decision: Decision,
    ) -> Answer:
        """Store one delivery (with others arriving at the same time) and say how it went."""
        answer = await self._batches.submit(
            Delivery(
                source=source,
                topic=topic[:100],
                delivery_id=delivery_id[:200],
                event_id=event_id[:200] if event_id else None,
                body=body,
                decision=decision,
            )
        )
        self.outcomes[str(answer.body["status"])] += 1
        return answer

    async def _accept_batch(self, deliveries: Sequence[Delivery]) -> list[Answer | Exception]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                answers, posted = await _store(conn, deliveries)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not store %d webhook(s): %s", len(deliveries), type(exc).__name__)
            return [StoreUnavailable(str(exc)) for _ in deliveries]
        await self._mail.stream(posted)
        return list(answers)


async def _store(
    conn: Any, deliveries: Sequence[Delivery]
) -> tuple[list[Answer], list[mailbox.Posted]]:
    new_ids = await _into_inbox(conn, deliveries)
    answers: list[Answer | None] = [None] * len(deliveries)
    messages: list[Message] = []
    settle: list[tuple[int, str, str | None, str | None]] = []
    paid = [d.decision.order.id for d in deliveries if isinstance(d.decision, Paid)]
    known = await mailbox.paid_known(conn, paid) if paid else set()
    asked = [d.decision.shipment_id for d in deliveries if isinstance(d.decision, ForOrder)]
    shipments = await _known_shipments(conn, asked) if asked else set()
    numbers = [
        (d.decision.update.carrier, d.decision.update.tracking_number)
        for d in deliveries
        if isinstance(d.decision, Tracked)
    ]
    parcels = await _parcels(conn, numbers) if numbers else {}
    for index, delivery in enumerate(deliveries):
        # pop: the same delivery twice in one batch is new only the first time.
        inbox_id = new_ids.pop((delivery.source, delivery.delivery_id), None)
        if inbox_id is None:
            answers[index] = _duplicate("this delivery was already received")
            continue
        match delivery.decision:
            case Ignored(reason=reason):
                settle.append((inbox_id, "ignored", reason, None))
                answers[index] = Answer(200, {"status": "ignored", "reason": reason})
                continue
            case Paid(order=order) if order.id in known:
                reason = "this order was already received"
                settle.append((inbox_id, "ignored", reason, order.id))
                answers[index] = _duplicate(reason)
                continue
            case Paid(order=order):
                known.add(order.id)  # a second delivery of it in this batch is a repeat
                message: Message = OrderPaid(
                    order_id=order.id, order=order, received_at=datetime.now(UTC)
                )
            case Cancelled(reason=reason):
                message = CancelRequested(
                    order_id=delivery.decision.order_id,
                    reason=reason,
                    requested_by=delivery.source,
                )
            case ForOrder(message=message, shipment_id=shipment_id):
                if (message.order_id, shipment_id) not in shipments:
                    reason = "unknown shipment"
                    settle.append((inbox_id, "ignored", reason, None))
                    answers[index] = Answer(200, {"status": "ignored", "reason": reason})
                    continue
            case Tracked(update=update):
                parcel = parcels.get((update.carrier, update.tracking_number))
                if parcel is None:
                    log.info("tracking news for an unknown %s parcel ignored", update.carrier)
                    reason = "unknown tracking number"
                    settle.append((inbox_id, "ignored", reason, None))
                    answers[index] = Answer(200, {"status": "ignored", "reason": reason})
                    continue
                order_id, shipment_id = parcel
                message = TrackingUpdated(
                    order_id=order_id,
                    shipment_id=shipment_id,
                    status=update.status,
                    carrier_status=update.carrier_status,
                    at=update.at,
                    detail=update.detail,
                    estimated_delivery=update.estimated_delivery,
                    location=update.location,
                )
        messages.append(message)
        settle.append((inbox_id, "streamed", None, message.order_id))
        answers[index] = Answer(202, {"status": "accepted", "order_id": message.order_id})
    posted = await mailbox.post(conn, messages)
    if settle:
        await conn.execute(
            """
            UPDATE webhook_inbox w SET status = s.status, reason = s.reason, order_id = s.order_id
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
                 AS s (id, status, reason, order_id)
            WHERE w.id = s.id
            """,
            [s[0] for s in settle],
            [s[1] for s in settle],
            [s[2] for s in settle],
            [s[3] for s in settle],
        )
    done = [a for a in answers if a is not None]
    assert len(done) == len(deliveries)  # every delivery got its answer above
    return done, posted


async def _into_inbox(conn: Any, deliveries: Sequence[Delivery]) -> dict[tuple[str, str], int]:
    """Insert the deliveries; return the ids of those not seen before (by delivery or event)."""
    rows = await conn.fetch(
        """
        INSERT INTO webhook_inbox (source, topic, delivery_id, event_id, external_id, body)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bytea[])
        ON CONFLICT DO NOTHING
        RETURNING id, source, delivery_id
        """,
        [d.source for d in deliveries],
        [d.topic for d in deliveries],
        [d.delivery_id for d in deliveries],
        [d.event_id for d in deliveries],
        [_external_id(d.decision) for d in deliveries],
        [d.body for d in deliveries],
    )
    return {(r["source"], r["delivery_id"]): r["id"] for r in rows}


async def _known_shipments(conn: Any, shipment_ids: Sequence[str]) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT order_id, id FROM shipments WHERE id = ANY($1::text[])", list(shipment_ids)
    )
    return {(r["order_id"], r["id"]) for r in rows}


async def _parcels(
    conn: Any, numbers: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(order, shipment) of each (carrier, tracking number) orderd shipped."""
    # Carriers reuse tracking numbers after a while: the parcel on its way now wins.
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (s.carrier, s.tracking_number)
               s.carrier, s.tracking_number, s.order_id, s.id
        FROM shipments s
        JOIN unnest($1::text[], $2::text[]) AS n (carrier, tracking_number)
          ON s.carrier = n.carrier AND s.tracking_number = n.tracking_number
        ORDER BY s.carrier, s.tracking_number, (s.status = 'shipped') DESC,
                 s.shipped_at DESC NULLS LAST
        """,
        [carrier for carrier, _ in numbers],
        [number for _, number in numbers],
    )
    return {(r["carrier"], r["tracking_number"]): (r["order_id"], r["id"]) for r in rows}


def _duplicate(reason: str) -> Answer:
    return Answer(200, {"status": "duplicate", "reason": reason})


def _external_id(decision: Decision) -> str | None:
    match decision:
        case Paid(order=order):
            return order.external_id
        case Cancelled(external_id=external_id) | Ignored(external_id=external_id):
            return external_id
    return None
