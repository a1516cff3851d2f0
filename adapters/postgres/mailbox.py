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
    """Store ``messages`` (inside the caller's transaction), each with its order's next seq."""
    posted = []
    for message in messages:
        seq = await conn.fetchval(
            """
            INSERT INTO order_seq (order_id, last) VALUES ($1, 1)
            ON CONFLICT (order_id) DO UPDATE SET last = order_seq.last + 1
            RETURNING last
            """,
            message.order_id,
        )
        body = encode_message(message)
        message_id = await conn.fetchval(
            "INSERT INTO mailbox (order_id, seq, type, body) VALUES ($1, $2, $3, $4) RETURNING id",
            message.order_id,
            seq,
            type(message).__struct_config__.tag,
            body,
        )
        posted.append(Posted(message_id, message.order_id, seq, body))
    return posted


async def paid_known(conn: Any, order_id: str) -> bool:
    """Whether a paid message for the order was already stored (a duplicate webhook)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM mailbox WHERE order_id = $1 AND type = 'order_paid')",
            order_id,
        )
    )


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


async def body_of(conn: Any, order_id: str, seq: int) -> bytes | None:
    raw = await conn.fetchval(
        "SELECT body FROM mailbox WHERE order_id = $1 AND seq = $2", order_id, seq
    )
    return None if raw is None else bytes(raw)
