"""Fulfillment requests waiting for, or done with, delivery to the warehouse system."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct

from adapters.wms.model import FulfillmentRequest

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(FulfillmentRequest).decode


class Queued(Struct, frozen=True):
    request: FulfillmentRequest
    adapter: str
    due_at: datetime


class Due(Struct, frozen=True):
    request: FulfillmentRequest
    attempts: int


async def queue(conn: Any, queued: Sequence[Queued]) -> None:
    """Add requests (in the caller's transaction); one already queued stays as it is."""
    if not queued:
        return
    await conn.execute(
        """
        INSERT INTO fulfillment_requests (shipment_id, order_id, warehouse, adapter, body,
                                          next_attempt_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                             $6::timestamptz[])
        ON CONFLICT (shipment_id) DO NOTHING
        """,
        [q.request.shipment_id for q in queued],
        [q.request.order_id for q in queued],
        [q.request.warehouse for q in queued],
        [q.adapter for q in queued],
        [_encode(q.request).decode() for q in queued],
        [q.due_at for q in queued],
    )


async def claim_due(conn: Any, now: datetime, lease_until: datetime, limit: int) -> list[Due]:
    """Take requests due for delivery, and ones whose sender's lease ran out, for the
    caller until ``lease_until``; other processes skip them meanwhile."""
    rows = await conn.fetch(
        """
        UPDATE fulfillment_requests r SET status = 'sending', lease_until = $2
        FROM (
            SELECT shipment_id FROM fulfillment_requests
            WHERE (status = 'pending' AND next_attempt_at <= $1)
               OR (status = 'sending' AND lease_until < $1)
            ORDER BY next_attempt_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE r.shipment_id = due.shipment_id
        RETURNING r.body::text AS body, r.attempts
        """,
        now,
        lease_until,
        limit,
    )
    return [Due(_decode(r["body"]), r["attempts"]) for r in rows]


async def sent(conn: Any, shipment_ids: Sequence[str], now: datetime) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                                        last_error = NULL, lease_until = NULL
        WHERE shipment_id = ANY($1::text[]) AND status = 'sending'
        """,
        list(shipment_ids),
        now,
    )


async def retry(conn: Any, shipment_id: str, error: str, next_attempt_at: datetime) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'pending', attempts = attempts + 1,
                                        last_error = $2, next_attempt_at = $3,
                                        lease_until = NULL
        WHERE shipment_id = $1 AND status = 'sending'
        """,
        shipment_id,
        error,
        next_attempt_at,
    )


async def failed(conn: Any, shipment_id: str, error: str) -> bool:
    """Mark a request refused for good; False when it was withdrawn meanwhile."""
    done = await conn.fetchval(
        """
        UPDATE fulfillment_requests SET status = 'failed', attempts = attempts + 1,
                                        last_error = $2, lease_until = NULL
        WHERE shipment_id = $1 AND status = 'sending'
        RETURNING true
        """,
        shipment_id,
        error,
    )
    return bool(done)


async def withdraw(conn: Any, order_ids: Sequence[str]) -> None:
    """Requests of cancelled orders that were not delivered yet are not delivered at all."""
    if not order_ids:
        return
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'cancelled', lease_until = NULL
        WHERE order_id = ANY($1::text[]) AND status IN ('pending', 'sending')
        """,
        list(order_ids),
    )
