"""What the dashboard shows beside the report's figures: orders per day by state, the spread
of fulfillment times, ratings per day and their comments, open delays, and what waits for
stock. Read-only; every query is bounded by the window or a limit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from msgspec import Struct

# Edges of the fulfillment-time buckets, in hours: the last is "a week and more".
HOUR_EDGES = (0, 2, 4, 8, 12, 24, 48, 72, 120, 168)


class DayCount(Struct, frozen=True):
    day: date
    state: str
    orders: int


class DayRatings(Struct, frozen=True):
    day: date
    rated: int
    satisfied: int  # rated 4 or 5


class Comment(Struct, frozen=True):
    order_id: str
    name: str | None
    score: int
    comment: str
    at: datetime


class Delay(Struct, frozen=True):
    order_id: str
    name: str | None
    shipment_id: str
    carrier: str | None
    service: str | None
    tracking_number: str | None
    promised_by: date | None
    estimate: date | None
    reason: str | None
    status: str | None


class Waiting(Struct, frozen=True):
    sku: str
    name: str | None
    units: int  # ordered and neither reserved nor shipped
    orders: int


async def orders_by_day(conn: Any, since: datetime, until: datetime) -> list[DayCount]:
    """Orders paid each day (UTC) of the window, by the state they are in now."""
    rows = await conn.fetch(
        """
        SELECT (paid_at AT TIME ZONE 'UTC')::date AS day, state, count(*) AS n
        FROM orders WHERE paid_at >= $1 AND paid_at <= $2
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        since,
        until,
    )
    return [DayCount(r["day"], r["state"], r["n"]) for r in rows]


async def time_buckets(conn: Any, since: datetime, until: datetime) -> dict[str, list[int]]:
    """How many orders paid in the window took each bucket of :data:`HOUR_EDGES` from paid
    to shipped, and from paid to delivered."""
    rows = await conn.fetch(
        """
        SELECT 'shipped' AS until, width_bucket(extract(epoch FROM shipped_at - paid_at) / 3600,
                                                $3::float8[]) AS bucket, count(*) AS n
        FROM orders
        WHERE paid_at >= $1 AND paid_at <= $2 AND shipped_at IS NOT NULL
        GROUP BY 2
        UNION ALL
        SELECT 'delivered', width_bucket(extract(epoch FROM delivered_at - paid_at) / 3600,
                                         $3::float8[]), count(*)
        FROM orders
        WHERE paid_at >= $1 AND paid_at <= $2 AND delivered_at IS NOT NULL
        GROUP BY 2
        """,
        since,
        until,
        [float(edge) for edge in HOUR_EDGES],
    )
    counts = {"shipped": [0] * len(HOUR_EDGES), "delivered": [0] * len(HOUR_EDGES)}
    for r in rows:
        # Bucket 0 is below the first edge: a clock set back; it counts with the first.
        counts[r["until"]][max(r["bucket"], 1) - 1] += r["n"]
    return counts


async def ratings_by_day(conn: Any, since: datetime, until: datetime) -> list[DayRatings]:
    """Each order's latest rating, counted on the day (UTC) it was given, in the window."""
    rows = await conn.fetch(
        """
        WITH latest AS (
            SELECT DISTINCT ON (order_id) score, at FROM feedback
            WHERE at >= $1 AND at <= $2
            ORDER BY order_id, at DESC, id DESC
        )
        SELECT (at AT TIME ZONE 'UTC')::date AS day, count(*) AS rated,
               count(*) FILTER (WHERE score >= 4) AS satisfied
        FROM latest GROUP BY 1 ORDER BY 1
        """,
        since,
        until,
    )
    return [DayRatings(r["day"], r["rated"], r["satisfied"]) for r in rows]


async def comments(conn: Any, limit: int = 10) -> list[Comment]:
    """The latest ratings that came with words."""
    rows = await conn.fetch(
        """
        SELECT f.order_id, o.name, f.score, f.comment, f.at
        FROM feedback f JOIN orders o ON o.id = f.order_id
        WHERE f.comment IS NOT NULL
        ORDER BY f.at DESC, f.id DESC LIMIT $1
        """,
        limit,
    )
    return [Comment(r["order_id"], r["name"], r["score"], r["comment"], r["at"]) for r in rows]


async def open_delays(conn: Any, limit: int = 50) -> list[Delay]:
    """Parcels found late and not delivered yet, the most overdue first."""
    rows = await conn.fetch(
        """
        SELECT s.order_id, o.name, s.id, s.carrier, s.service, s.tracking_number,
               s.promised_by, coalesce(s.carrier_estimate, s.estimated_delivery) AS estimate,
               s.delay_reason, s.tracking_status
        FROM shipments s JOIN orders o ON o.id = s.order_id
        WHERE s.delayed AND s.delivered_at IS NULL
          AND o.state NOT IN ('cancelled', 'completed')
        ORDER BY s.promised_by NULLS LAST, s.id LIMIT $1
        """,
        limit,
    )
    return [
        Delay(
            r["order_id"],
            r["name"],
            r["id"],
            r["carrier"],
            r["service"],
            r["tracking_number"],
            r["promised_by"],
            r["estimate"],
            r["delay_reason"],
            r["tracking_status"],
        )
        for r in rows
    ]


async def waiting_for_stock(conn: Any, limit: int = 50) -> list[Waiting]:
    """Units ordered and waiting for stock (backordered), by sku, the most wanted first."""
    rows = await conn.fetch(
        """
        SELECT l.sku, min(p.name) AS name, sum(l.quantity - l.reserved - l.shipped) AS units,
               count(DISTINCT l.order_id) AS orders
        FROM order_lines l
        JOIN orders o ON o.id = l.order_id
        LEFT JOIN products p ON p.sku = l.sku
        WHERE o.state IN ('backordered', 'partially_reserved') AND l.requires_shipping
          AND l.quantity > l.reserved + l.shipped
        GROUP BY l.sku ORDER BY 3 DESC, 1 LIMIT $1
        """,
        limit,
    )
    return [Waiting(r["sku"], r["name"], r["units"], r["orders"]) for r in rows]


async def order_events(conn: Any, order_id: str) -> list[tuple[int, str, datetime, str]]:
    """The order's events in order: (seq, type, at, the event as JSON text)."""
    rows = await conn.fetch(
        "SELECT seq, type, at, data::text AS data FROM order_events WHERE order_id = $1 "
        "ORDER BY seq",
        order_id,
    )
    return [(r["seq"], r["type"], r["at"], r["data"]) for r in rows]
