"""Orders in PostgreSQL: the actor's state between turns, the event log, and the views
operators read.

A turn is saved in one transaction with optimistic concurrency: the ``version`` read at
the start must still be there at the end, so two processes can never both apply a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from actors.errors import OrderdError
from actors.order.behaviour import Snapshot
from actors.order.events import (
    AddressChanged,
    CarrierChosen,
    DelayDetected,
    DelayEnded,
    DeliveryFailed,
    EstimateMoved,
    Event,
    FulfillmentRequested,
    LabelCreated,
    LabelVoided,
    LinesChanged,
    OrderCancelled,
    OrderCompleted,
    OrderReceived,
    PackMismatch,
    ShipmentDelivered,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentTracked,
    Shipped,
    ShortPick,
    TrackingNumberChanged,
    encode_event,
)
from actors.order.holds import describe
from actors.order.shipment import LEFT
from actors.order.steps.model import decode_holds, decode_snapshot
from actors.order.types import NormalizedOrder
from actors.ports.mail import Posted
from actors.ports.turns import ConcurrentTurn, ConcurrentTurns, Loaded, StaleTurns, Turn
from adapters.platforms.normalize import without_nul
from adapters.postgres import fulfillment, mailbox, notifications, platform_calls, shipments, stock
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_order = msgspec.json.Decoder(NormalizedOrder)
_encode = msgspec.json.Encoder().encode


# A turn's columns of the orders row, then the order's own (from its platform data).
_TURN = (
    "state text", "reason text", "policy text", "actor_state json", "last_seq int",
    "shipped_at timestamptz", "delivered_at timestamptz", "completed_at timestamptz",
)  # fmt: skip
_ORDER = (
    "source text", "external_id text", "name text", "paid_at timestamptz", "currency text",
    "service text",
)  # fmt: skip
_NEW = Rows("id text", *_TURN, *_ORDER)
_KNOWN = Rows("id text", "expected int", *_TURN, *_ORDER)
_LINES = Rows(
    "order_id text", "line_no int", "external_line_id text", "sku text", "name text",
    "quantity int", "requires_shipping bool", "grams int", "unit_price numeric",
    "reserved int", "shipped int",
)  # fmt: skip
_UNITS = Rows("order_id text", "line_no int", "reserved int", "shipped int")
_EVENTS = Rows("order_id text", "known bool", "count int", "events json")
_DOCUMENTS = Rows("order_id text", "document json")
_COUNTS = Rows("order_id text", "lines int4")
_REMINDERS = Rows("key text", "order_id text", "kind text", "due_at timestamptz")


class UnknownOrder(OrderdError):
    pass


_CHANGES_ORDER = (OrderReceived, AddressChanged, LinesChanged)
_SHIPMENT_EVENTS = (
    FulfillmentRequested, ShipmentPicked, ShipmentPacked, PackMismatch, ShortPick, CarrierChosen,
    LabelCreated, Shipped, LabelVoided, OrderCancelled, ShipmentTracked, DelayDetected,
    DelayEnded, ShipmentDelivered, DeliveryFailed, EstimateMoved, TrackingNumberChanged,
)  # fmt: skip


async def load(conn: Any, order_id: str) -> Loaded:
    return (await load_many(conn, [order_id]))[order_id]


async def load_many(conn: Any, order_ids: Sequence[str]) -> dict[str, Loaded]:
    """The saved state of each order (version 0 for one never saved), in one query."""
    rows = await conn.fetch(
        """
        SELECT o.id, o.actor_state::text AS state, d.document::text AS document, o.version,
               o.last_seq
        FROM orders o LEFT JOIN order_documents d ON d.order_id = o.id
        WHERE o.id = ANY($1::text[])
        """,
        list(order_ids),
    )
    found = {r["id"]: Loaded(_restored(r), r["version"], r["last_seq"]) for r in rows}
    return {order_id: found.get(order_id, Loaded(None, 0, 0)) for order_id in order_ids}


class PreparedTurns:
    """A batch of turns made into its statement (see :func:`prepare_turns`), to run in a
    transaction with :meth:`save`."""

    def __init__(
        self,
        turns: Sequence[Turn],
        writes: Writes,
        saved: str,
        cancels: Sequence[tuple[str, datetime]],
    ) -> None:
        self._turns = turns
        self._writes = writes
        self._saved = saved
        self._cancels = cancels

    def statement(self) -> tuple[str, list[Any]]:
        """The statement that writes the turns, and its parameters."""
        return self._writes.statement(self._saved)

    async def save(self, conn: Any) -> list[Posted]:
        """Save the turns in the caller's transaction; return the messages they told
        (themselves, or the orders their releases filled) to stream once it commits.

        If the order of any turn was saved by another process since it was loaded (its
        version moved), :class:`ConcurrentTurns` is raised: the statement wrote the other
        turns' rows as well, so the caller rolls its transaction back and saves again
        without it.
        """
        if not self._turns:
            return []
        rows = await self._writes.fetch(conn, self._saved)
        missing = {t.order_id for t in self._turns} - {r["id"] for r in rows}
        if missing:
            raise ConcurrentTurns(missing)
        # Withdrawing reads requests the statement may have just written, so it follows
        # it; messages told take their numbers from the orders' counters.
        if self._cancels:
            at = min(at for _, at in self._cancels)
            await fulfillment.withdraw(conn, [o for o, _ in self._cancels], at)
        return await mailbox.post(conn, [m for t in self._turns for m in t.told])


async def prepare_turns(turns: Sequence[Turn]) -> PreparedTurns:
    """One statement that writes many orders' turns (see :mod:`adapters.postgres.writes`).

    Made before the transaction begins, so the transaction lasts only as long as its
    round trips. The parts are encoded one event-loop step at a time: a batch of 60
    turns takes about 3 ms to encode, which webhooks would otherwise wait behind.
    """
    writes = Writes()
    saved = [
        _insert_new(writes, [t for t in turns if t.loaded.version == 0]),
        _update_known(writes, [t for t in turns if t.loaded.version > 0]),
    ]
    await asyncio.sleep(0)
    # A received order's lines are written with what they hold, and so are the lines its
    # platform changed; the others' are updated.
    received = [
        t for t in turns if any(isinstance(e, OrderReceived | LinesChanged) for e in t.events)
    ]
    # The document is written when the order is received, and again when it changes.
    _keep_documents(
        writes, [t for t in turns if any(isinstance(e, _CHANGES_ORDER) for e in t.events)]
    )
    _insert_lines(writes, received)
    fresh = {t.order_id for t in received}
    _record_reserved(
        writes, [t for t in turns if t.snapshot.order is not None and t.order_id not in fresh]
    )
    await asyncio.sleep(0)
    _append_events(writes, [t for t in turns if t.events])
    await asyncio.sleep(0)
    stock.add_entries(writes, [entry for t in turns for entry in t.ledger])
    reminders = [r for t in turns for r in t.reminders]
    if reminders:
        writes.add(
            f"""
            INSERT INTO reminders (key, order_id, kind, due_at)
            SELECT {_REMINDERS.columns} FROM {_REMINDERS.source}
            ON CONFLICT (key) DO NOTHING
            """,
            _REMINDERS.encode((r.key, r.order_id, r.kind, r.due_at) for r in reminders),
        )
    moved = [t for t in turns if any(isinstance(e, _SHIPMENT_EVENTS) for e in t.events)]
    shipments.add(
        writes,
        [(t.order_id, s, t.events[-1].at) for t in moved for s in t.snapshot.shipments],
        {
            s.id: s
            for t in moved
            if t.loaded.snapshot is not None
            for s in t.loaded.snapshot.shipments
        },
    )
    await asyncio.sleep(0)
    fulfillment.add_queued(writes, [q for t in turns for q in t.requests])
    fulfillment.resend(writes, [r for t in turns for r in t.resends])
    told = [(p, t.events[-1].at) for t in turns for p in t.platform if t.events]
    if told:
        platform_calls.add_queued(writes, [p for p, _ in told], min(at for _, at in told))
    notifications.add_queued(writes, [n for t in turns for n in t.notifications])
    short = [(e.shipment_id, e.at) for t in turns for e in t.events if isinstance(e, ShortPick)]
    if short:
        fulfillment.add_superseded(writes, [s for s, _ in short], min(at for _, at in short))
    cancels = [(t.order_id, e.at) for t in moved for e in t.events if isinstance(e, OrderCancelled)]
    select = " UNION ALL ".join(f"SELECT id FROM {name}" for name in saved if name)
    return PreparedTurns(turns, writes, select, cancels)


async def save_turns(conn: Any, turns: Sequence[Turn]) -> list[Posted]:
    """Prepare and save ``turns`` in the caller's transaction (see :class:`PreparedTurns`)."""
    return await (await prepare_turns(turns)).save(conn)


