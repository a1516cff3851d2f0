"""The outbox of customer messages: one row per message that must go out, kept after.

A row is unique by its idempotency key, (order, kind, shipment, episode, channel): asking
twice for the same message adds nothing, so at most one of each goes out.
:class:`PostgresNotifications` is the notifier's outbox
(:class:`actors.ports.outboxes.NotificationOutbox`) over these statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from actors.notify.model import Outgoing
from actors.ports.outboxes import DueNotification, QueuedNotification
from adapters.postgres.mailbox import PostgresPosting
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Outgoing).decode


_QUEUED = Rows(
    "idempotency_key text", "order_id text", "shipment_id text", "kind text", "channel text",
    "episode int", "recipient text", "next_attempt_at timestamptz",
)  # fmt: skip
_PAYLOADS = Rows("idempotency_key text", "payload json", "n int")


def add_queued(writes: Writes, rows: Sequence[QueuedNotification]) -> None:
    """Add messages to the outbox, as a part of a larger statement; repeats add nothing."""
    if not rows:
        return
    added = writes.add(
        f"""
        INSERT INTO notifications (idempotency_key, order_id, shipment_id, kind, channel,
                                   episode, recipient, next_attempt_at)
        SELECT {_QUEUED.columns} FROM {_QUEUED.source}
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, idempotency_key
        """,
        _QUEUED.encode(
            (
                r.message.idempotency_key,
                r.order_id,
                r.shipment_id,
                r.message.kind,
                r.message.channel,
                r.episode,
                r.message.to,
                r.due_at,
            )
            for r in rows
        ),
    )
    # Only the messages added now; one asked for twice in the batch is added once, with
    # the content of the first, as its row was.
    writes.add(
        f"""
        INSERT INTO notification_payloads (id, payload)
        SELECT DISTINCT ON (a.id) a.id, p.payload
        FROM {added} a
        JOIN (SELECT {_PAYLOADS.columns} FROM {_PAYLOADS.source}) p USING (idempotency_key)
        ORDER BY a.id, p.n
        """,
        _PAYLOADS.encode(
            (r.message.idempotency_key, _encode(r.message).decode(), n) for n, r in enumerate(rows)
        ),
    )


async def claim_due(
    conn: Any, now: datetime, claim: timedelta, limit: int
) -> list[DueNotification]:
    """Claim messages due by ``now`` (the business clock), and ones whose claim ran out
    (their sender died), for ``claim`` of the database's real time; other processes skip
    them meanwhile. Counts the attempt.

    Claims are measured by the database's clock alone: processes whose own clocks differ
    (a scaled clock starts with its process) all agree on when a claim ends.
    """
    rows = await conn.fetch(
        """
        WITH claimed AS (
        UPDATE notifications n SET status = 'sending',
                                   claimed_until = statement_timestamp() + $2::interval,
                                   attempts = attempts + 1
        FROM (
            SELECT id FROM notifications
            WHERE (status = 'pending' AND next_attempt_at <= $1)
               OR (status = 'sending' AND claimed_until < statement_timestamp())
            ORDER BY next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE n.id = due.id
        RETURNING n.id, n.order_id, n.attempts, n.claimed_until
        )
        SELECT c.id, c.order_id, p.payload::text AS payload, c.attempts, c.claimed_until
        FROM claimed c JOIN notification_payloads p ON p.id = c.id
        """,
        now,
        claim,
        limit,
    )
    return [
        DueNotification(
            r["id"], r["order_id"], _decode(r["payload"]), r["attempts"], r["claimed_until"]
        )
        for r in rows
    ]


async def sent(conn: Any, delivered: Sequence[tuple[int, str, datetime]]) -> set[int]:
    """Record (row, Message-ID, when) messages as sent, whoever holds them now: they went out,
    and a later sender's failure must not put them back in the queue. Returns the rows
    recorded now; the others were recorded sent already.

    The rows are named twice: ``= ANY`` lets PostgreSQL find them by the key, where the
    join alone was planned as a scan of the whole table.
    """
    if not delivered:
        return set()
    rows = await conn.fetch(
        """
        UPDATE notifications n SET status = 'sent', message_id = d.message_id,
                                   sent_at = d.sent_at, last_error = NULL, claimed_until = NULL
        FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS d (id, message_id, sent_at)
        WHERE n.id = ANY($1::bigint[]) AND n.id = d.id AND n.status <> 'sent'
        RETURNING n.id
        """,
        [row_id for row_id, _, _ in delivered],
        [message_id for _, message_id, _ in delivered],
        [at for _, _, at in delivered],
    )
    return {r["id"] for r in rows}


async def later(
    conn: Any, row_id: int, claim: datetime, when: datetime, error: str | None, tried: bool
) -> bool:
    """Try again at ``when``: after a temporary failure, or out of quiet hours (not tried).
    Only while the claim ``claim`` holds; False when it no longer does."""
    done: str = await conn.execute(
        """
        UPDATE notifications SET status = 'pending', next_attempt_at = $3,
                                 last_error = coalesce($4, last_error), claimed_until = NULL,
                                 attempts = attempts - $5::int
        WHERE id = $1 AND status = 'sending' AND claimed_until = $2
        """,
        row_id,
        claim,
        when,
        error,
        0 if tried else 1,
    )
    return done == "UPDATE 1"


async def failed(conn: Any, row_id: int, claim: datetime, error: str) -> bool:
    """Give the message up; only while the claim ``claim`` holds (False when it does not)."""
    return await _settled(conn, row_id, claim, "failed", error)


async def _settled(conn: Any, row_id: int, claim: datetime, status: str, why: str) -> bool:
    done: str = await conn.execute(
        """
        UPDATE notifications SET status = $3, last_error = $4, claimed_until = NULL
        WHERE id = $1 AND status = 'sending' AND claimed_until = $2
        """,
        row_id,
        claim,
        status,
        why,
    )
    return done == "UPDATE 1"


async def skipped(conn: Any, row_id: int, claim: datetime, reason: str) -> bool:
    """Not to be sent (the customer unsubscribed); only while the claim ``claim`` holds."""
    return await _settled(conn, row_id, claim, "skipped", reason)


async def opt_out(conn: Any, order_id: str, now: datetime) -> bool:
    """The email address of ``order_id``'s customer takes no more marketing messages;
    False when the order is unknown or has no email address."""
    done: str = await conn.execute(
        """
        INSERT INTO marketing_opt_outs (address, order_id, at)
        SELECT lower(document->'customer'->>'email'), order_id, $2
        FROM order_documents
        WHERE order_id = $1 AND document->'customer'->>'email' IS NOT NULL
        ON CONFLICT (address) DO NOTHING
        """,
        order_id,
        now,
    )
    if done != "INSERT 0 0":
        return True
    known: bool = await conn.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM order_documents
                       WHERE order_id = $1 AND document->'customer'->>'email' IS NOT NULL)
        """,
        order_id,
    )
    return known


