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

MovementKind = Literal["set", "adjust", "reserve", "release", "commit"]


class Movement(Struct, frozen=True, kw_only=True):
    movement_key: str
    warehouse: str
    sku: str
    kind: MovementKind
    on_hand_delta: int = 0
    reserved_delta: int = 0
    order_id: str | None = None
    op_id: str | None = None
    reason: str | None = None
    at: datetime


class BackorderOpened(Struct, frozen=True, kw_only=True):
    warehouse: str
    order_id: str
    op_id: str
    sku: str
    quantity: int
    priority: int
    enqueued_at: datetime
    cancel_at: datetime | None = None


class BackordersClosed(Struct, frozen=True, kw_only=True):
    """Every open backorder of the order in the warehouse is filled or released."""

    warehouse: str
    order_id: str
    closed_by: Literal["filled", "released"]
    at: datetime


class LedgerEntry(Struct, frozen=True, kw_only=True):
    """What one stock operation changed, written in one transaction with others."""

    movements: tuple[Movement, ...] = ()
    opened: tuple[BackorderOpened, ...] = ()
    closed: tuple[BackordersClosed, ...] = ()


async def instance_id(conn: Any) -> str:
    """The identity of this database, kept in Redis to recognise whose data it holds."""
    value = await conn.fetchval("SELECT id::text FROM orderd_instance")
    return str(value)


async def write_entries(conn: Any, entries: Sequence[LedgerEntry]) -> None:
    """Write many entries in one transaction; repeated movements and backorders are no-ops."""
    movements = [m for e in entries for m in e.movements]
    opened = [b for e in entries for b in e.opened]
    closed = [c for e in entries for c in e.closed]
    async with conn.transaction():
        if movements:
            await conn.execute(
                """
                INSERT INTO stock_ledger (movement_key, warehouse, sku, kind, on_hand_delta,
                                          reserved_delta, order_id, op_id, reason, at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                     $5::bigint[], $6::bigint[], $7::text[], $8::text[],
                                     $9::text[], $10::timestamptz[])
                ON CONFLICT (movement_key) DO NOTHING
                """,
                *_columns(
                    movements,
                    (
                        "movement_key", "warehouse", "sku", "kind", "on_hand_delta",
                        "reserved_delta", "order_id", "op_id", "reason", "at",
                    ),
                ),
            )  # fmt: skip
        if opened:
            await conn.execute(
                """
                INSERT INTO backorders (warehouse, order_id, op_id, sku, quantity, priority,
                                        enqueued_at, cancel_at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                     $5::int[], $6::smallint[], $7::timestamptz[],
                                     $8::timestamptz[])
                ON CONFLICT DO NOTHING
                """,
                *_columns(
                    opened,
                    (
                        "warehouse", "order_id", "op_id", "sku", "quantity", "priority",
                        "enqueued_at", "cancel_at",
                    ),
                ),
            )  # fmt: skip
        if closed:
            await conn.execute(
                """
                UPDATE backorders b SET closed_at = c.at, closed_by = c.closed_by
                FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                     AS c (warehouse, order_id, closed_by, at)
                WHERE b.warehouse = c.warehouse AND b.order_id = c.order_id
                  AND b.closed_at IS NULL
                """,
                *_columns(closed, ("warehouse", "order_id", "closed_by", "at")),
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
    """Per product: on hand and reserved as the ledger implies, and open backorders."""
    rows = await conn.fetch(
        """
        SELECT p.sku,
               coalesce(l.on_hand, 0)::bigint AS on_hand,
               coalesce(l.reserved, 0)::bigint AS reserved,
               coalesce(b.waiting, 0)::bigint AS backordered
        FROM products p
        LEFT JOIN (SELECT sku, sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved
                   FROM stock_ledger WHERE warehouse = $1 GROUP BY sku) l ON l.sku = p.sku
        LEFT JOIN (SELECT sku, sum(quantity) AS waiting
                   FROM backorders WHERE warehouse = $1 AND closed_at IS NULL
                   GROUP BY sku) b ON b.sku = p.sku
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
    """Open backorders summed per (order, sku), with the order's queue position inputs."""
    rows = await conn.fetch(
        """
        SELECT order_id, sku, sum(quantity)::bigint AS quantity,
               max(max(priority)) OVER (PARTITION BY order_id) AS priority,
               min(min(enqueued_at)) OVER (PARTITION BY order_id) AS enqueued_at
        FROM backorders
        WHERE warehouse = $1 AND closed_at IS NULL
        GROUP BY order_id, sku
        ORDER BY order_id, sku
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


async def recent_ops(conn: Any, warehouse: str, since: datetime) -> list[RecentOp]:
    """Ledger rows since ``since`` that carry an operation id, to rebuild repeat detection."""
    rows = await conn.fetch(
        """
        SELECT order_id, op_id, kind, sku, on_hand_delta, reserved_delta
        FROM stock_ledger
        WHERE warehouse = $1 AND at >= $2 AND op_id IS NOT NULL
        ORDER BY id
        """,
        warehouse,
        since,
    )
    return [
        RecentOp(
            r["order_id"], r["op_id"], r["kind"], r["sku"], r["on_hand_delta"], r["reserved_delta"]
        )
        for r in rows
    ]


async def backordered_by_op(
    conn: Any, warehouse: str, since: datetime
) -> dict[tuple[str, str], dict[str, int]]:
    """(order_id, op_id) -> sku -> quantity queued by that reservation, open or not."""
    rows = await conn.fetch(
        """
        SELECT order_id, op_id, sku, quantity FROM backorders
        WHERE warehouse = $1 AND enqueued_at >= $2
        """,
        warehouse,
        since,
    )
    found: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        found.setdefault((r["order_id"], r["op_id"]), {})[r["sku"]] = r["quantity"]
    return found


async def due_cancellations(conn: Any, now: datetime) -> list[tuple[str, str]]:
    """(warehouse, order_id) of backorders whose cancel-after deadline has passed."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT warehouse, order_id FROM backorders
        WHERE closed_at IS NULL AND cancel_at IS NOT NULL AND cancel_at <= $1
        ORDER BY warehouse, order_id
        """,
        now,
    )
    return [(r["warehouse"], r["order_id"]) for r in rows]
