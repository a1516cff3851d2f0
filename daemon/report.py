"""``orderd report``: the four figures a warehouse manager watches, from the durable record.

Fulfillment time (paid to shipped, paid to delivered: median and 90th percentile), shipping
accuracy (shipments packed right the first time and not reported wrong, over all packed),
customer satisfaction (share of 4 and 5 among each order's latest rating) and inventory
turnover (cost of the goods shipped over the average value of the stock on hand), with the
orders counted by state, and broken down by carrier (shipments, label spend, on-time rate,
transit time) and by warehouse (shipments, accuracy, time to ship). Nothing comes from
counters a restart would lose.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from actors.order.shipment import LEFT
from adapters.postgres import schema
from daemon.resources import database
from daemon.settings import Settings


async def report(
    settings: Settings, since: datetime | None, until: datetime | None = None
) -> dict[str, Any]:
    """The figures for orders paid from ``since`` (all of them when None) to ``until``
    (now when None)."""
    async with database(settings) as conn:
        await schema.require_current(conn, settings.postgres.schema)
        return await figures(conn, since, until or datetime.now(UTC))


async def figures(
    conn: Any, since: datetime | None, until: datetime, orders: Sequence[str] | None = None
) -> dict[str, Any]:
    """The figures over [``since``, ``until``]; for the given ``orders`` only, if named."""
    start = since or await conn.fetchval("SELECT min(at) FROM stock_ledger") or until
    only = list(orders) if orders is not None else None
    states = await conn.fetch(
        """
        SELECT state, count(*) AS n FROM orders
        WHERE paid_at >= $1 AND paid_at <= $3 AND ($2::text[] IS NULL OR id = ANY($2::text[]))
        GROUP BY state ORDER BY 1
        """,
        start,
        only,
        until,
    )
    times = await conn.fetchrow(
        """
        WITH took AS (
            SELECT extract(epoch FROM shipped_at - paid_at) AS shipped,
                   extract(epoch FROM delivered_at - paid_at) AS delivered
            FROM orders
            WHERE paid_at >= $1 AND paid_at <= $3 AND ($2::text[] IS NULL OR id = ANY($2::text[]))
        )
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY shipped) AS shipped_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY shipped) AS shipped_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered) AS delivered_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY delivered) AS delivered_p90
        FROM took
        """,
        start,
        only,
        until,
    )
    accuracy = await conn.fetchrow(
        """
        WITH packed AS (
            SELECT s.id, s.reported_wrong OR s.mispacked AS wrong
            FROM shipments s JOIN orders o ON o.id = s.order_id
            WHERE o.paid_at >= $1 AND o.paid_at <= $4
              AND ($3::text[] IS NULL OR o.id = ANY($3::text[]))
              AND (s.status = ANY($2::text[]) OR s.status = 'mismatch' OR s.packed_ok IS NOT NULL)
        )
        SELECT count(*) AS packed, count(*) FILTER (WHERE NOT wrong) AS right FROM packed
        """,
        start,
        sorted(LEFT),
        only,
        until,
    )
    ratings = await conn.fetchrow(
        """
        WITH latest AS (
            SELECT DISTINCT ON (f.order_id) f.score
            FROM feedback f JOIN orders o ON o.id = f.order_id
            WHERE o.paid_at >= $1 AND o.paid_at <= $3
              AND ($2::text[] IS NULL OR o.id = ANY($2::text[]))
            ORDER BY f.order_id, f.at DESC, f.id DESC
        )
        SELECT count(*) AS rated, count(*) FILTER (WHERE score >= 4) AS satisfied FROM latest
        """,
        start,
        only,
        until,
    )
    upto = await _summarise_days(conn)
    # The window is [start, until]: what moved at its start counts in it, not before it.
    before = await _stock_at(conn, upto, start, inclusive=False)
    through = await _stock_at(conn, upto, until, inclusive=True)
    stock = {
        "shipped_cost": through[1] - before[1],
        "value_start": before[0],
        "value_end": through[0],
    }
    average = (stock["value_start"] + stock["value_end"]) / 2
    carriers = await conn.fetch(
        """
        SELECT s.carrier, s.rate_currency AS currency, count(*) AS shipments,
               coalesce(sum(s.rate_amount), 0) AS spend,
               count(*) FILTER (WHERE s.delivered_at IS NOT NULL AND s.promised_by IS NOT NULL)
                   AS delivered,
               count(*) FILTER (WHERE (s.delivered_at AT TIME ZONE 'UTC')::date <= s.promised_by)
                   AS on_time,
               percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY extract(epoch FROM s.delivered_at - s.shipped_at)) AS transit_p50
        FROM shipments s JOIN orders o ON o.id = s.order_id
        WHERE s.shipped_at IS NOT NULL AND s.carrier IS NOT NULL
          AND o.paid_at >= $1 AND o.paid_at <= $3
          AND ($2::text[] IS NULL OR o.id = ANY($2::text[]))
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        start,
        only,
        until,
    )
    warehouses = await conn.fetch(
        """
        SELECT s.warehouse, count(*) AS shipments,
               count(*) FILTER (WHERE s.packed_ok IS NOT NULL) AS packed,
               count(*) FILTER (WHERE s.packed_ok IS NOT NULL
                                  AND NOT (s.reported_wrong OR s.mispacked)) AS right,
               percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY extract(epoch FROM s.shipped_at - o.paid_at)) AS shipped_p50
        FROM shipments s JOIN orders o ON o.id = s.order_id
        WHERE o.paid_at >= $1 AND o.paid_at <= $3
          AND ($2::text[] IS NULL OR o.id = ANY($2::text[]))
        GROUP BY 1 ORDER BY 1
        """,
        start,
        only,
        until,
    )
    return {
        "since": start.isoformat(),
        "until": until.isoformat(),
        "orders": {r["state"]: r["n"] for r in states},
        "fulfillment_time_s": {key: _round(value) for key, value in times.items()},
        "shipping_accuracy": _share(accuracy["right"], accuracy["packed"]),
        "shipments_packed": accuracy["packed"],
        "csat": _share(ratings["satisfied"], ratings["rated"]),
        "ratings": ratings["rated"],
        "inventory_turnover": float(stock["shipped_cost"] / average) if average else None,
        "cost_of_goods_shipped": float(stock["shipped_cost"]),
        "average_inventory_value": float(average),
        "by_carrier": [
            {
                "carrier": r["carrier"],
                "currency": (r["currency"] or "").strip(),
                "shipments": r["shipments"],
                "label_spend": float(r["spend"]),
                "on_time": _share(r["on_time"], r["delivered"]),
                "delivered": r["delivered"],
                "transit_p50_s": _round(r["transit_p50"]),
            }
            for r in carriers
        ],
        "by_warehouse": [
            {
                "warehouse": r["warehouse"],
                "shipments": r["shipments"],
                "shipping_accuracy": _share(r["right"], r["packed"]),
                "shipped_p50_s": _round(r["shipped_p50"]),
            }
            for r in warehouses
        ],
    }


