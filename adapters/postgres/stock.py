"""The stock ledger and backorder queue places in PostgreSQL: the durable side of the
allocation core.

Every operation Redis applies is written here as one row with its idempotency key
(``movement_key``) and its lines' deltas; writing the same operation twice changes
nothing. Rows only add deltas up, so batches written concurrently, in any order, imply
the same stock. What the ledger implies (on hand, reserved, backordered, each order's
reservation) is what recovery rebuilds Redis from.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from msgspec import Struct

from actors.batching import Coalescer
from actors.stock import Delta, LedgerEntry, QueuePlace
from adapters.postgres.rows import Raw, Rows
from adapters.postgres.writes import Writes

_LEDGER_LOCK = "hashtext('orderd.ledger.' || current_schema())"


async def hold_ledger_alone(conn: Any) -> None:
    """A rebuild of Redis takes the ledger's lock alone (writers share it, see
    :func:`ledger_transaction`), so it reads every committed write and no write slips
    between its read and its epoch change."""
    await conn.execute(f"SELECT pg_advisory_xact_lock({_LEDGER_LOCK})")


@contextlib.asynccontextmanager
async def ledger_transaction(conn: Any) -> AsyncIterator[None]:
    """A transaction holding the ledger's lock shared, as writers of the ledger do (see
    :func:`hold_ledger_alone`), begun in one round trip; committed when the block ends,
    rolled back if it raises."""
    try:
        await conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock_shared({_LEDGER_LOCK})")
        yield
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            # The error that got here is the one to raise; a connection that cannot roll
            # back is reset (or dropped) by the pool when it is released.
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def fresh(entry: LedgerEntry, current: dict[str, str | None]) -> bool:
    """Whether every Redis change the entry records is still in Redis."""
    return all(current.get(warehouse) == epoch for warehouse, epoch in entry.epochs)


_encode_lines = msgspec.json.Encoder().encode
_MOVEMENTS = Rows(
    "movement_key text", "warehouse text", "kind text", "order_id text", "op_id text",
    "reason text", "at timestamptz", "lines jsonb",
)  # fmt: skip
_decode_lines = msgspec.json.Decoder(tuple[Delta, ...]).decode


async def instance_id(conn: Any) -> str:
    """The identity of this database, kept in Redis to recognise whose data it holds."""
    value = await conn.fetchval("SELECT id::text FROM orderd_instance")
    return str(value)


async def write_entries(conn: Any, entries: Sequence[LedgerEntry]) -> None:
    """Write many entries in one statement; repeated movements and places are no-ops."""
    writes = Writes()
    add_entries(writes, entries)
    await writes.execute(conn)


def _add_movements(writes: Writes, rows: Iterable[tuple[Any, ...]]) -> None:
    """Ledger rows (movement_key, warehouse, kind, order_id, op_id, reason, at, lines as
    JSON), each a no-op where its movement is there already."""
    writes.add(
        f"""
        INSERT INTO stock_ledger (movement_key, warehouse, kind, order_id, op_id, reason,
                                  at, lines)
        SELECT {_MOVEMENTS.columns} FROM {_MOVEMENTS.source}
        ON CONFLICT (movement_key) DO NOTHING
        """,
        _MOVEMENTS.encode(rows),
    )


def add_entries(writes: Writes, entries: Sequence[LedgerEntry]) -> None:
    """:func:`write_entries` as parts of a larger statement."""
    movements = [m for e in entries for m in e.movements if m.lines]
    queued = [q for e in entries for q in e.queued]
    if movements:
        _add_movements(
            writes,
            (
                (m.movement_key, m.warehouse, m.kind, m.order_id, m.op_id, m.reason, m.at,
                 Raw(_encode_lines(m.lines)))
                for m in movements
            ),
        )  # fmt: skip
    if queued:
        writes.add(
            """
            INSERT INTO backorder_queue (warehouse, order_id, priority, enqueued_at, cancel_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::timestamptz[],
                                 $5::timestamptz[])
            ON CONFLICT DO NOTHING
            """,
            [q.warehouse for q in queued],
            [q.order_id for q in queued],
            [q.priority for q in queued],
            [q.enqueued_at for q in queued],
            [q.cancel_at for q in queued],
        )


async def product_exists(conn: Any, sku: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products WHERE sku = $1)", sku))


async def movement_exists(conn: Any, movement_key: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM stock_ledger WHERE movement_key = $1)", movement_key
        )
    )


# The ledger's lines, one row per (movement, sku): l->>0 sku, 1 on hand, 2 reserved,
# 3 backordered.
_LINES = """
    SELECT s.order_id, l->>0 AS sku, (l->>1)::bigint AS on_hand,
           (l->>2)::bigint AS reserved, (l->>3)::bigint AS backordered
    FROM stock_ledger s, jsonb_array_elements(s.lines) AS l
    WHERE s.warehouse = $1