async def save_turn(conn: Any, turn: Turn) -> list[Posted]:
    """Save one turn; raise :class:`ConcurrentTurn` if another process saved first."""
    try:
        return await save_turns(conn, [turn])
    except ConcurrentTurns:
        raise ConcurrentTurn(turn.order_id) from None


class PostgresOrders:
    """The orders' state as their turns load and save it, over a connection pool
    (:class:`actors.ports.turns.OrderStore`).

    ``epochs`` tells the Redis epoch of each warehouse now: a turn's stock changes are
    saved only while Redis still holds them.
    """

    def __init__(self, pool: Any, epochs: stock.Epochs) -> None:
        self._pool = pool
        self._epochs = epochs

    async def load_many(self, order_ids: Sequence[str]) -> dict[str, Loaded]:
        async with self._pool.acquire() as conn:
            return await load_many(conn, order_ids)

    async def save(self, turns: Sequence[Turn]) -> list[Posted]:
        """Save the turns in one transaction, or none of them: :class:`StaleTurns` names
        the turns whose stock changes Redis lost meanwhile, :class:`ConcurrentTurns` those
        that another process saved first."""
        warehouses = sorted({w for t in turns for e in t.ledger for w, _ in e.epochs})
        prepared = await prepare_turns(turns)
        async with self._pool.acquire() as conn, stock.ledger_transaction(conn):
            if not warehouses:
                return await prepared.save(conn)
            # Read under the ledger's lock, beside the save: a rebuild of Redis cannot
            # change the epochs until this transaction ends. Both finish before it ends.
            current, posted = await asyncio.gather(
                self._epochs(warehouses), prepared.save(conn), return_exceptions=True
            )
            if isinstance(posted, BaseException):
                raise posted
            if isinstance(current, BaseException):
                raise current
            stale = {
                t.order_id
                for t in turns
                if not all(stock.fresh(entry, current) for entry in t.ledger)
            }
            if stale:
                raise StaleTurns(stale)
            return posted


