"""Messages given up on after too many failed deliveries, kept for a person to look at."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import Struct


class DeadLetter(Struct, frozen=True):
    id: int
    stream: str
    entry_id: str
    order_id: str | None
    seq: int | None
    deliveries: int
    error: str
    dead_at: datetime
    replayed_at: datetime | None
    payload: bytes


async def record(
    conn: Any,
    *,
    stream: str,
    entry_id: str,
    order_id: str,
    seq: int,
    deliveries: int,
    error: str,
    payload: bytes,
) -> None:
    await conn.execute(
        """
        INSERT INTO dead_letters (stream, entry_id, order_id, seq, deliveries, error, payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (stream, entry_id) DO NOTHING
        """,
        stream,
        entry_id,
        order_id,
        seq,
        deliveries,
        error[:2000],
        payload,
    )


_COLUMNS = "id, stream, entry_id, order_id, seq, deliveries, error, dead_at, replayed_at, payload"


def _row(r: Any) -> DeadLetter:
    return DeadLetter(
        r["id"], r["stream"], r["entry_id"], r["order_id"], r["seq"], r["deliveries"],
        r["error"], r["dead_at"], r["replayed_at"], bytes(r["payload"]),
    )  # fmt: skip


async def listed(conn: Any, *, include_replayed: bool = False) -> list[DeadLetter]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id",
        include_replayed,
    )
    return [_row(r) for r in rows]


async def get(conn: Any, letter_id: int) -> DeadLetter | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1", letter_id)
    return _row(row) if row else None


async def mark_replayed(conn: Any, letter_id: int) -> bool:
    status: str = await conn.execute(
        "UPDATE dead_letters SET replayed_at = now() WHERE id = $1 AND replayed_at IS NULL",
        letter_id,
    )
    return status == "UPDATE 1"


class PostgresDeadLetters:
    """Dead letters over a connection pool (:class:`actors.ports.stream.DeadLetters`)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def record(
        self,
        *,
        stream: str,
        entry_id: str,
        order_id: str,
        seq: int,
        deliveries: int,
        error: str,
        payload: bytes,
    ) -> None:
        async with self._pool.acquire() as conn:
            await record(
                conn,
                stream=stream,
                entry_id=entry_id,
                order_id=order_id,
                seq=seq,
                deliveries=deliveries,
                error=error,
                payload=payload,
            )