# Days are summed once closed: the day before yesterday (UTC) and earlier, so that a
# movement written a little after its time still lands in a day not yet summed.
_SUMMARY_LAG = "2 days"

_MOVES = """
    SELECT l.at, l.kind, (line->>0) AS sku, (line->>1)::bigint AS on_hand
    FROM stock_ledger l, jsonb_array_elements(l.lines) AS line
"""


async def _summarise_days(conn: Any) -> date | None:
    """Sum the ledger's closed days not summed yet into ``stock_days``, once; the day
    they are summed up to (not included)."""
    async with conn.transaction():
        # One report at a time sums: another waits, then finds the days done.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('orderd stock_days'))")
        closed = await conn.fetchval(
            f"SELECT ((now() AT TIME ZONE 'UTC') - interval '{_SUMMARY_LAG}')::date"
        )
        upto = await conn.fetchval("SELECT upto FROM stock_days_done")
        if upto is not None and upto >= closed:
            found: date = upto
            return found
        await conn.execute(
            f"""
            INSERT INTO stock_days (day, sku, on_hand, shipped)
            SELECT (m.at AT TIME ZONE 'UTC')::date, m.sku, sum(m.on_hand),
                   coalesce(sum(-m.on_hand) FILTER (WHERE m.kind = 'commit'), 0)
            FROM ({_MOVES} WHERE ($1::date IS NULL OR l.at >= ($1::date)::timestamp
                                                         AT TIME ZONE 'UTC')
                    AND l.at < ($2::date)::timestamp AT TIME ZONE 'UTC') m
            GROUP BY 1, 2
            """,
            upto,
            closed,
        )
        await conn.execute(
            """
            INSERT INTO stock_days_done (upto) VALUES ($1)
            ON CONFLICT (only_row) DO UPDATE SET upto = excluded.upto
            """,
            closed,
        )
    summed: date = closed
    return summed