def _milestones(turn: Turn) -> tuple[datetime | None, datetime | None, datetime | None]:
    """When the order first shipped, was delivered (its last parcel) and was completed,
    as far as this turn tells; None where it does not."""
    shipped = next((e.at for e in turn.events if isinstance(e, Shipped)), None)
    arrived = any(isinstance(e, ShipmentDelivered) for e in turn.events)
    done = next((e.at for e in turn.events if isinstance(e, OrderCompleted)), None)
    delivered = None
    if (arrived and turn.snapshot.state.value in ("delivered", "completed")) or done:
        # Delivered when its last parcel arrived, whichever news came last.
        times = [s.delivered_at for s in turn.snapshot.shipments if s.delivered_at]
        delivered = max(times) if times else None
    return shipped, delivered, done


def _insert_new(writes: Writes, turns: Sequence[Turn]) -> str | None:
    if not turns:
        return None
    return writes.add(
        f"""
        INSERT INTO orders (id, source, external_id, name, state, state_reason, version,
                            backorder_policy, paid_at, currency, service_level, actor_state,
                            last_seq, shipped_at, delivered_at, completed_at)
        SELECT id, source, external_id, name, state, reason, 1, policy, paid_at, currency,
               service, actor_state, last_seq, shipped_at, delivered_at, completed_at
        FROM (SELECT {_NEW.columns} FROM {_NEW.source}) AS t
        ON CONFLICT (id) DO NOTHING
        RETURNING id
        """,
        _NEW.encode(
            (t.order_id, *_turn_values(t), *_order_values(t.snapshot.order)) for t in turns
        ),
    )