async def of_order(conn: Any, order_id: str) -> list[dict[str, Any]]:
    """The order's messages as ``orderd order show`` prints them (no recipients)."""
    rows = await conn.fetch(
        """
        SELECT kind, channel, shipment_id, episode, status, attempts, message_id, last_error,
               created_at, sent_at
        FROM notifications WHERE order_id = $1 ORDER BY id
        """,
        order_id,
    )
    return [
        {
            "kind": r["kind"],
            "channel": r["channel"],
            "shipment_id": r["shipment_id"],
            "episode": r["episode"],
            "status": r["status"],
            "attempts": r["attempts"],
            "message_id": r["message_id"],
            "last_error": r["last_error"],
            "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None,
        }
        for r in rows
    ]


class PostgresNotifications:
    """The customer messages' outbox over a connection pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def claim_due(self, now: datetime, claim: timedelta, limit: int) -> list[DueNotification]:
        async with self._pool.acquire() as conn, conn.transaction():
            return await claim_due(conn, now, claim, limit)

    async def opted_out(self, address: str) -> bool:
        async with self._pool.acquire() as conn:
            found: bool = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM marketing_opt_outs WHERE address = lower($1))",
                address.strip(),
            )
        return found

    @contextlib.asynccontextmanager
    async def settling(self) -> AsyncIterator[PostgresNotificationSettling]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresNotificationSettling(conn)


class PostgresNotificationSettling(PostgresPosting):
    """Recording what became of a message in the transaction of ``conn``."""

    async def sent(self, delivered: Sequence[tuple[int, str, datetime]]) -> set[int]:
        return await sent(self._conn, delivered)

    async def later(
        self, row_id: int, claim: datetime, when: datetime, error: str | None, tried: bool
    ) -> bool:
        return await later(self._conn, row_id, claim, when, error, tried)

    async def failed(self, row_id: int, claim: datetime, error: str) -> bool:
        return await failed(self._conn, row_id, claim, error)

    async def skipped(self, row_id: int, claim: datetime, reason: str) -> bool:
        return await skipped(self._conn, row_id, claim, reason)