async def _stock_at(
    conn: Any, upto: date | None, moment: datetime, *, inclusive: bool
) -> tuple[Decimal, Decimal]:
    """The value of the stock on hand, and of the goods shipped so far, at ``moment`` (its
    movements included when ``inclusive``), at today's unit costs: the summed days before
    it, and the ledger's own rows after them."""
    day = moment.astimezone(UTC).date()
    # From this day on, the ledger's own rows (a plain bound, so its BRIN index serves).
    edge = min(day, upto) if upto is not None else None
    start = datetime(edge.year, edge.month, edge.day, tzinfo=UTC) if edge is not None else None
    row = await conn.fetchrow(
        f"""
        WITH summed AS (
            SELECT d.sku, sum(d.on_hand) AS on_hand, sum(d.shipped) AS shipped
            FROM stock_days d WHERE d.day < $3 GROUP BY d.sku
        ),
        recent AS (
            SELECT m.sku, sum(m.on_hand) AS on_hand,
                   coalesce(sum(-m.on_hand) FILTER (WHERE m.kind = 'commit'), 0) AS shipped
            FROM ({_MOVES}
                  WHERE ($4::timestamptz IS NULL OR l.at >= $4)
                    AND (l.at < $1 OR ($2 AND l.at = $1))) m
            GROUP BY m.sku
        ),
        both_parts AS (SELECT * FROM summed UNION ALL SELECT * FROM recent)
        SELECT coalesce(sum(b.on_hand * p.unit_cost), 0) AS value,
               coalesce(sum(b.shipped * p.unit_cost), 0) AS shipped
        FROM both_parts b JOIN products p ON p.sku = b.sku
        """,
        moment,
        inclusive,
        edge,
        start,
    )
    return row["value"], row["shipped"]


def lines(figures: dict[str, Any]) -> list[str]:
    """The report as an operator reads it."""
    times = figures["fulfillment_time_s"]
    orders = ", ".join(f"{n} {state}" for state, n in figures["orders"].items()) or "none"
    accuracy, csat, turnover = (
        figures["shipping_accuracy"], figures["csat"], figures["inventory_turnover"]
    )  # fmt: skip
    return [
        f"orders since {figures['since']}: {orders}",
        f"fulfillment time: paid -> shipped median {hours(times['shipped_p50'])}, "
        f"p90 {hours(times['shipped_p90'])}; paid -> delivered median "
        f"{hours(times['delivered_p50'])}, p90 {hours(times['delivered_p90'])}",
        f"shipping accuracy: {_percent(accuracy)} of {figures['shipments_packed']} shipments "
        "packed right the first time",
        f"customer satisfaction: {_percent(csat)} of {figures['ratings']} ratings are 4 or 5",
        "inventory turnover: "
        + (f"{turnover:.2f}" if turnover is not None else "-")
        + f" (goods shipped at cost {figures['cost_of_goods_shipped']:.2f} over average "
        f"stock value {figures['average_inventory_value']:.2f})",
        *(
            f"carrier {c['carrier']}: {c['shipments']} shipments, labels "
            f"{c['label_spend']:.2f} {c['currency']}, on time {_percent(c['on_time'])} of "
            f"{c['delivered']} delivered, transit median {hours(c['transit_p50_s'])}"
            for c in figures["by_carrier"]
        ),
        *(
            f"warehouse {w['warehouse']}: {w['shipments']} shipments, packed right "
            f"{_percent(w['shipping_accuracy'])}, paid -> shipped median "
            f"{hours(w['shipped_p50_s'])}"
            for w in figures["by_warehouse"]
        ),
    ]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


def _percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "-"


def hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
