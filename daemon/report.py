"""``orderd report``: the four figures a warehouse manager watches, from the durable record.

Fulfillment time (paid to shipped, paid to delivered: median and 90th percentile), shipping
accuracy (shipments packed right the first time and not reported wrong, over all packed),
customer satisfaction (share of 4 and 5 among each order's latest rating) and inventory
turnover (cost of the goods shipped over the average value of the stock on hand), with the
orders counted by state, and broken down by carrier (shipments, label spend, on-time rate,
transit time) and by warehouse (shipments, accuracy, time to ship). Nothing comes from
counters a restart would lose.

Every figure is exact, over every order paid in the window, and all are read from one
snapshot. What keeps a year's book quick to read: one pass over the orders (their counts by
state and their fulfillment times) and one over the shipments (accuracy, carriers and
warehouses together, summed per carrier and warehouse and rolled up); shipments and ratings
carry their order's ``paid_at`` (migration 22), so neither pass joins the orders; each
percentile sorts its durations once, in memory; and, given a second connection, the
shipments' pass runs beside the orders'. Inventory turnover reads the stock ledger summed
per closed day (``stock_days``) plus the ledger's own rows since.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
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
    (now when None), read on two connections at once."""
    async with database(settings) as conn, database(settings) as beside:
        await schema.require_current(conn, settings.postgres.schema)
        return await figures(conn, since, until or datetime.now(UTC), beside=beside)


async def figures(
    conn: Any,
    since: datetime | None,
    until: datetime,
    orders: Sequence[str] | None = None,
    *,
    beside: Any = None,
) -> dict[str, Any]:
    """The figures over [``since``, ``until``]; for the given ``orders`` only, if named.

    All of them are read from one snapshot of the database, in transactions of their own
    (so not inside the caller's). Given a second connection ``beside``, the shipments'
    figures are read on it while the orders' are read on ``conn``: on two cores, in about
    half the time.
    """
    upto = await _summarise_days(conn)
    start = since or await _first_movement(conn) or until
    only = list(orders) if orders is not None else None
    window = (start, until, only)
    async with _snapshot(conn, beside) as other:
        if other is None:
            by_order = await _order_figures(conn, *window)
            rest = await _the_rest(conn, upto, *window)
        else:
            by_order, rest = await asyncio.gather(
                _order_figures(conn, *window), _the_rest(other, upto, *window)
            )
    by_shipment, ratings, stock = rest
    states, times = by_order
    totals, carriers, warehouses = by_shipment
    average = (stock["value_start"] + stock["value_end"]) / 2
    return {
        "since": start.isoformat(),
        "until": until.isoformat(),
        "orders": states,
        "fulfillment_time_s": {key: _round(value) for key, value in times.items()},
        "shipping_accuracy": _share(totals["right"], totals["packed"]),
        "shipments_packed": totals["packed"],
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
                "transit_p50_s": _round(r["p50"]),
            }
            for r in carriers
        ],
        "by_warehouse": [
            {
                "warehouse": r["warehouse"],
                "shipments": r["shipments"],
                "shipping_accuracy": _share(r["right"], r["packed"]),
                "shipped_p50_s": _round(r["p50"]),
            }
            for r in warehouses
        ],
    }


# Sorts of a million durations stay in memory; compiling the queries (JIT) gains nothing
# measurable on a year's book and costs its compile time on a week's; each query is
# planned for its own window (a plan made for 7 days would read a year by its index).
_SETTINGS = """
    SET LOCAL work_mem = '64MB';
    SET LOCAL jit = off;
    SET LOCAL plan_cache_mode = force_custom_plan;
"""