"""


class StockRow(Struct, frozen=True):
    sku: str
    on_hand: int
    reserved: int
    backordered: int


async def implied_stock(conn: Any, warehouse: str) -> list[StockRow]:
    """Per product: on hand, reserved and backordered, as the ledger implies."""
    rows = await conn.fetch(
        f"""
        SELECT p.sku,
               coalesce(sum(d.on_hand), 0)::bigint AS on_hand,
               coalesce(sum(d.reserved), 0)::bigint AS reserved,
               coalesce(sum(d.backordered), 0)::bigint AS backordered
        FROM products p LEFT JOIN ({_LINES}) d ON d.sku = p.sku
        GROUP BY p.sku
        ORDER BY p.sku
        """,
        warehouse,
    )
    return [StockRow(r["sku"], r["on_hand"], r["reserved"], r["backordered"]) for r in rows]


async def implied_reservations(conn: Any, warehouse: str) -> list[tuple[str, str, int]]:
    """(order_id, sku, quantity) still reserved, as the ledger implies."""
    rows = await conn.fetch(
        f"""
        SELECT order_id, sku, sum(reserved)::bigint AS quantity
        FROM ({_LINES}) d
        WHERE order_id IS NOT NULL
        GROUP BY order_id, sku
        HAVING sum(reserved) <> 0
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
        f"""
        SELECT d.order_id, d.sku, sum(d.backordered)::bigint AS quantity,
               q.priority, q.enqueued_at
        FROM ({_LINES}) d
        JOIN backorder_queue q ON q.warehouse = $1 AND q.order_id = d.order_id
        GROUP BY d.order_id, d.sku, q.priority, q.enqueued_at
        HAVING sum(d.backordered) > 0
        ORDER BY d.order_id, d.sku
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
    lines: tuple[Delta, ...]
    at: datetime


async def recent_ops(conn: Any, warehouse: str, since: datetime) -> list[RecentOp]:
    """Operations since ``since``, to rebuild what recognises a repeated call."""
    rows = await conn.fetch(
        """
        SELECT order_id, op_id, kind, lines::text AS lines, at
        FROM stock_ledger
        WHERE warehouse = $1 AND at >= $2
        ORDER BY at
        """,
        warehouse,
        since,
    )
    return [
        RecentOp(r["order_id"], r["op_id"], r["kind"], _decode_lines(r["lines"]), r["at"])
        for r in rows
    ]


Epochs = Callable[[Sequence[str]], Awaitable[dict[str, str | None]]]


_COPY_COLUMNS = ("movement_key", "warehouse", "kind", "order_id", "op_id", "reason", "at", "lines")

# A ledger row as COPY takes it: movement_key, warehouse, kind, order_id, op_id, reason, at,
# lines (their JSON text: an array of [sku, on_hand, reserved, backordered]).
LedgerRow = tuple[str, str, str, str | None, str, str | None, datetime, str]


async def write_rows(
    conn: Any,
    rows: Sequence[LedgerRow],
    places: Sequence[QueuePlace] = (),
    repeated: Sequence[LedgerEntry] = (),
    *,
    copy: bool = True,
) -> None:
    """Write ``rows`` (movements seen for the first time), the queue ``places`` and the
    ``repeated`` entries (operations that may be written already: no-ops where they are),
    in the caller's transaction.

    By COPY, which costs PostgreSQL a fraction of an INSERT with ON CONFLICT but has no way
    round a movement or place that is there already (UniqueViolationError: the caller
    writes again with ``copy=False``).
    """
    writes = Writes()
    if copy:
        if rows:
            await conn.copy_records_to_table("stock_ledger", records=rows, columns=_COPY_COLUMNS)
        if places:
            await conn.copy_records_to_table(
                "backorder_queue",
                records=[
                    (p.warehouse, p.order_id, p.priority, p.enqueued_at, p.cancel_at)
                    for p in places
                ],
                columns=("warehouse", "order_id", "priority", "enqueued_at", "cancel_at"),
            )
        places = ()
    elif rows:
        _add_movements(writes, ((*row[:7], Raw(row[7].encode())) for row in rows))
    add_entries(writes, [*repeated, LedgerEntry(queued=tuple(places))])
    await writes.execute(conn)


class LedgerWriter:
    """Writes ledger entries for many concurrent callers in shared transactions.

    ``await record(entry)`` returns once the entry is committed; it raises ``stale`` (an
    exception instance factory) when Redis was rebuilt since the entry's change.
    """

    def __init__(
        self,
        pool: Any,
        epochs: Epochs,
        stale: Callable[[], Exception],
        *,
        max_batch: int = 512,
        linger_s: float = 0.0,
        max_in_flight: int = 4,
    ) -> None:
        self._pool = pool
        self._epochs = epochs
        self._stale = stale
        self._batches: Coalescer[LedgerEntry, None] = Coalescer(
            self._write, max_batch=max_batch, linger_s=linger_s, max_in_flight=max_in_flight
        )

    async def record(self, entry: LedgerEntry) -> None:
        if entry.movements or entry.queued:
            await self._batches.submit(entry)

    async def _write(self, entries: Sequence[LedgerEntry]) -> list[Exception | None]:
        warehouses = sorted({w for entry in entries for w, _ in entry.epochs})
        async with self._pool.acquire() as conn, ledger_transaction(conn):
            current = await self._epochs(warehouses)
            fit = [entry for entry in entries if fresh(entry, current)]
            await write_entries(conn, fit)
        return [None if fresh(entry, current) else self._stale() for entry in entries]

    async def write_batch(
        self,
        warehouse: str,
        epoch: str,
        rows: Sequence[LedgerRow],
        places: Sequence[QueuePlace] = (),
        repeated: Sequence[LedgerEntry] = (),
    ) -> bool:
        """Write one batch, all made under ``epoch``, in one transaction now (see
        :func:`write_rows`); False, with nothing written, when Redis was rebuilt since."""
        for copy in (True, False):
            try:
                async with self._pool.acquire() as conn, ledger_transaction(conn):
                    current = await self._epochs([warehouse])
                    if current.get(warehouse) != epoch:
                        return False
                    await write_rows(conn, rows, places, repeated, copy=copy)
                return True
            except asyncpg.UniqueViolationError:
                # A movement written already (a result Redis no longer remembers while the
                # ledger does): the whole batch again, past it.
                if not copy:
                    raise
        raise AssertionError("unreachable")

    async def drain(self) -> None:
        await self._batches.drain()
