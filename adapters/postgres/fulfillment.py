"""Fulfillment requests waiting for, or done with, delivery to the warehouse system.

:class:`PostgresRequests` is the dispatcher's outbox
(:class:`actors.ports.outboxes.RequestOutbox`) over these statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import msgspec

from actors.order.behaviour import ResendFulfillment
from actors.ports.outboxes import DueRequest, QueuedRequest
from actors.shipping.warehouse import FulfillmentRequest
from adapters.postgres.mailbox import PostgresPosting
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(FulfillmentRequest).decode
_QUEUED = Rows(
    "shipment_id text", "order_id text", "warehouse text", "adapter text",
    "next_attempt_at timestamptz",
)  # fmt: skip
_BODIES = Rows("shipment_id text", "body json", "n int")


def add_queued(writes: Writes, queued: Sequence[QueuedRequest]) -> None:
    """Add requests, as a part of a larger statement; one already queued stays as it is."""
    if not queued:
        return
    added = writes.add(
        f"""
        INSERT INTO fulfillment_requests (shipment_id, order_id, warehouse, adapter,
                                          next_attempt_at)
        SELECT {_QUEUED.columns} FROM {_QUEUED.source}
        ON CONFLICT (shipment_id, kind) DO NOTHING
        RETURNING shipment_id
        """,
        _QUEUED.encode(
            (
                q.request.shipment_id,
                q.request.order_id,
                q.request.warehouse,
                q.adapter,
                q.due_at,
            )
            for q in queued
        ),
    )
    # A shipment's body comes with its request, only when the request is added now; the
    # first of a request asked for twice in the batch, as its row was.
    writes.add(
        f"""
        INSERT INTO fulfillment_bodies (shipment_id, body)
        SELECT DISTINCT ON (a.shipment_id) a.shipment_id, b.body
        FROM {added} a
        JOIN (SELECT {_BODIES.columns} FROM {_BODIES.source}) b USING (shipment_id)
        ORDER BY a.shipment_id, b.n
        """,
        _BODIES.encode(
            (q.request.shipment_id, _encode(q.request).decode(), n) for n, q in enumerate(queued)
        ),
    )


_RESENT = Rows("shipment_id text", "due_at timestamptz")


def resend(writes: Writes, resends: Sequence[ResendFulfillment]) -> None:
    """Make requests the warehouse system refused, or took, due again, as a part of a
    larger statement; one still on its way is left as it is."""
    if not resends:
        return
    writes.add(
        f"""
        UPDATE fulfillment_requests r SET status = 'pending', next_attempt_at = u.due_at,
                                          last_error = NULL, lease_until = NULL
        FROM (SELECT {_RESENT.columns} FROM {_RESENT.source}) AS u
        WHERE r.shipment_id = u.shipment_id AND r.kind = 'request'
          AND r.status IN ('failed', 'sent')
        """,
        _RESENT.encode((r.shipment_id, r.due_at) for r in resends),
    )


async def claim_due(conn: Any, now: datetime, lease_s: float, limit: int) -> list[DueRequest]:
    """Take requests due for delivery (by ``now``, the daemon's clock), and ones whose
    sender's lease ran out, for the caller for ``lease_s``; other processes skip them
    meanwhile. Leases run on the database's real time: the daemon's clock may be scaled,
    and each process's scaled clock is its own, so by it one process would find another's
    live lease long expired."""
    rows = await conn.fetch(
        """
        WITH claimed AS (
        UPDATE fulfillment_requests r
        SET status = 'sending', lease_until = statement_timestamp() + make_interval(secs => $2)
        FROM (
            SELECT shipment_id, kind FROM fulfillment_requests
            WHERE (status = 'pending' AND next_attempt_at <= $1)
               OR (status = 'sending' AND lease_until < statement_timestamp())
            ORDER BY next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE r.shipment_id = due.shipment_id AND r.kind = due.kind
        RETURNING r.shipment_id, r.attempts, r.kind
        )
        SELECT b.body::text AS body, c.attempts, c.kind
        FROM claimed c JOIN fulfillment_bodies b ON b.shipment_id = c.shipment_id
        """,
        now,
        lease_s,
        limit,
    )
    return [DueRequest(_decode(r["body"]), r["attempts"], r["kind"]) for r in rows]


async def sent(conn: Any, delivered: Sequence[tuple[str, str]], now: datetime) -> None:
    """Mark (shipment, kind) deliveries done."""
    await conn.execute(
        """
        UPDATE fulfillment_requests r SET status = 'sent', sent_at = $3,
                                          attempts = attempts + 1, last_error = NULL,
                                          lease_until = NULL
        FROM unnest($1::text[], $2::text[]) AS d (shipment_id, kind)
        WHERE r.shipment_id = ANY($1::text[]) AND r.shipment_id = d.shipment_id
          AND r.kind = d.kind AND r.status = 'sending'
        """,
        [shipment_id for shipment_id, _ in delivered],
        [kind for _, kind in delivered],
        now,
    )


async def retry(
    conn: Any, shipment_id: str, kind: str, error: str, next_attempt_at: datetime
) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'pending', attempts = attempts + 1,
                                        last_error = $3, next_attempt_at = $4,
                                        lease_until = NULL
        WHERE shipment_id = $1 AND kind = $2 AND status = 'sending'
        """,
        shipment_id,
        kind,
        error,
        next_attempt_at,
    )


async def failed(conn: Any, shipment_id: str, kind: str, error: str) -> bool:
    """Mark a delivery refused for good; False when it was withdrawn meanwhile."""
    done = await conn.fetchval(
        """
        UPDATE fulfillment_requests SET status = 'failed', attempts = attempts + 1,
                                        last_error = $3, lease_until = NULL
        WHERE shipment_id = $1 AND kind = $2 AND status = 'sending'
        RETURNING true
        """,
        shipment_id,
        kind,
        error,
    )
    return bool(done)


def add_superseded(writes: Writes, shipment_ids: Sequence[str], now: datetime) -> None:
    """Shipments whose pick list a short pick superseded (a new one goes out for what was
    found): one not delivered yet is not delivered at all, and the warehouse system is
    told to stop work on one it has. A part of a turn's statement."""
    if not shipment_ids:
        return
    writes.add(
        """
        UPDATE fulfillment_requests SET status = 'cancelled', lease_until = NULL
        WHERE shipment_id = ANY($1::text[]) AND kind = 'request' AND status = 'pending'
        """,
        list(shipment_ids),
    )
    writes.add(
        """
        INSERT INTO fulfillment_requests (shipment_id, kind, order_id, warehouse, adapter,
                                          next_attempt_at)
        SELECT shipment_id, 'cancel', order_id, warehouse, adapter, $2
        FROM fulfillment_requests
        WHERE shipment_id = ANY($1::text[]) AND kind = 'request'
          AND status IN ('sending', 'sent')
        ON CONFLICT (shipment_id, kind) DO NOTHING
        """,
        list(shipment_ids),
        now,
    )


async def withdraw(conn: Any, order_ids: Sequence[str], now: datetime) -> None:
    """Cancelled orders: requests not delivered yet are not delivered at all, and the
    warehouse system is told to stop work on those it has (or may have) received."""
    if not order_ids:
        return
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'cancelled', lease_until = NULL
        WHERE order_id = ANY($1::text[]) AND kind = 'request' AND status = 'pending'
        """,
        list(order_ids),
    )
    # A request being sent right now may arrive: it is told to stop as well.
    await conn.execute(
        """
        INSERT INTO fulfillment_requests (shipment_id, kind, order_id, warehouse, adapter,
                                          next_attempt_at)
        SELECT shipment_id, 'cancel', order_id, warehouse, adapter, $2
        FROM fulfillment_requests
        WHERE order_id = ANY($1::text[]) AND kind = 'request' AND status IN ('sending', 'sent')
        ON CONFLICT (shipment_id, kind) DO NOTHING
        """,
        list(order_ids),
        now,
    )


class PostgresRequests:
    """The fulfillment outbox over a connection pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[DueRequest]:
        async with self._pool.acquire() as conn, conn.transaction():
            return await claim_due(conn, now, lease_s, limit)

    @contextlib.asynccontextmanager
    async def settling(self) -> AsyncIterator[PostgresRequestSettling]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresRequestSettling(conn)


class PostgresRequestSettling(PostgresPosting):
    """Recording deliveries in the transaction of ``conn``."""

    async def sent(self, delivered: Sequence[tuple[str, str]], now: datetime) -> None:
        await sent(self._conn, delivered, now)

    async def retry(
        self, shipment_id: str, kind: str, error: str, next_attempt_at: datetime
    ) -> None:
        await retry(self._conn, shipment_id, kind, error, next_attempt_at)

    async def failed(self, shipment_id: str, kind: str, error: str) -> bool:
        return await failed(self._conn, shipment_id, kind, error)
