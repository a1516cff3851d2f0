"""Taking verified, parsed webhooks in: store them, recognise repeats, hand orders over.

Each delivery goes into the webhook inbox and, when it carries a paid order or a
cancellation, a message goes into the order's mailbox, in one transaction. The message
is then streamed to the actors, and only then is the platform told 202. Deliveries
arriving together share one statement (one round trip for the whole batch), which is
what lets intake keep up with a platform's bursts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from msgspec import Struct

from actors.batching import Coalescer
from actors.mail import Mail
from actors.order.messages import (
    CancelRequested,
    Message,
    OrderChanged,
    OrderPaid,
    TrackingUpdated,
    encode_message,
)
from actors.ports.mail import Posted
from adapters.carriers.webhooks import TrackingUpdate
from adapters.platforms import Cancelled, Changed, Ignored, Paid
from adapters.postgres.rows import Rows

log = logging.getLogger("orderd.intake")


class ForOrder(Struct, frozen=True):
    """A callback (from the warehouse system) carrying a message for one of its shipments."""

    message: Message
    shipment_id: str


class Tracked(Struct, frozen=True):
    """A carrier's news of a parcel, found by its tracking number."""

    update: TrackingUpdate


Decision = Paid | Cancelled | Changed | Ignored | ForOrder | Tracked


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
    def __init__(
        self,
        pool: Any,
        mail: Mail,
        *,
        max_batch: int = 256,
        burst: int = 16,
        calm_after_s: float = 0.1,
        linger_s: float = 0.002,
    ) -> None:
        self._pool = pool
        # Webhooks being handled at once that make a burst: a steady flow has a few (a
        # thousand a second answered in 10 ms is ten at a time). Under pressure the turns
        # make room, which keeps a steady flow's answers near that time.
        self._burst = burst
        self._in_progress = 0
        self._pressed_until = 0.0
        self._calm_after_s = calm_after_s
        self._mail = mail
        # A webhook waits up to linger_s for others to share its statement and its stream
        # call. At a steady 1,000/s, 2 ms made batches of two or three and took the machine
        # from about 73% busy to 57% (bench/intake.py --roles intake), for 0.5 ms more at
        # the median; in a flood, batches fill before the time is up.
        self._batches: Coalescer[Delivery, Answer] = Coalescer(
            self._accept_batch, max_batch=max_batch, max_in_flight=2, linger_s=linger_s
        )
        # (source, what became of it): a platform, the warehouse system or a carrier.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def pressed(self) -> bool:
        """A burst of webhooks is in: the order actors should make room. It holds for a
        moment after, so that it does not flicker between one batch and the next."""
        now = time.monotonic()
        if self._in_progress >= self._burst:
            self._pressed_until = now + self._calm_after_s
            return True
        return now < self._pressed_until

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
        self._in_progress += 1
        try:
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
        finally:
            self._in_progress -= 1
        self.outcomes[source, str(answer.body["status"])] += 1
        return answer

    async def _accept_batch(self, deliveries: Sequence[Delivery]) -> list[Answer | Exception]:
        try:
            answers, posted = await self._store(deliveries)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not store %d webhook(s): %s", len(deliveries), type(exc).__name__)
            return [StoreUnavailable(str(exc)) for _ in deliveries]
        await self._mail.stream(posted)
        return list(answers)

    async def _store(self, deliveries: Sequence[Delivery]) -> tuple[list[Answer], list[Posted]]:
        tries = 1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    return await _store(conn, deliveries)
            except asyncpg.UniqueViolationError:
                # Another process stored the same new order's paid message between this
                # statement's snapshot and its insert: the mailbox's constraint refused the
                # second copy and nothing was written. Stored again, the batch sees the
                # first and answers its delivery as a duplicate.
                if tries == _STORE_TRIES:
                    raise
                tries += 1


_STORE_TRIES = 3


class _Plan(Struct, frozen=True):
    """What storing one delivery means, decided before the statement that stores it."""

    message: Message | None  # None: recorded as ignored, for the reason
    reason: str | None = None

    @property
    def order_id(self) -> str | None:
        return self.message.order_id if self.message is not None else None

    @property
    def paid(self) -> bool:
        return isinstance(self.message, OrderPaid)


async def _store(conn: Any, deliveries: Sequence[Delivery]) -> tuple[list[Answer], list[Posted]]:
    plans = await _plan(conn, deliveries)
    answers: list[Answer | None] = [None] * len(deliveries)
    posted: list[Posted] = []
    rounds = _rounds(deliveries, plans, answers)
    # One round is one statement, atomic by itself; more share a transaction.
    async with conn.transaction() if len(rounds) > 1 else contextlib.nullcontext():
        for round_ in rounds:
            stored = await _store_round(
                conn, [deliveries[i] for i in round_], [plans[i] for i in round_]
            )
            for index, outcome in zip(round_, stored, strict=True):
                answers[index] = _answer(plans[index], outcome, posted)
    done = [a for a in answers if a is not None]
    assert len(done) == len(deliveries)  # every delivery got its answer above
    return done, posted