def _turn_values(turn: Turn) -> tuple[Any, ...]:
    snapshot = turn.snapshot
    state = _state_json(snapshot)
    return (snapshot.state.value, snapshot.reason, snapshot.policy, state, turn.seq,
            *_milestones(turn))  # fmt: skip


def _order_values(order: NormalizedOrder | None) -> tuple[Any, ...]:
    if order is None:
        return (None,) * len(_ORDER)
    return (
        order.platform, order.external_id, order.name, order.paid_at, order.currency,
        order.shipping_service,
    )  # fmt: skip


def _state_json(snapshot: Snapshot) -> str:
    """The actor state without the order itself, which ``order_documents`` holds."""
    return _encode(msgspec.structs.replace(snapshot, order=None)).decode()


def _restored(row: Any) -> Snapshot | None:
    if row["state"] is None:
        return None
    snapshot = decode_snapshot(row["state"])
    if row["document"] is not None:
        snapshot = msgspec.structs.replace(snapshot, order=_order.decode(row["document"]))
    return snapshot


def _update_known(writes: Writes, turns: Sequence[Turn]) -> str | None:
    if not turns:
        return None
    # An order known before its platform data (cancelled first, or held after a dead
    # letter) gets its platform columns when the order itself is received.
    received = [
        t.snapshot.order if any(isinstance(e, OrderReceived) for e in t.events) else None
        for t in turns
    ]
    return writes.add(
        f"""
        UPDATE orders o SET state = u.state, state_reason = u.reason, version = o.version + 1,
                            backorder_policy = u.policy, actor_state = u.actor_state,
                            last_seq = u.last_seq, updated_at = now(),
                            source = coalesce(u.source, o.source),
                            external_id = coalesce(u.external_id, o.external_id),
                            name = coalesce(u.name, o.name),
                            paid_at = coalesce(u.paid_at, o.paid_at),
                            currency = coalesce(u.currency, o.currency),
                            service_level = coalesce(u.service, o.service_level),
                            shipped_at = coalesce(o.shipped_at, u.shipped_at),
                            delivered_at = coalesce(o.delivered_at, u.delivered_at),
                            completed_at = coalesce(o.completed_at, u.completed_at)
        FROM (SELECT {_KNOWN.columns} FROM {_KNOWN.source}) AS u
        WHERE o.id = u.id AND o.version = u.expected
        RETURNING o.id
        """,
        _KNOWN.encode(
            (t.order_id, t.loaded.version, *_turn_values(t), *_order_values(o))
            for t, o in zip(turns, received, strict=True)
        ),
    )


def _keep_documents(writes: Writes, turns: Sequence[Turn]) -> None:
    """The received orders' documents, written once beside the rows their turns rewrite."""
    rows = [
        (t.order_id, _encode(t.snapshot.order).decode())
        for t in turns
        if t.snapshot.order is not None
    ]
    if not rows:
        return
    writes.add(
        f"""
        INSERT INTO order_documents (order_id, document)
        SELECT {_DOCUMENTS.columns} FROM {_DOCUMENTS.source}
        ON CONFLICT (order_id) DO UPDATE SET document = excluded.document
        """,
        _DOCUMENTS.encode(rows),
    )