@asynccontextmanager
async def _snapshot(conn: Any, beside: Any) -> AsyncIterator[Any]:
    """A read-only transaction on ``conn`` and, if ``beside`` is given, one on it that
    sees the same snapshot (exported by the first); yields ``beside``."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(_SETTINGS)
        if beside is None:
            yield None
            return
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        async with beside.transaction(isolation="repeatable_read", readonly=True):
            quoted = snapshot.replace("'", "''")
            await beside.execute(f"SET TRANSACTION SNAPSHOT '{quoted}'")
            await beside.execute(_SETTINGS)
            yield beside


# Seconds as float8, equal to the bit to extract(epoch FROM ...)::float8 and at a third
# of its cost: date_part's seconds are within a fraction of a microsecond of the exact
# value (for spans under 68 years), so rounding to whole microseconds recovers it, and
# one division rounds it as the numeric conversion does.
_SECONDS = "round(date_part('epoch', {}) * 1000000) / 1000000"

# The durations are gathered into arrays as the rows pass and sorted once per percentile;
# unnested in a select list, an array's values stream to the sort (in FROM, a function's
# rows are stored first).
_ORDERS = f"""
    WITH by_state AS (
        SELECT state, count(*) AS n,
               array_agg({_SECONDS.format("shipped_at - paid_at")})
                   FILTER (WHERE shipped_at IS NOT NULL) AS shipped,
               array_agg({_SECONDS.format("delivered_at - paid_at")})
                   FILTER (WHERE delivered_at IS NOT NULL) AS delivered
        FROM orders
        WHERE paid_at >= $1 AND paid_at <= $2 AND ($3::text[] IS NULL OR id = ANY($3::text[]))
        GROUP BY state
    ),
    shipped AS (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY t) AS p90
        FROM (SELECT unnest(shipped) AS t FROM by_state) AS each_one
    ),
    delivered AS (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY t) AS p90
        FROM (SELECT unnest(delivered) AS t FROM by_state) AS each_one
    )
    SELECT b.state, b.n, s.p50 AS shipped_p50, s.p90 AS shipped_p90,
           d.p50 AS delivered_p50, d.p90 AS delivered_p90
    FROM shipped s CROSS JOIN delivered d LEFT JOIN by_state b ON true
    ORDER BY b.state
"""


_TIMES = ("shipped_p50", "shipped_p90", "delivered_p50", "delivered_p90")


async def _order_figures(
    conn: Any, start: datetime, until: datetime, only: list[str] | None
) -> tuple[dict[str, int], dict[str, float | None]]:
    """Orders by state, and the fulfillment times' percentiles: one pass over the orders,
    their times gathered per state and sorted once each."""
    rows = await conn.fetch(_ORDERS, start, until, only)
    times = {key: rows[0][key] for key in _TIMES}
    return {r["state"]: r["n"] for r in rows if r["state"] is not None}, times


# A shipment counts as packed once it left, or was found packed wrong, or was checked.
_PACKED = "(status = ANY($4::text[]) OR status = 'mismatch' OR packed_ok IS NOT NULL)"
_RIGHT = "NOT (reported_wrong OR mispacked)"
_SHIPPED = "shipped_at IS NOT NULL"

_SHIPMENTS = f"""
    WITH parts AS (
        SELECT carrier, rate_currency, warehouse, count(*) AS shipments,
               count(*) FILTER (WHERE {_PACKED}) AS packed,
               count(*) FILTER (WHERE {_PACKED} AND {_RIGHT}) AS packed_right,
               count(*) FILTER (WHERE packed_ok IS NOT NULL) AS checked,
               count(*) FILTER (WHERE packed_ok IS NOT NULL AND {_RIGHT}) AS checked_right,
               count(*) FILTER (WHERE {_SHIPPED}) AS shipped,
               coalesce(sum(rate_amount) FILTER (WHERE {_SHIPPED}), 0) AS spend,
               count(*) FILTER (WHERE {_SHIPPED} AND delivered_at IS NOT NULL
                                  AND promised_by IS NOT NULL) AS delivered,
               count(*) FILTER (WHERE {_SHIPPED}
                                  AND (delivered_at AT TIME ZONE 'UTC')::date <= promised_by)
                   AS on_time,
               array_agg({_SECONDS.format("delivered_at - shipped_at")})
                   FILTER (WHERE {_SHIPPED} AND delivered_at IS NOT NULL) AS transit,
               array_agg({_SECONDS.format("shipped_at - paid_at")})
                   FILTER (WHERE {_SHIPPED}) AS took
        FROM shipments
        WHERE paid_at >= $1 AND paid_at <= $2
          AND ($3::text[] IS NULL OR order_id = ANY($3::text[]))
        GROUP BY carrier, rate_currency, warehouse
    )
    SELECT 'carrier' AS kind, carrier, rate_currency AS currency, NULL AS warehouse,
           sum(shipped)::bigint AS shipments, sum(spend) AS spend,
           sum(delivered)::bigint AS delivered, sum(on_time)::bigint AS on_time,
           NULL::bigint AS packed, NULL::bigint AS right,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t)
            FROM (SELECT unnest(o.transit) AS t FROM parts o
                  WHERE o.carrier = p.carrier
                    AND o.rate_currency IS NOT DISTINCT FROM p.rate_currency) AS each_one)
               AS p50
    FROM parts p WHERE carrier IS NOT NULL
    GROUP BY carrier, rate_currency HAVING sum(shipped) > 0
    UNION ALL
    SELECT 'warehouse', NULL, NULL, warehouse, sum(shipments)::bigint, NULL, NULL, NULL,
           sum(checked)::bigint, sum(checked_right)::bigint,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY t)
            FROM (SELECT unnest(o.took) AS t FROM parts o
                  WHERE o.warehouse = p.warehouse) AS each_one)
    FROM parts p GROUP BY warehouse
    UNION ALL
    SELECT 'all', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           coalesce(sum(packed), 0)::bigint, coalesce(sum(packed_right), 0)::bigint, NULL
    FROM parts
    ORDER BY kind, carrier, currency, warehouse