def _answer(plan: _Plan, outcome: _Stored, posted: list[Posted]) -> Answer:
    if not outcome.new:
        return _duplicate("this delivery was already received")
    if outcome.posted is None:
        status = "duplicate" if plan.paid else "ignored"
        return Answer(200, {"status": status, "reason": outcome.why_not})
    posted.append(outcome.posted)
    return Answer(202, {"status": "accepted", "order_id": outcome.posted.order_id})


async def _plan(conn: Any, deliveries: Sequence[Delivery]) -> list[_Plan]:
    """The message each delivery becomes, or why it becomes none.

    Callbacks and tracking news name a shipment or a parcel: those are looked up first
    (they are few beside a burst of orders). Whether a paid order is a repeat is left to
    the statement that stores it.
    """
    asked = [d.decision.shipment_id for d in deliveries if isinstance(d.decision, ForOrder)]
    shipments = await _known_shipments(conn, asked) if asked else set()
    changed = [d.decision.order.id for d in deliveries if isinstance(d.decision, Changed)]
    orders = await _known_orders(conn, changed) if changed else set()
    numbers = [
        (d.decision.update.carrier, d.decision.update.tracking_number)
        for d in deliveries
        if isinstance(d.decision, Tracked)
    ]
    parcels = await _parcels(conn, numbers) if numbers else {}
    return [_plan_one(d, shipments, orders, parcels) for d in deliveries]


def _plan_one(
    delivery: Delivery,
    shipments: set[tuple[str, str]],
    orders: set[str],
    parcels: dict[tuple[str, str], tuple[str, str]],
) -> _Plan:
    match delivery.decision:
        case Ignored(reason=reason):
            return _Plan(None, reason)
        case Paid(order=order):
            paid = OrderPaid(order_id=order.id, order=order, received_at=datetime.now(UTC))
            return _Plan(paid)
        case Cancelled(reason=reason) as cancelled:
            message = CancelRequested(
                order_id=cancelled.order_id, reason=reason, requested_by=delivery.source
            )
            return _Plan(message)
        case Changed(order=order):
            if order.id not in orders:
                # Platforms tell of every change, to orders never paid as well.
                return _Plan(None, "not an order orderd received")
            return _Plan(OrderChanged(order_id=order.id, order=order, by=delivery.source))
        case ForOrder(message=for_order, shipment_id=shipment_id):
            if (for_order.order_id, shipment_id) not in shipments:
                return _Plan(None, "unknown shipment")
            return _Plan(for_order)
        case Tracked(update=update):
            parcel = parcels.get((update.carrier, update.tracking_number))
            if parcel is None:
                log.info("tracking news for an unknown %s parcel ignored", update.carrier)
                return _Plan(None, "unknown tracking number")
            order_id, shipment_id = parcel
            news = TrackingUpdated(
                order_id=order_id,
                shipment_id=shipment_id,
                status=update.status,
                carrier_status=update.carrier_status,
                at=update.at,
                detail=update.detail,
                estimated_delivery=update.estimated_delivery,
                location=update.location,
            )
            return _Plan(news)


def _rounds(
    deliveries: Sequence[Delivery], plans: Sequence[_Plan], answers: list[Answer | None]
) -> list[list[int]]:
    """The deliveries to store, in rounds that each hold a paid order at most once.

    A delivery repeated within the batch is a duplicate at once: the first one decides.
    A paid order arriving twice in one batch (orders/create and orders/paid together) is
    stored in a later round, after the first: it is a repeat only if the first was new.
    """
    seen: set[tuple[str, str, str]] = set()
    rounds: list[list[int]] = []
    last_round: dict[str, int] = {}  # paid order -> the round that last took it
    for index, delivery in enumerate(deliveries):
        keys = [(delivery.source, "delivery", delivery.delivery_id)]
        if delivery.event_id:
            keys.append((delivery.source, "event", delivery.event_id))
        if any(key in seen for key in keys):
            answers[index] = _duplicate("this delivery was already received")
            continue
        seen.update(keys)
        plan = plans[index]
        at = 0
        if plan.paid and plan.order_id is not None:
            at = last_round.get(plan.order_id, -1) + 1
            last_round[plan.order_id] = at
        while len(rounds) <= at:
            rounds.append([])
        rounds[at].append(index)
    return rounds