def _insert_lines(writes: Writes, turns: Sequence[Turn]) -> None:
    rows = [
        (
            t.order_id, number, line.external_line_id, line.sku, line.name, line.quantity,
            line.requires_shipping, line.grams, line.unit_price, reserved, shipped,
        )
        for t in turns
        if t.snapshot.order is not None
        for (number, line), (reserved, shipped) in zip(
            enumerate(t.snapshot.order.lines, start=1), _line_units(t.snapshot), strict=True
        )
    ]  # fmt: skip
    if not rows:
        return
    writes.add(
        f"""
        INSERT INTO order_lines (order_id, line_no, external_line_id, sku, name, quantity,
                                 requires_shipping, grams, unit_price, reserved, shipped)
        SELECT {_LINES.columns} FROM {_LINES.source}
        ON CONFLICT (order_id, line_no) DO UPDATE
            SET external_line_id = excluded.external_line_id, sku = excluded.sku,
                name = excluded.name, quantity = excluded.quantity,
                requires_shipping = excluded.requires_shipping, grams = excluded.grams,
                unit_price = excluded.unit_price, reserved = excluded.reserved,
                shipped = excluded.shipped
            WHERE (order_lines.external_line_id, order_lines.sku, order_lines.name,
                   order_lines.quantity, order_lines.requires_shipping, order_lines.grams,
                   order_lines.unit_price, order_lines.reserved, order_lines.shipped)
                  IS DISTINCT FROM
                  (excluded.external_line_id, excluded.sku, excluded.name, excluded.quantity,
                   excluded.requires_shipping, excluded.grams, excluded.unit_price,
                   excluded.reserved, excluded.shipped)
        """,
        _LINES.encode(rows),
    )
    # Lines an order's platform took away: beyond its lines now.
    counts = [
        (t.order_id, len(t.snapshot.order.lines))
        for t in turns
        if t.snapshot.order is not None and any(isinstance(e, LinesChanged) for e in t.events)
    ]
    if counts:
        writes.add(
            f"""
            DELETE FROM order_lines l USING (SELECT {_COUNTS.columns} FROM {_COUNTS.source}) c
            WHERE l.order_id = c.order_id AND l.line_no > c.lines
            """,
            _COUNTS.encode(counts),
        )


def _line_units(snapshot: Snapshot) -> list[tuple[int, int]]:
    """Each line's reserved and shipped units: what shipped and what the order holds per
    sku, spread over its shippable lines in line order, shipped first."""
    order = snapshot.order
    if order is None:
        return []
    held: dict[str, int] = {}
    for holding in snapshot.holdings:
        held[holding.sku] = held.get(holding.sku, 0) + holding.reserved
    sent: dict[str, int] = {}
    for shipment in snapshot.shipments:
        if shipment.status in LEFT:
            for sku, count in shipment.lines:
                sent[sku] = sent.get(sku, 0) + count
    units: list[tuple[int, int]] = []
    for line in order.lines:
        gone = held_now = 0
        if line.requires_shipping:
            gone = min(sent.get(line.sku, 0), line.quantity)
            held_now = min(held.get(line.sku, 0), line.quantity - gone)
            sent[line.sku] = sent.get(line.sku, 0) - gone
            held[line.sku] = held.get(line.sku, 0) - held_now
        units.append((held_now, gone))
    return units


