"""Orders in PostgreSQL: the actor's state between turns, the event log, and the views
operators read.

A turn is saved in one transaction with optimistic concurrency: the ``version`` read at
the start must still be there at the end, so two processes can never both apply a turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct

from actors.order.behaviour import Snapshot
from actors.order.events import Event, OrderReceived, encode_event, event_type
from adapters.errors import OrderdError
from adapters.postgres import stock

_snapshot = msgspec.json.Decoder(Snapshot)
_encode = msgspec.json.Encoder().encode


class ConcurrentTurn(Exception):
    """Another process saved a turn of this order first; this turn must be dropped."""


class UnknownOrder(OrderdError):
    pass


class Loaded(Struct, frozen=True):
    snapshot: Snapshot | None
    version: int
    last_seq: int


class Reminder(Struct, frozen=True):
    key: str
    order_id: str
    kind: str
    due_at: datetime


async def load(conn: Any, order_id: str) -> Loaded:
    row = await conn.fetchrow(
        "SELECT actor_state::text AS state, version, last_seq FROM orders WHERE id = $1", order_id
    )
    if row is None:
        return Loaded(None, 0, 0)
    snapshot = _snapshot.decode(row["state"]) if row["state"] is not None else None
    return Loaded(snapshot, row["version"], row["last_seq"])


async def save_turn(
    conn: Any,
    *,
    order_id: str,
    loaded: Loaded,
    snapshot: Snapshot,
    events: Sequence[Event],
    seq: int,
    ledger: Sequence[stock.LedgerEntry] = (),
    reminders: Sequence[Reminder] = (),
) -> None:
    """Save the turn that applied message ``seq``; raise :class:`ConcurrentTurn` if another
    process saved one since ``loaded`` was read. Runs inside the caller's transaction."""
    order = snapshot.order
    state_json = _encode(snapshot).decode()
    if loaded.version == 0:
        inserted = await conn.fetchval(
            """
            INSERT INTO orders (id, source, external_id, name, state, state_reason, version,
                                backorder_policy, paid_at, currency, service_level, document,
                                actor_state, last_seq)
            VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13)
            ON CONFLICT (id) DO NOTHING
            RETURNING 1
            """,
            order_id,
            order.platform if order else None,
            order.external_id if order else None,
            order.name if order else None,
            snapshot.state.value,
            snapshot.reason,
            snapshot.policy,
            order.paid_at if order else None,
            order.currency if order else None,
            order.shipping_service if order else None,
            _encode(order).decode() if order else None,
            state_json,
            seq,
        )
        if inserted is None:
            raise ConcurrentTurn(order_id)
    else:
        status = await conn.execute(
            """
            UPDATE orders SET state = $3, state_reason = $4, version = version + 1,
                              backorder_policy = $5, actor_state = $6::jsonb, last_seq = $7,
                              updated_at = now()
            WHERE id = $1 AND version = $2
            """,
            order_id,
            loaded.version,
            snapshot.state.value,
            snapshot.reason,
            snapshot.policy,
            state_json,
            seq,
        )
        if status != "UPDATE 1":
            raise ConcurrentTurn(order_id)
    if any(isinstance(e, OrderReceived) for e in events) and order is not None:
        await conn.executemany(
            """
            INSERT INTO order_lines (order_id, line_no, external_line_id, sku, name, quantity,
                                     requires_shipping, grams, unit_price)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            [
                (
                    order_id, number, line.external_line_id, line.sku, line.name, line.quantity,
                    line.requires_shipping, line.grams, line.unit_price,
                )
                for number, line in enumerate(order.lines, start=1)
            ],
        )  # fmt: skip
    if order is not None:
        await _record_reserved(conn, order_id, snapshot)
    if events:
        await conn.execute(
            """
            INSERT INTO order_events (order_id, seq, type, at, data)
            SELECT $1, base.n + e.i, e.type, e.at, e.data::jsonb
            FROM unnest($2::text[], $3::timestamptz[], $4::text[]) WITH ORDINALITY
                 AS e (type, at, data, i),
                 (SELECT coalesce(max(seq), 0) AS n FROM order_events WHERE order_id = $1) base
            """,
            order_id,
            [event_type(e) for e in events],
            [e.at for e in events],
            [encode_event(e).decode() for e in events],
        )
    if ledger:
        await stock.write_entries(conn, ledger)
    if reminders:
        await conn.executemany(
            """
            INSERT INTO reminders (key, order_id, kind, due_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (key) DO NOTHING
            """,
            [(r.key, r.order_id, r.kind, r.due_at) for r in reminders],
        )


async def _record_reserved(conn: Any, order_id: str, snapshot: Snapshot) -> None:
    """Spread what the order holds per sku over its shippable lines, in line order."""
    if snapshot.order is None:
        return
    held: dict[str, int] = {}
    for holding in snapshot.holdings:
        held[holding.sku] = held.get(holding.sku, 0) + holding.reserved
    numbers, reserved = [], []
    for number, line in enumerate(snapshot.order.lines, start=1):
        units = min(held.get(line.sku, 0), line.quantity) if line.requires_shipping else 0
        held[line.sku] = held.get(line.sku, 0) - units
        numbers.append(number)
        reserved.append(units)
    await conn.execute(
        """
        UPDATE order_lines l SET reserved = u.reserved
        FROM unnest($2::int[], $3::int[]) AS u (line_no, reserved)
        WHERE l.order_id = $1 AND l.line_no = u.line_no AND l.reserved <> u.reserved
        """,
        order_id,
        numbers,
        reserved,
    )


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
               updated_at
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
        SELECT id, carrier, service, tracking_number, label_format, estimated_delivery, status
        FROM shipments WHERE order_id = $1 ORDER BY seq
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
        "paid_at": row["paid_at"].isoformat() if row["paid_at"] else None,
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
        "shipments": [
            {
                "id": r["id"],
                "carrier": r["carrier"],
                "service": r["service"],
                "tracking_number": r["tracking_number"],
                "label_format": r["label_format"],
                "estimated_delivery": (
                    r["estimated_delivery"].isoformat() if r["estimated_delivery"] else None
                ),
                "status": r["status"],
            }
            for r in shipments
        ],
        "events": [{"seq": r["seq"], "at": r["at"].isoformat(), "type": r["type"]} for r in events],
    }