# One statement stores a round: the inbox rows of the new deliveries, the next sequence
# numbers of their orders, their messages and the note that they are not streamed yet
# (see adapters.postgres.mailbox); a paid order whose paid message is already stored is
# recorded as a repeat. One round trip for the whole batch keeps intake's share
# of PostgreSQL, and of the CPU both wait on, small.
#
# The deliveries' fields come as JSON rows ($1); their bodies and messages as one bytea
# ($2) that each row points into. Arrays would cost the client about a microsecond an
# element, ten elements a delivery.
_INPUT = Rows(
    "idx int", "source text", "topic text", "delivery_id text", "event_id text",
    "external_id text", "order_id text", "type text", "reason text",
    "body_at int", "body_len int", "message_at int", "message_len int",
)  # fmt: skip
_STORE = f"""
WITH given AS (
    SELECT {_INPUT.columns} FROM {_INPUT.source}
), input AS (
    SELECT g.*, substring($2::bytea FROM g.body_at + 1 FOR g.body_len) AS body,
           substring($2::bytea FROM g.message_at + 1 FOR g.message_len) AS message
    FROM given g
), known AS (
    -- = ANY of the batch's orders: an index look-up per order, whatever the mailbox's size
    SELECT DISTINCT order_id FROM mailbox
    WHERE type = 'order_paid'
      AND order_id = ANY(ARRAY(SELECT order_id FROM given WHERE order_id IS NOT NULL))
), decided AS (
    SELECT i.*,
           CASE WHEN i.type = 'order_paid' AND i.order_id IN (SELECT order_id FROM known)
                THEN 'this order was already received'
                ELSE i.reason END AS why_not
    FROM input i
), inbox AS (
    INSERT INTO webhook_inbox (source, topic, delivery_id, event_id, external_id, body,
                               status, reason, order_id)
    SELECT source, topic, delivery_id, event_id, external_id, body,
           CASE WHEN why_not IS NULL THEN 'streamed' ELSE 'ignored' END, why_not, order_id
    FROM decided ORDER BY idx
    ON CONFLICT DO NOTHING
    RETURNING source, delivery_id
), sent AS (
    SELECT d.idx, d.order_id, d.type, d.message,
           row_number() OVER (PARTITION BY d.order_id ORDER BY d.idx) AS nth,
           count(*) OVER (PARTITION BY d.order_id) AS of
    FROM decided d
    JOIN inbox n ON n.source = d.source AND n.delivery_id = d.delivery_id
    WHERE d.why_not IS NULL
), counters AS (
    INSERT INTO order_seq (order_id, last)
    SELECT order_id, count(*) FROM sent GROUP BY order_id
    ORDER BY order_id COLLATE "C"  -- lock order: as the mailbox's post sorts them
    ON CONFLICT (order_id) DO UPDATE SET last = order_seq.last + excluded.last
    RETURNING order_id, last
), numbered AS (
    SELECT s.*, (c.last - s.of + s.nth)::int AS seq
    FROM sent s JOIN counters c USING (order_id)
), stored AS (
    INSERT INTO mailbox (order_id, seq, type, body)
    SELECT order_id, seq, type, message FROM numbered ORDER BY idx
    RETURNING id, order_id, seq
), batch AS (
    INSERT INTO unstreamed (message_ids)
    SELECT array_agg(id ORDER BY id) FROM stored HAVING count(*) > 0
    RETURNING id
)
SELECT d.idx, n.source IS NOT NULL AS new, d.why_not, st.id AS mailbox_id, st.seq,
       (SELECT id FROM batch) AS batch
FROM decided d
LEFT JOIN inbox n ON n.source = d.source AND n.delivery_id = d.delivery_id
LEFT JOIN numbered s ON s.idx = d.idx
LEFT JOIN stored st ON st.order_id = s.order_id AND st.seq = s.seq
ORDER BY d.idx
"""


class _Stored(Struct, frozen=True):
    new: bool  # False: the inbox already had this delivery
    why_not: str | None
    posted: Posted | None


async def _store_round(
    conn: Any, deliveries: Sequence[Delivery], plans: Sequence[_Plan]
) -> list[_Stored]:
    bodies = [encode_message(p.message) if p.message is not None else None for p in plans]
    given, blob, at = [], [], 0
    for index, (delivery, plan, body) in enumerate(zip(deliveries, plans, bodies, strict=True)):
        body_at, at = at, at + len(delivery.body)
        blob.append(delivery.body)
        message_at = message_len = None
        if body is not None:
            message_at, message_len, at = at, len(body), at + len(body)
            blob.append(body)
        tag = type(plan.message).__struct_config__.tag if plan.message is not None else None
        given.append(
            (index, delivery.source, delivery.topic, delivery.delivery_id, delivery.event_id,
             _external_id(delivery.decision), plan.order_id, tag, plan.reason,
             body_at, len(delivery.body), message_at, message_len)
        )  # fmt: skip
    rows = await conn.fetch(_STORE, _INPUT.encode(given), b"".join(blob))
    stored = []
    for row, plan, body in zip(rows, plans, bodies, strict=True):
        posted = None
        if row["mailbox_id"] is not None and plan.order_id is not None and body is not None:
            posted = Posted(row["mailbox_id"], plan.order_id, row["seq"], body, row["batch"])
        stored.append(_Stored(row["new"], row["why_not"], posted))
    return stored


async def _known_orders(conn: Any, order_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch("SELECT id FROM orders WHERE id = ANY($1::text[])", order_ids)
    return {r["id"] for r in rows}


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
        case Paid(order=order) | Changed(order=order):
            return order.external_id
        case Cancelled(external_id=external_id) | Ignored(external_id=external_id):
            return external_id
    return None