def _record_reserved(writes: Writes, turns: Sequence[Turn]) -> None:
    """Each line's reserved and shipped units, as :func:`_line_units` spreads them.

    Only the lines whose units the turn changed are sent: the rows hold what the last
    save computed, and most turns (a pick, a pack, a scan) change none. Sending every
    line made PostgreSQL join them all with the table, by a scan of it while it was
    small, on every save.
    """
    rows = []
    for turn in turns:
        before = turn.loaded.snapshot
        was = _line_units(before) if before is not None else []
        for number, units in enumerate(_line_units(turn.snapshot), start=1):
            if number > len(was) or was[number - 1] != units:
                rows.append((turn.order_id, number, *units))
    if not rows:
        return
    writes.add(
        f"""
        UPDATE order_lines l SET reserved = u.reserved, shipped = u.shipped
        FROM (SELECT {_UNITS.columns} FROM {_UNITS.source}) AS u
        WHERE l.order_id = ANY($2::text[]) AND l.order_id = u.order_id
          AND l.line_no = u.line_no
          AND (l.reserved, l.shipped) IS DISTINCT FROM (u.reserved, u.shipped)
        """,
        _UNITS.encode(rows),
        # The orders named again as an array: PostgreSQL finds their lines by the key,
        # where the join alone was planned as a scan of the table.
        list(dict.fromkeys(row[0] for row in rows)),
    )


def _append_events(writes: Writes, turns: Sequence[Turn]) -> None:
    told = [turn for turn in turns if turn.events]
    if not told:
        return
    # One row per turn, numbered after the order's last event (an index look-up); a new
    # order has none yet.
    writes.add(
        f"""
        INSERT INTO order_event_turns (order_id, seq, upto, events)
        SELECT e.order_id, n.first, n.first + e.count - 1, e.events
        FROM (SELECT {_EVENTS.columns} FROM {_EVENTS.source}) AS e
        CROSS JOIN LATERAL (
            SELECT 1 + CASE WHEN e.known THEN coalesce(
                (SELECT x.upto FROM order_event_turns x WHERE x.order_id = e.order_id
                 ORDER BY x.seq DESC LIMIT 1), 0) ELSE 0 END AS first
        ) AS n
        """,
        _EVENTS.encode(
            (
                turn.order_id,
                turn.loaded.version > 0,
                len(turn.events),
                _events_json(turn.events),
            )
            for turn in told
        ),
    )


def _events_json(events: Sequence[Event]) -> str:
    """The turn's events as one JSON array, without NULs: a json column keeps one, but
    jsonb, through which the log's view reads events, refuses it (a carrier's text may
    hold one; webhooks lose theirs when they are received)."""
    return without_nul(b"[" + b",".join(encode_event(event) for event in events) + b"]").decode()


def _holds(stored: str | None) -> list[str]:
    return [describe(hold) for hold in decode_holds(stored)] if stored else []


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _shipment_view(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "warehouse": r["warehouse"],
        "status": r["status"],
        "carrier": r["carrier"],
        "carrier_account": r["carrier_account"],
        "service": r["service"],
        "service_level": r["service_level"],
        "rate": str(r["rate_amount"]) if r["rate_amount"] is not None else None,
        "currency": r["rate_currency"],
        "tracking_number": r["tracking_number"],
        "tracking_url": r["tracking_url"],
        "label_format": r["label_format"],
        "label_path": r["label_path"],
        "weight_g": r["weight_g"],
        "promised_by": _iso(r["promised_by"]),
        "estimated_delivery": _iso(r["estimated_delivery"]),
        "packed_ok": r["packed_ok"],
        "problem": r["problem"],
        "shipped_at": _iso(r["shipped_at"]),
        "tracking": {
            "status": r["tracking_status"],
            "detail": r["tracking_detail"],
            "at": _iso(r["tracking_at"]),
            "carrier_estimate": _iso(r["carrier_estimate"]),
        },
        "delayed": r["delayed"],
        "delay_episodes": r["delay_episode"],
        "delay_reason": r["delay_reason"],
        "delivered_at": _iso(r["delivered_at"]),
        "fulfillment_request": (
            {
                "status": r["request_status"],
                "attempts": r["request_attempts"],
                "last_error": r["request_error"],
                # Told to stop after the order was cancelled: pending, sent or failed.
                "cancel": r["cancel_status"],
            }
            if r["request_status"] is not None
            else None
        ),
    }


