"""The platform outbox in PostgreSQL: what the stores' platforms are told of their orders.

A turn adds its calls as a part of its one statement (one row per parcel and kind, so a
turn run again adds nothing); the sender claims due ones, delivers them outside any
transaction and records each result on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from actors.ports.outboxes import DueCall
from actors.storefront import ParcelDelivered, ParcelShipped, PlatformCall, TrackingChanged
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_QUEUED = Rows(
    "key text", "order_id text", "platform text", "kind text", "body json",
    "next_attempt_at timestamptz",
)  # fmt: skip
_encode = msgspec.json.Encoder().encode
PARCEL_SHIPPED = "parcel_shipped"
PARCEL_DELIVERED = "parcel_delivered"
TRACKING_CHANGED = "tracking_changed"
# The call's body by its kind (the kind column says which: bodies carry no tag).
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    PARCEL_SHIPPED: msgspec.json.Decoder(ParcelShipped),
    PARCEL_DELIVERED: msgspec.json.Decoder(ParcelDelivered),
    TRACKING_CHANGED: msgspec.json.Decoder(TrackingChanged),
}


def kind_of(call: PlatformCall) -> str:
    match call:
        case ParcelShipped():
            return PARCEL_SHIPPED
        case ParcelDelivered():
            return PARCEL_DELIVERED
        case TrackingChanged():
            return TRACKING_CHANGED


def call_key(parcel: PlatformCall) -> str:
    """One call per parcel and kind; a tracking correction, one per new number."""
    key = f"{parcel.platform}:{kind_of(parcel)}:{parcel.shipment_id}"
    return f"{key}:{parcel.tracking_number}" if isinstance(parcel, TrackingChanged) else key


def add_queued(writes: Writes, parcels: Sequence[PlatformCall], now: datetime) -> None:
    """Add calls, as a part of a larger statement; one stored already stays as it is."""
    if not parcels:
        return
    writes.add(
        f"""
        INSERT INTO platform_calls (key, order_id, platform, kind, body, next_attempt_at)
        SELECT {_QUEUED.columns} FROM {_QUEUED.source}
        ON CONFLICT (key) DO NOTHING
        """,
        _QUEUED.encode(
            (call_key(p), p.order_id, p.platform, kind_of(p), _encode(p).decode(), now)
            for p in parcels
        ),
    )


async def of_order(conn: Any, order_id: str) -> list[dict[str, Any]]:
    """What the order's platform was told, or is still to be told (``orderd order show``)."""
    rows = await conn.fetch(
        """
        SELECT key, kind, status, attempts, last_error, result, sent_at FROM platform_calls
        WHERE order_id = $1 ORDER BY created_at, key
        """,
        order_id,
    )
    return [
        {
            "key": r["key"],
            "kind": r["kind"],
            "status": r["status"],
            "attempts": r["attempts"],
            "last_error": r["last_error"],
            "result": r["result"],
            "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None,
        }
        for r in rows
    ]


class PostgresPlatformCalls:
    """The platform outbox over a pool (:class:`actors.ports.outboxes.PlatformOutbox`)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[DueCall]:
        """Take calls due by ``now`` (the daemon's clock), and ones whose sender's lease
        ran out (the database's real time), for ``lease_s``."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                UPDATE platform_calls c
                SET status = 'sending',
                    lease_until = statement_timestamp() + make_interval(secs => $2)
                FROM (
                    SELECT key FROM platform_calls
                    WHERE (status = 'pending' AND next_attempt_at <= $1)
                       OR (status = 'sending' AND lease_until < statement_timestamp())
                    ORDER BY next_attempt_at
                    LIMIT $3
                    FOR UPDATE SKIP LOCKED
                ) due
                WHERE c.key = due.key
                RETURNING c.key, c.kind, c.body::text AS body, c.attempts
                """,
                now,
                lease_s,
                limit,
            )
        return [
            DueCall(r["key"], _DECODERS[r["kind"]].decode(r["body"]), r["attempts"]) for r in rows
        ]

    async def sent(self, key: str, result: str, now: datetime) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE platform_calls SET status = 'sent', result = $2, sent_at = $3,
                       attempts = attempts + 1, lease_until = NULL, last_error = NULL
                WHERE key = $1 AND status = 'sending'
                """,
                key,
                result,
                now,
            )

    async def retry(self, key: str, error: str, next_attempt_at: datetime) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE platform_calls SET status = 'pending', attempts = attempts + 1,
                       last_error = $2, next_attempt_at = $3, lease_until = NULL
                WHERE key = $1 AND status = 'sending'
                """,
                key,
                error,
                next_attempt_at,
            )

    async def failed(self, key: str, error: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE platform_calls SET status = 'failed', attempts = attempts + 1,
                       last_error = $2, lease_until = NULL
                WHERE key = $1 AND status = 'sending'
                """,
                key,
                error,
            )
