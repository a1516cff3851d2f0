"""Messages for order actors, made durable before they are streamed.

Each message gets the next sequence number of its order, in the same transaction that
stores it; the actor applies sequence numbers in order, each once. ``streamed`` says the
message is known to be on the Redis stream; what is not is streamed again by the pump.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from msgspec import Struct

from actors.order.messages import Message, encode_message


class Posted(Struct, frozen=True):
    id: int
    order_id: str
    seq: int
    body: bytes


async def post(conn: Any, messages: Sequence[Message]) -> list[Posted]:
    """Store ``messages`` (inside the caller's transaction), each with its order's next seq.

    Two statements for any number of messages: the per-order counters move by how many
    messages each order gets, and the messages take the numbers in the order given.
    """
    if not messages:
        return []
    per_order: dict[str, int] = {}
    for message in messages:
        per_order[message.order_id] = per_order.get(message.order_id, 0) + 1
    rows = await conn.fetch(
        """
        INSERT INTO order_seq (order_id, last)
        SELECT * FROM unnest($1::text[], $2::int[])
        ON CONFLICT (order_id) DO UPDATE SET last = order_seq.last + excluded.last
        RETURNING order_id, last
        """,
        list(per_order),
        list(per_order.values()),
    )
    next_seq = {r["order_id"]: r["last"] - per_order[r["order_id"]] + 1 for r in rows}
    seqs, bodies = [], []
    for message in messages:
        seqs.append(next_seq[message.order_id])
        next_seq[message.order_id] += 1
        bodies.append(encode_message(message))
    ids = await conn.fetch(
        """
        INSERT INTO mailbox (order_id, seq, type, body)
        SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[])
        RETURNING id, order_id, seq
        """,
        [m.order_id for m in messages],
        seqs,
        [type(m).__struct_config__.tag for m in messages],
        bodies,
    )
    stored = {(row["order_id"], row["seq"]): row["id"] for row in ids}
    return [
        Posted(stored[(message.order_id, seq)], message.order_id, seq, body)
        for message, seq, body in zip(messages, seqs, bodies, strict=True)
    ]


async def mark_streamed(conn: Any, ids: Sequence[int]) -> None:
    await conn.execute("UPDATE mailbox SET streamed = true WHERE id = ANY($1::bigint[])", ids)


async def unstreamed(conn: Any, before: datetime, limit: int) -> list[Posted]:
    """Stored messages not known to be on the stream, oldest first, stored before ``before``."""
    rows = await conn.fetch(
        """
        SELECT id, order_id, seq, body FROM mailbox
        WHERE NOT streamed AND created_at < $1
        ORDER BY id LIMIT $2
        """,
        before,
        limit,
    )
    return [Posted(r["id"], r["order_id"], r["seq"], bytes(r["body"])) for r in rows]


async def restream_unapplied(conn: Any) -> int:
    """After Redis lost the stream: every message not yet applied goes on it again.

    Applied messages (seq at or below the order's last_seq) stay where they are, so the
    backlog is rebuilt without replaying history or skipping anything.
    """
    status: str = await conn.execute(
        """
        UPDATE mailbox m SET streamed = false
        WHERE m.streamed
          AND m.seq > coalesce((SELECT o.last_seq FROM orders o WHERE o.id = m.order_id), 0)
        """
    )
    return int(status.split()[-1])