async def resolve(conn: Any, ref: str) -> str:
    """orderd's id for ``ref``: orderd's own id, the platform's order id, or its name."""
    found = await conn.fetch(
        """
        SELECT id FROM orders WHERE id = $1
        UNION SELECT id FROM orders WHERE external_id = $1
        UNION SELECT id FROM orders WHERE name = $1
        LIMIT 2
        """,
        ref,
    )
    if not found:
        raise UnknownOrder(f"no order {ref!r}")
    if len(found) > 1:
        raise UnknownOrder(f"{ref!r} names more than one order; use orderd's id")
    order_id: str = found[0]["id"]
    return order_id


async def view(conn: Any, order_id: str) -> dict[str, Any]:
    """The order as ``orderd order show --json`` prints it."""
    row = await conn.fetchrow(
        """
        SELECT id, external_id, source, name, state, state_reason, paid_at, created_at,
               updated_at, shipped_at, delivered_at, completed_at,
               (actor_state->'holds')::text AS holds
        FROM orders WHERE id = $1
        """,
        order_id,
    )
    if row is None:
        raise UnknownOrder(f"no order {order_id!r}")
    lines = await conn.fetch(
        """
        SELECT line_no, sku, name, quantity, reserved, shipped, requires_shipping
        FROM order_lines WHERE order_id = $1 ORDER BY line_no
        """,
        order_id,
    )
    shipments = await conn.fetch(
        """
        SELECT s.id, s.warehouse, s.carrier, s.carrier_account, s.service, s.service_level,
               s.rate_amount, s.rate_currency, s.tracking_number, s.tracking_url,
               s.label_format, s.label_path, s.weight_g, s.promised_by, s.estimated_delivery,
               s.status, s.packed_ok, s.problem, s.shipped_at, s.tracking_status,
               s.tracking_detail, s.tracking_at, s.carrier_estimate, s.delayed,
               s.delay_episode, s.delay_reason, s.delivered_at,
               r.status AS request_status, r.attempts AS request_attempts,
               r.last_error AS request_error, c.status AS cancel_status
        FROM shipments s
        LEFT JOIN fulfillment_requests r ON r.shipment_id = s.id AND r.kind = 'request'
        LEFT JOIN fulfillment_requests c ON c.shipment_id = s.id AND c.kind = 'cancel'
        WHERE s.order_id = $1 ORDER BY s.seq
        """,
        order_id,
    )
    events = await conn.fetch(
        "SELECT seq, type, at FROM order_events WHERE order_id = $1 ORDER BY seq", order_id
    )
    return {
        "id": row["id"],
        "external_id": row["external_id"],
        "source": row["source"],
        "name": row["name"],
        "state": row["state"],
        "reason": row["state_reason"],
        # What holds the order for a person, in words ("shipment S1", "dead letter 12").
        "holds": _holds(row["holds"]),
        "paid_at": row["paid_at"].isoformat() if row["paid_at"] else None,
        "shipped_at": _iso(row["shipped_at"]),
        "delivered_at": _iso(row["delivered_at"]),
        "completed_at": _iso(row["completed_at"]),
        "lines": [
            {
                "line": r["line_no"],
                "sku": r["sku"],
                "name": r["name"],
                "quantity": r["quantity"],
                "reserved": r["reserved"],
                "shipped": r["shipped"],
                "requires_shipping": r["requires_shipping"],
            }
            for r in lines
        ],
        "shipments": [_shipment_view(r) for r in shipments],
        "messages": await notifications.of_order(conn, order_id),
        "platform_calls": await platform_calls.of_order(conn, order_id),
        "events": [{"seq": r["seq"], "at": r["at"].isoformat(), "type": r["type"]} for r in events],
    }
