"""Messages for order actors, made durable before they are streamed.

Each message gets the next sequence number of its order, in the same transaction that
stores it; the actor applies sequence numbers in order, each once. The messages stored
together are also noted as one row of ``unstreamed``, deleted once they are on the Redis
stream: what a crash or an unreachable Redis leaves there is streamed again by the pump.
One row per batch, not a flag per message, keeps that bookkeeping to a few writes however
many messages a batch holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from actors.order.messages import Message, encode_message
from actors.ports.mail import Posted


async def post(conn: Any, messages: Sequence[Message]) -> list[Posted]:
    """Store ``messages`` (inside the caller's transaction), each with its order's next seq.

    Three statements for any number of messages: the per-order counters move by how many
    messages each order gets, the messages take the numbers in the order given, and they
    are noted as not streamed yet.
    """
    if not messages:
        return []
    per_order: dict[str, int] = {}
    # By order id: transactions that post to several orders take their counters in one
    # order (a turn's save tells other orders too: those its release filled).
    for message in sorted(messages, key=lambda m: m.order_id):
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
        [stored_type(m) for m in messages],
        bodies,
    )
    stored = {(row["order_id"], row["seq"]): row["id"] for row in ids}
    batch = await conn.fetchval(
        "INSERT INTO unstreamed (message_ids) VALUES ($1::bigint[]) RETURNING id",
        sorted(stored.values()),
    )
    return [
        Posted(stored[(message.order_id, seq)], message.order_id, seq, body, batch)
        for message, seq, body in zip(messages, seqs, bodies, strict=True)
    ]


def stored_type(message: Message) -> str:
    """The mailbox's type of ``message``. Only intake stores an order's first paid message,
    which the mailbox holds once per order; a paid message sent again (a dead letter
    replayed) is kept under another type."""
    tag = str(type(message).__struct_config__.tag)
    return "order_paid_again" if tag == "order_paid" else tag


async def streamed(conn: Any, batches: Sequence[int]) -> None:
    """The messages of ``batches`` are on the stream."""
    await conn.execute("DELETE FROM unstreamed WHERE id = ANY($1::bigint[])", batches)


async def unstreamed(conn: Any, before: datetime, limit: int) -> list[Posted]:
    """Messages of batches stored before ``before`` and not known to be on the stream,
    oldest batch first, whole batches up to about ``limit`` messages."""
    rows = await conn.fetch(
        """
        WITH batches AS (
            SELECT id, message_ids,
                   sum(cardinality(message_ids)) OVER (ORDER BY id) AS upto
            FROM unstreamed WHERE created_at < $1
            ORDER BY id LIMIT $2
        )
        SELECT b.id AS batch, m.id, m.order_id, m.seq, m.body
        FROM batches b
        CROSS JOIN unnest(b.message_ids) AS x (id)
        JOIN mailbox m ON m.id = x.id
        WHERE b.upto - cardinality(b.message_ids) < $2
        ORDER BY b.id, m.id
        """,
        before,
        limit,
    )
    return [Posted(r["id"], r["order_id"], r["seq"], bytes(r["body"]), r["batch"]) for r in rows]


async def unapplied_of(conn: Any, order_id: str, before_seq: int) -> list[Posted]:
    """The order's messages numbered before ``before_seq`` that it has not applied yet."""
    rows = await conn.fetch(
        """
        SELECT m.id, m.order_id, m.seq, m.body FROM mailbox m
        WHERE m.order_id = $1 AND m.seq < $2
          AND m.seq > coalesce((SELECT last_seq FROM orders WHERE id = $1), 0)
        ORDER BY m.seq
        """,
        order_id,
        before_seq,
    )
    return [Posted(r["id"], r["order_id"], r["seq"], bytes(r["body"])) for r in rows]


async def restream_unapplied(conn: Any, batch_size: int = 500) -> int:
    """After Redis lost the stream: every message not yet applied goes on it again.

    Applied messages (seq at or below the order's last_seq) stay where they are, so the
    backlog is rebuilt without replaying history or skipping anything. The batches are
    dated long ago, for the pump to take at once, and they replace every batch noted
    before: a batch streamed just before Redis lost it may still be waiting for its
    "streamed" note, which would otherwise delete it after this rebuild and lose its
    messages. Every process finds the group gone: one at a time, each rebuilds it whole
    (a message streamed twice is a repeat).
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('orderd.restream.' || current_schema()))"
        )
        count: int = await conn.fetchval(
            """
            WITH superseded AS (
                DELETE FROM unstreamed
            ), unapplied AS (
                SELECT m.id, (row_number() OVER (ORDER BY m.id) - 1) / $1 AS chunk
                FROM mailbox m LEFT JOIN orders o ON o.id = m.order_id
                WHERE m.seq > coalesce(o.last_seq, 0)
            ), batches AS (
                INSERT INTO unstreamed (message_ids, created_at)
                SELECT array_agg(id ORDER BY id), '-infinity' FROM unapplied GROUP BY chunk
                RETURNING cardinality(message_ids) AS size
            )
            SELECT coalesce(sum(size), 0) FROM batches
            """,
            batch_size,
        )
    return count


class PostgresMailbox:
    """The mailboxes over a connection pool, each call in a transaction of its own
    (:class:`actors.ports.mail.Mailbox`)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def post(self, messages: Sequence[Message]) -> list[Posted]:
        async with self._pool.acquire() as conn, conn.transaction():
            return await post(conn, messages)

    async def streamed(self, batches: Sequence[int]) -> None:
        async with self._pool.acquire() as conn:
            await streamed(conn, batches)

    async def unstreamed(self, before: datetime, limit: int) -> list[Posted]:
        async with self._pool.acquire() as conn:
            return await unstreamed(conn, before, limit)

    async def unapplied_of(self, order_id: str, before_seq: int) -> list[Posted]:
        async with self._pool.acquire() as conn:
            return await unapplied_of(conn, order_id, before_seq)


class PostgresPosting:
    """Posting inside the transaction of ``conn`` (:class:`actors.ports.mail.Posting`)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def post(self, messages: Sequence[Message]) -> list[Posted]:
        return await post(self._conn, messages)
