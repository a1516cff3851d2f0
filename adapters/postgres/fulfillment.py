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


async def take_due(conn: Any, now: datetime, limit: int) -> list[Due]:
    """Lock requests due for delivery (in the caller's transaction); others skip them."""
    rows = await conn.fetch(
        """
        SELECT body::text AS body, attempts FROM fulfillment_requests
        WHERE status = 'pending' AND next_attempt_at <= $1
        ORDER BY next_attempt_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
        """,
        now,
        limit,
    )
    return [Due(_decode(r["body"]), r["attempts"]) for r in rows]


async def sent(conn: Any, shipment_ids: Sequence[str], now: datetime) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'sent', sent_at = $2, attempts = attempts + 1,
                                        last_error = NULL
        WHERE shipment_id = ANY($1::text[])
        """,
        list(shipment_ids),
        now,
    )


async def retry(conn: Any, shipment_id: str, error: str, next_attempt_at: datetime) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET attempts = attempts + 1, last_error = $2,
                                        next_attempt_at = $3
        WHERE shipment_id = $1
        """,
        shipment_id,
        error,
        next_attempt_at,
    )


async def failed(conn: Any, shipment_id: str, error: str) -> None:
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'failed', attempts = attempts + 1,
                                        last_error = $2
        WHERE shipment_id = $1
        """,
        shipment_id,
        error,
    )


async def withdraw(conn: Any, order_ids: Sequence[str]) -> None:
    """Requests of cancelled orders that were not delivered yet are not delivered at all."""
    if not order_ids:
        return
    await conn.execute(
        """
        UPDATE fulfillment_requests SET status = 'cancelled'
        WHERE order_id = ANY($1::text[]) AND status = 'pending'
        """,
        list(order_ids),
    )
