"""The stock ledger and backorders in PostgreSQL: the durable side of the allocation core.

Every movement Redis makes is written here with its idempotency key (``movement_key``);
writing the same movement twice changes nothing. What the ledger implies (on hand,
reserved, each order's reservation, open backorders) is what recovery rebuilds Redis from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from msgspec import Struct

MovementKind = Literal["set", "adjust", "reserve", "fill", "release", "commit"]


class Movement(Struct, frozen=True, kw_only=True):
    movement_key: str
    warehouse: str
    sku: str
    kind: MovementKind
    on_hand_delta: int = 0
    reserved_delta: int = 0
    backordered_delta: int = 0
    order_id: str | None = None
    op_id: str | None = None
    reason: str | None = None
    at: datetime


class QueuePlace(Struct, frozen=True, kw_only=True):
    """Where an order waits: set on its first wait in a warehouse, never moved."""

    warehouse: str
    order_id: str
    priority: int
    enqueued_at: datetime
    cancel_at: datetime | None = None


class LedgerEntry(Struct, frozen=True, kw_only=True):
    """What one stock operation changed, written in one transaction with others."""

    movements: tuple[Movement, ...] = ()
    queued: tuple[QueuePlace, ...] = ()


async def instance_id(conn: Any) -> str:
    """The identity of this database, kept in Redis to recognise whose data it holds."""
    value = await conn.fetchval("SELECT id::text FROM orderd_instance")
    return str(value)


async def write_entries(conn: Any, entries: Sequence[LedgerEntry]) -> None:
    """Write many entries in one transaction; repeated movements and places are no-ops.

    Every row only adds deltas up, so entries written in any order (concurrent batches)
    imply the same stock.
    """
    movements = [m for e in entries for m in e.movements]
    queued = [q for e in entries for q in e.queued]
    async with conn.transaction():
        if movements:
            await conn.execute(
                """
                INSERT INTO stock_ledger (movement_key, warehouse, sku, kind, on_hand_delta,
                                          reserved_delta, backordered_delta, order_id, op_id,
                                          reason, at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                     $5::bigint[], $6::bigint[], $7::bigint[], $8::text[],
                                     $9::text[], $10::text[], $11::timestamptz[])
                ON CONFLICT (movement_key) DO NOTHING
                """,
                *_columns(
                    movements,
                    (
                        "movement_key", "warehouse", "sku", "kind", "on_hand_delta",
                        "reserved_delta", "backordered_delta", "order_id", "op_id", "reason",
                        "at",
                    ),
                ),
            )  # fmt: skip
        if queued:
            await conn.execute(
                """
                INSERT INTO backorder_queue (warehouse, order_id, priority, enqueued_at,
                                             cancel_at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[],
                                     $4::timestamptz[], $5::timestamptz[])
                ON CONFLICT DO NOTHING
                """,
                *_columns(
                    queued, ("warehouse", "order_id", "priority", "enqueued_at", "cancel_at")
                ),
            )


def _columns(rows: Sequence[Struct], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(row, name) for row in rows] for name in names]


async def product_exists(conn: Any, sku: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products WHERE sku = $1)", sku))


async def movement_exists(conn: Any, movement_key: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM stock_ledger WHERE movement_key = $1)", movement_key
        )
    )


class StockRow(Struct, frozen=True):
    sku: str
    on_hand: int
    reserved: int
    backordered: int


async def implied_stock(conn: Any, warehouse: str) -> list[StockRow]:
    """Per product: on hand, reserved and backordered, as the ledger implies."""
    rows = await conn.fetch(
        """
        SELECT p.sku,
               coalesce(l.on_hand, 0)::bigint AS on_hand,
               coalesce(l.reserved, 0)::bigint AS reserved,
               coalesce(l.backordered, 0)::bigint AS backordered
        FROM products p
        LEFT JOIN (SELECT sku, sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved,
                          sum(backordered_delta) AS backordered
                   FROM stock_ledger WHERE warehouse = $1 GROUP BY sku) l ON l.sku = p.sku
        ORDER BY p.sku
        """,
        warehouse,
    )
    return [StockRow(r["sku"], r["on_hand"], r["reserved"], r["backordered"]) for r in rows]


async def implied_reservations(conn: Any, warehouse: str) -> list[tuple[str, str, int]]:
    """(order_id, sku, quantity) still reserved, as the ledger implies."""
    rows = await conn.fetch(
        """
        SELECT order_id, sku, sum(reserved_delta)::bigint AS quantity
        FROM stock_ledger
        WHERE warehouse = $1 AND order_id IS NOT NULL
        GROUP BY order_id, sku
        HAVING sum(reserved_delta) <> 0
        ORDER BY order_id, sku
        """,
        warehouse,
    )
    return [(r["order_id"], r["sku"], r["quantity"]) for r in rows]


class OpenBackorder(Struct, frozen=True):
    order_id: str
    sku: str
    quantity: int
    priority: int
    enqueued_at: datetime


async def open_backorders(conn: Any, warehouse: str) -> list[OpenBackorder]:
    """What each order still waits for, per sku, with its place in the queue."""
    rows = await conn.fetch(
        """
        SELECT l.order_id, l.sku, sum(l.backordered_delta)::bigint AS quantity,
               q.priority, q.enqueued_at
        FROM stock_ledger l
        JOIN backorder_queue q ON q.warehouse = l.warehouse AND q.order_id = l.order_id
        WHERE l.warehouse = $1 AND l.order_id IS NOT NULL
        GROUP BY l.order_id, l.sku, q.priority, q.enqueued_at
        HAVING sum(l.backordered_delta) > 0
        ORDER BY l.order_id, l.sku
        """,
        warehouse,
    )
    return [
        OpenBackorder(r["order_id"], r["sku"], r["quantity"], r["priority"], r["enqueued_at"])
        for r in rows
    ]


class RecentOp(Struct, frozen=True):
    order_id: str | None
    op_id: str
    kind: str
    sku: str
    on_hand_delta: int
    reserved_delta: int
    backordered_delta: int


async def recent_ops(conn: Any, warehouse: str, since: datetime) -> list[RecentOp]:
    """Ledger rows since ``since`` that carry an operation id, to rebuild repeat detection."""
    rows = await conn.fetch(
        """
        SELECT order_id, op_id, kind, sku, on_hand_delta, reserved_delta, backordered_delta
        FROM stock_ledger
        WHERE warehouse = $1 AND at >= $2 AND op_id IS NOT NULL
        ORDER BY id
        """,
        warehouse,
        since,
    )
    return [
        RecentOp(
            r["order_id"],
            r["op_id"],
            r["kind"],
            r["sku"],
            r["on_hand_delta"],
            r["reserved_delta"],
            r["backordered_delta"],
        )
        for r in rows
    ]


async def due_cancellations(conn: Any, now: datetime) -> list[tuple[str, str]]:
    """(warehouse, order_id) of backorders whose cancel-after deadline has passed."""
    rows = await conn.fetch(
        """
        SELECT q.warehouse, q.order_id
        FROM backorder_queue q
        WHERE q.cancel_at <= $1
          AND (SELECT sum(l.backordered_delta) FROM stock_ledger l
               WHERE l.warehouse = q.warehouse AND l.order_id = q.order_id) > 0
        ORDER BY q.warehouse, q.order_id
        """,
        now,
    )
    return [(r["warehouse"], r["order_id"]) for r in rows]