"""


async def _shipment_figures(
    conn: Any, start: datetime, until: datetime, only: list[str] | None
) -> tuple[dict[str, int], list[Any], list[Any]]:
    """Shipping accuracy over all packed, and the figures by carrier and by warehouse: one
    pass over the shipments, summed per carrier and warehouse, then rolled up."""
    rows = await conn.fetch(_SHIPMENTS, start, until, only, sorted(LEFT))
    (total,) = [r for r in rows if r["kind"] == "all"]
    return (
        {"packed": total["packed"], "right": total["right"]},
        [r for r in rows if r["kind"] == "carrier"],
        [r for r in rows if r["kind"] == "warehouse"],
    )


async def _ratings(
    conn: Any, start: datetime, until: datetime, only: list[str] | None
) -> dict[str, int]:
    """Each rated order's latest rating: how many, and how many are 4 or 5."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS rated, count(*) FILTER (WHERE score >= 4) AS satisfied
        FROM (SELECT DISTINCT ON (order_id) score FROM feedback
              WHERE paid_at >= $1 AND paid_at <= $2
                AND ($3::text[] IS NULL OR order_id = ANY($3::text[]))
              ORDER BY order_id, at DESC, id DESC) AS latest
        """,
        start,
        until,
        only,
    )
    return {"rated": row["rated"], "satisfied": row["satisfied"]}


async def _the_rest(
    conn: Any, upto: date | None, start: datetime, until: datetime, only: list[str] | None
) -> tuple[tuple[dict[str, int], list[Any], list[Any]], dict[str, int], dict[str, Decimal]]:
    """The shipments' figures, the ratings and the stock's, one after the other."""
    by_shipment = await _shipment_figures(conn, start, until, only)
    ratings = await _ratings(conn, start, until, only)
    return by_shipment, ratings, await _stock(conn, upto, start, until)


async def _first_movement(conn: Any) -> datetime | None:
    """When the stock ledger's first movement happened. It lies before the end of the
    first summed day, if any: bounded so, the ledger's BRIN index reads a few blocks of it
    instead of all."""
    first_day = await conn.fetchval("SELECT min(day) FROM stock_days")
    if first_day is None:
        found: datetime | None = await conn.fetchval("SELECT min(at) FROM stock_ledger")
        return found
    bound = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    first: datetime | None = await conn.fetchval(
        "SELECT min(at) FROM stock_ledger WHERE at < $1", bound + timedelta(days=1)
    )
    return first


async def _stock(
    conn: Any, upto: date | None, start: datetime, until: datetime
) -> dict[str, Decimal]:
    """The goods shipped at cost over [``start``, ``until``], and the stock's value at
    either end."""
    # The window is [start, until]: what moved at its start counts in it, not before it.
    before = await _stock_at(conn, upto, start, inclusive=False)
    through = await _stock_at(conn, upto, until, inclusive=True)
    return {
        "shipped_cost": through[1] - before[1],
        "value_start": before[0],
        "value_end": through[0],
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
        # A first report sums a year's movements in one pass: hashed in memory, not compiled.
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
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
        f"shipping accuracy: {percent(accuracy)} of {figures['shipments_packed']} shipments "
        "packed right the first time",
        f"customer satisfaction: {percent(csat)} of {figures['ratings']} ratings are 4 or 5",
        "inventory turnover: "
        + (f"{turnover:.2f}" if turnover is not None else "-")
        + f" (goods shipped at cost {figures['cost_of_goods_shipped']:.2f} over average "
        f"stock value {figures['average_inventory_value']:.2f})",
        *(
            f"carrier {c['carrier']}: {c['shipments']} shipments, labels "
            f"{c['label_spend']:.2f} {c['currency']}, on time {percent(c['on_time'])} of "
            f"{c['delivered']} delivered, transit median {hours(c['transit_p50_s'])}"
            for c in figures["by_carrier"]
        ),
        *(
            f"warehouse {w['warehouse']}: {w['shipments']} shipments, packed right "
            f"{percent(w['shipping_accuracy'])}, paid -> shipped median "
            f"{hours(w['shipped_p50_s'])}"
            for w in figures["by_warehouse"]
        ),
    ]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


def percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "-"


def hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
