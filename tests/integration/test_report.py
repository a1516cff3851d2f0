"""``orderd report --since --until``: the four figures over the orders paid in the window,
broken down by carrier and by warehouse, from the durable record."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from actors.order.shipment import LEFT
from adapters.postgres.pool import connection
from daemon import report
from daemon.report import _SECONDS, figures
from tests.conftest import POSTGRES_DSN

Run = Callable[..., subprocess.CompletedProcess[str]]


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


async def add_shipped(
    pg: Any,
    n: int,
    *,
    paid: datetime,
    shipped: datetime,
    delivered: datetime,
    promised: date,
    warehouse: str,
    carrier: str,
    service: str,
    amount: str,
    wrong: bool = False,
    mispacked: bool = False,
) -> None:
    await pg.execute(
        """
        INSERT INTO orders (id, source, external_id, name, state, paid_at, shipped_at,
                            delivered_at)
        VALUES ($1, 'generic', $2, $3, 'delivered', $4, $5, $6)
        """,
        f"ord_{n}", str(n), f"#{n}", paid, shipped, delivered,
    )  # fmt: skip
    await pg.execute(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, status, carrier, service,
                               rate_amount, rate_currency, label_id, promised_by, shipped_at,
                               delivered_at, packed_ok, reported_wrong, mispacked)
        VALUES ($1, $2, 1, $3, 'delivered', $4, $5, $6, 'EUR', 'lbl', $7, $8, $9, true, $10,
                $11)
        """,
        f"ord_{n}-1", f"ord_{n}", warehouse, carrier, service, Decimal(amount), promised,
        shipped, delivered, wrong, mispacked,
    )  # fmt: skip


async def test_the_report_covers_its_window_by_carrier_and_by_warehouse(
    run_orderd: Run, pg: Any
) -> None:
    await add_shipped(
        pg, 1, paid=at(1), shipped=at(1, 12), delivered=at(3), promised=date(2026, 11, 3),
        warehouse="main", carrier="sandbox", service="ground", amount="5.00",
    )  # fmt: skip
    await add_shipped(
        pg, 2, paid=at(2), shipped=at(2, 16), delivered=at(6), promised=date(2026, 11, 4),
        warehouse="east", carrier="easypost", service="Priority", amount="7.50", wrong=True,
    )  # fmt: skip
    # Paid after the window: counted nowhere.
    await add_shipped(
        pg, 3, paid=at(10), shipped=at(10, 11), delivered=at(12), promised=date(2026, 11, 12),
        warehouse="main", carrier="sandbox", service="ground", amount="9.00",
    )  # fmt: skip
    shown = run_orderd(
        "report", "--since", "2026-11-01", "--until", "2026-11-05T00:00:00+00:00", "--json"
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert figures["orders"] == {"delivered": 2}
    assert figures["fulfillment_time_s"]["shipped_p50"] == 4 * 3600.0  # 2 h and 6 h
    assert figures["shipping_accuracy"] == 0.5
    assert figures["by_carrier"] == [
        {"carrier": "easypost", "currency": "EUR", "shipments": 1, "label_spend": 7.5,
         "on_time": 0.0, "delivered": 1, "transit_p50_s": (at(6) - at(2, 16)).total_seconds()},
        {"carrier": "sandbox", "currency": "EUR", "shipments": 1, "label_spend": 5.0,
         "on_time": 1.0, "delivered": 1, "transit_p50_s": (at(3) - at(1, 12)).total_seconds()},
    ]  # fmt: skip
    assert figures["by_warehouse"] == [
        {"warehouse": "east", "shipments": 1, "shipping_accuracy": 0.0,
         "shipped_p50_s": 6 * 3600.0},
        {"warehouse": "main", "shipments": 1, "shipping_accuracy": 1.0,
         "shipped_p50_s": 2 * 3600.0},
    ]  # fmt: skip
    text = run_orderd("report", "--since", "2026-11-01", "--until", "2026-11-05")
    assert text.returncode == 0, text.stderr
    assert (
        "carrier sandbox: 1 shipments, labels 5.00 EUR, on time 100.0% of 1 delivered, "
        "transit median 46.0 h"
    ) in text.stdout
    assert "warehouse east: 1 shipments, packed right 0.0%, paid -> shipped median 6.0 h" in (
        text.stdout
    )
    # Everything since the first: the third order counts too.
    every = json.loads(run_orderd("report", "--since", "2026-11-01", "--json").stdout)
    assert every["orders"] == {"delivered": 3}
    assert every["shipping_accuracy"] == round(2 / 3, 4)
    # Packed wrong once, then right: it still counts against accuracy.
    await add_shipped(
        pg, 4, paid=at(11), shipped=at(11, 11), delivered=at(13), promised=date(2026, 11, 14),
        warehouse="main", carrier="sandbox", service="ground", amount="5.00", mispacked=True,
    )  # fmt: skip
    every = json.loads(run_orderd("report", "--since", "2026-11-01", "--json").stdout)
    assert every["shipping_accuracy"] == 0.5
    main = next(w for w in every["by_warehouse"] if w["warehouse"] == "main")
    assert main["shipping_accuracy"] == round(2 / 3, 4)


def test_a_bad_window_is_refused(run_orderd: Run) -> None:
    backwards = run_orderd("report", "--since", "2026-11-05", "--until", "2026-11-01")
    assert backwards.returncode == 2
    assert "--until: before --since" in backwards.stderr
    garbled = run_orderd("report", "--until", "last tuesday")
    assert garbled.returncode == 2
    assert "--until: not an ISO date or time: 'last tuesday'" in garbled.stderr


async def test_turnover_from_summed_days_equals_the_ledger_summed_whole(
    run_orderd: Run, pg: Any
) -> None:
    await pg.execute(
        """
        INSERT INTO products (sku, name, weight_g, bin, unit_cost)
        VALUES ('A', 'A', 100, 'A-1', 2.50), ('B', 'B', 100, 'B-1', 10)
        """
    )
    # Receipts and shipments over 40 days up to now, a few today: most days closed.
    await pg.execute(
        """
        INSERT INTO stock_ledger (movement_key, warehouse, kind, order_id, op_id, at, lines)
        SELECT 'm' || g, 'main', CASE WHEN g % 4 = 0 THEN 'adjust' ELSE 'commit' END,
               CASE WHEN g % 4 = 0 THEN NULL ELSE 'o' || g END, 'x',
               now() - make_interval(hours => 10 * g),
               jsonb_build_array(jsonb_build_array(
                   CASE WHEN g % 2 = 0 THEN 'A' ELSE 'B' END,
                   CASE WHEN g % 4 = 0 THEN 30 ELSE -(1 + g % 3) END, 0, 0))
        FROM generate_series(0, 100) g
        """
    )
    whole = await pg.fetchrow(
        """
        WITH moves AS (
            SELECT l.at, l.kind, (line->>0) AS sku, (line->>1)::numeric AS on_hand
            FROM stock_ledger l, jsonb_array_elements(l.lines) AS line
        )
        SELECT sum(-m.on_hand * p.unit_cost) FILTER (WHERE m.kind = 'commit'
                   AND m.at >= now() - interval '20 days') AS shipped,
               sum(m.on_hand * p.unit_cost) FILTER (WHERE m.at < now() - interval '20 days')
                   AS value_start,
               sum(m.on_hand * p.unit_cost) AS value_end
        FROM moves m JOIN products p ON p.sku = m.sku
        """
    )
    since = (await pg.fetchval("SELECT now() - interval '20 days'")).isoformat()
    expected = float(whole["shipped"] / ((whole["value_start"] + whole["value_end"]) / 2))
    for _ in range(2):  # the first sums the closed days; the second reads them
        shown = run_orderd("report", "--since", since, "--json")
        assert shown.returncode == 0, shown.stderr
        figures = json.loads(shown.stdout)
        assert figures["cost_of_goods_shipped"] == float(whole["shipped"])
        assert figures["inventory_turnover"] == expected
    done = await pg.fetchval("SELECT upto FROM stock_days_done")
    assert done == await pg.fetchval(
        "SELECT ((now() AT TIME ZONE 'UTC') - interval '2 days')::date"
    )
    summed = await pg.fetchval("SELECT count(*) FROM stock_days")
    assert 0 < summed < 101  # a row per day and sku, not per movement


async def test_goods_shipped_at_either_end_of_the_window_count_in_it(
    run_orderd: Run, pg: Any
) -> None:
    await pg.execute(
        "INSERT INTO products (sku, name, weight_g, bin, unit_cost) "
        "VALUES ('A', 'A', 100, 'A-1', 2)"
    )
    await pg.execute(
        """
        INSERT INTO stock_ledger (movement_key, warehouse, kind, order_id, op_id, at, lines)
        VALUES ('in', 'main', 'adjust', NULL, 'x', '2026-10-01T00:00:00Z', '[["A", 100, 0, 0]]'),
               ('s1', 'main', 'commit', 'o1', 'x', '2026-11-01T00:00:00Z', '[["A", -3, -3, 0]]'),
               ('s2', 'main', 'commit', 'o2', 'x', '2026-11-05T00:00:00Z', '[["A", -5, -5, 0]]')
        """
    )
    shown = run_orderd(
        "report", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-05T00:00:00Z", "--json"
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert figures["cost_of_goods_shipped"] == 16.0  # 3 + 5 units at 2
    assert figures["average_inventory_value"] == (200 + 184) / 2


# -- the figures equal the joins over the orders they replace ----------------------------

# The report's figures as first defined: each shipment and rating joined to its order.
REFERENCE = {
    "states": """
        SELECT state, count(*) AS n FROM orders
        WHERE paid_at >= $1 AND paid_at <= $2 AND ($3::text[] IS NULL OR id = ANY($3::text[]))
        GROUP BY state ORDER BY 1
    """,
    "times": """
        WITH took AS (
            SELECT extract(epoch FROM shipped_at - paid_at) AS shipped,
                   extract(epoch FROM delivered_at - paid_at) AS delivered
            FROM orders
            WHERE paid_at >= $1 AND paid_at <= $2
              AND ($3::text[] IS NULL OR id = ANY($3::text[]))
        )
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY shipped) AS shipped_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY shipped) AS shipped_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY delivered) AS delivered_p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY delivered) AS delivered_p90
        FROM took
    """,
    "accuracy": """
        SELECT count(*) AS packed,
               count(*) FILTER (WHERE NOT (s.reported_wrong OR s.mispacked)) AS right
        FROM shipments s JOIN orders o ON o.id = s.order_id
        WHERE o.paid_at >= $1 AND o.paid_at <= $2
          AND ($3::text[] IS NULL OR o.id = ANY($3::text[]))
          AND (s.status = ANY($4::text[]) OR s.status = 'mismatch' OR s.packed_ok IS NOT NULL)
    """,
    "ratings": """
        WITH latest AS (
            SELECT DISTINCT ON (f.order_id) f.score
            FROM feedback f JOIN orders o ON o.id = f.order_id
            WHERE o.paid_at >= $1 AND o.paid_at <= $2
              AND ($3::text[] IS NULL OR o.id = ANY($3::text[]))
            ORDER BY f.order_id, f.at DESC, f.id DESC
        )
        SELECT count(*) AS rated, count(*) FILTER (WHERE score >= 4) AS satisfied FROM latest
    """,
    "carriers": """
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
          AND o.paid_at >= $1 AND o.paid_at <= $2
          AND ($3::text[] IS NULL OR o.id = ANY($3::text[]))
        GROUP BY 1, 2 ORDER BY 1, 2
    """,
    "warehouses": """
        SELECT s.warehouse, count(*) AS shipments,
               count(*) FILTER (WHERE s.packed_ok IS NOT NULL) AS packed,
               count(*) FILTER (WHERE s.packed_ok IS NOT NULL
                                  AND NOT (s.reported_wrong OR s.mispacked)) AS right,
               percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY extract(epoch FROM s.shipped_at - o.paid_at)) AS shipped_p50
        FROM shipments s JOIN orders o ON o.id = s.order_id
        WHERE o.paid_at >= $1 AND o.paid_at <= $2
          AND ($3::text[] IS NULL OR o.id = ANY($3::text[]))
        GROUP BY 1 ORDER BY 1
    """,
}


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def seconds(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


async def reference(
    pg: Any, start: datetime, until: datetime, only: list[str] | None
) -> dict[str, Any]:
    """The figures other than the stock's, computed by the joins of REFERENCE."""
    window = (start, until, only)
    states = await pg.fetch(REFERENCE["states"], *window)
    times = await pg.fetchrow(REFERENCE["times"], *window)
    accuracy = await pg.fetchrow(REFERENCE["accuracy"], *window, sorted(LEFT))
    ratings = await pg.fetchrow(REFERENCE["ratings"], *window)
    carriers = await pg.fetch(REFERENCE["carriers"], *window)
    warehouses = await pg.fetch(REFERENCE["warehouses"], *window)
    return {
        "orders": {r["state"]: r["n"] for r in states},
        "fulfillment_time_s": {key: seconds(value) for key, value in times.items()},
        "shipping_accuracy": share(accuracy["right"], accuracy["packed"]),
        "shipments_packed": accuracy["packed"],
        "csat": share(ratings["satisfied"], ratings["rated"]),
        "ratings": ratings["rated"],
        "by_carrier": [
            {
                "carrier": r["carrier"],
                "currency": (r["currency"] or "").strip(),
                "shipments": r["shipments"],
                "label_spend": float(r["spend"]),
                "on_time": share(r["on_time"], r["delivered"]),
                "delivered": r["delivered"],
                "transit_p50_s": seconds(r["transit_p50"]),
            }
            for r in carriers
        ],
        "by_warehouse": [
            {
                "warehouse": r["warehouse"],
                "shipments": r["shipments"],
                "shipping_accuracy": share(r["right"], r["packed"]),
                "shipped_p50_s": seconds(r["shipped_p50"]),
            }
            for r in warehouses
        ],
    }


async def a_varied_book(pg: Any, start: datetime, n: int) -> list[str]:
    """``n`` orders paid over 40 days from ``start``, in every state, with zero to two
    shipments each (some never shipped, some without a carrier or a currency, packed
    right, wrong, or not checked) and zero to three ratings (some at the same moment);
    the times to the microsecond. Their ids."""
    rng = random.Random(7)
    states = ["received", "reserved", "shipped", "delivered", "completed", "cancelled",
              "needs_attention"]  # fmt: skip
    statuses = ["requested", "packed", "mismatch", "label_created", "shipped", "delivered",
                "failure", "returned", "cancelled"]  # fmt: skip
    orders: list[tuple[Any, ...]] = []
    shipments: list[tuple[Any, ...]] = []
    ratings: list[tuple[Any, ...]] = []
    for i in range(n):
        order_id = f"ord_{i}"
        paid = start + timedelta(seconds=rng.uniform(0, 40 * 86400))
        shipped = paid + timedelta(seconds=rng.uniform(600, 5 * 86400)) if i % 7 else None
        delivered = shipped + timedelta(seconds=rng.uniform(3600, 9 * 86400)) if (
            shipped and i % 5
        ) else None  # fmt: skip
        # A few paid exactly at a microsecond the window's edges fall on.
        if i % 97 == 0:
            paid = start + timedelta(days=10)
        orders.append((order_id, str(i), rng.choice(states), paid, shipped, delivered))
        for seq in range(1, rng.choice([0, 1, 1, 1, 2]) + 1):
            sent = shipped + timedelta(seconds=rng.uniform(0, 3600)) if (
                shipped and rng.random() < 0.9
            ) else None  # fmt: skip
            came = delivered if sent and delivered and rng.random() < 0.9 else None
            promised = (paid + timedelta(days=rng.choice([2, 4, 6]))).date()
            shipments.append((
                f"{order_id}-{seq}", order_id, seq, rng.choice(["main", "east", "west"]),
                rng.choice(statuses), rng.choice(["sandbox", "easypost", "shippo", None]),
                rng.choice(["EUR", "EUR", "USD", None]),
                Decimal(rng.randint(300, 1500)) / 100 if rng.random() < 0.95 else None,
                promised if rng.random() < 0.9 else None, sent, came,
                rng.choice([True, True, True, False, None]), rng.random() < 0.05,
                rng.random() < 0.05,
            ))  # fmt: skip
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            at = paid + timedelta(days=rng.choice([3, 5, 5, 8]))
            ratings.append((order_id, rng.randint(1, 5), f"t{len(ratings)}", at))
    await pg.executemany(
        """
        INSERT INTO orders (id, source, external_id, state, paid_at, shipped_at, delivered_at)
        VALUES ($1, 'generic', $2, $3, $4, $5, $6)
        """,
        orders,
    )
    await pg.executemany(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, status, carrier, rate_currency,
                               rate_amount, promised_by, shipped_at, delivered_at, packed_ok,
                               reported_wrong, mispacked)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        """,
        shipments,
    )
    await pg.executemany(
        "INSERT INTO feedback (order_id, score, token_id, at) VALUES ($1, $2, $3, $4)", ratings
    )
    # The whole book starts at the ledger's first movement.
    await pg.execute(
        """
        INSERT INTO stock_ledger (movement_key, warehouse, kind, op_id, at, lines)
        VALUES ('first', 'main', 'adjust', 'x', $1, '[["A", 5, 0, 0]]')
        """,
        start + timedelta(days=1),
    )
    return [o[0] for o in orders]


@pytest.mark.timeout(120)
async def test_the_figures_equal_those_of_the_joins_over_the_orders(
    pg: Any, pg_schema_name: str
) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ids = await a_varied_book(pg, start, 600)
    some = ids[::3]
    month = (start + timedelta(days=10), start + timedelta(days=30))
    async with connection(POSTGRES_DSN, pg_schema_name) as beside:
        for since, until, only in (
            (*month, None),
            (*month, some),
            (None, start + timedelta(days=50), None),
            (start + timedelta(days=60), start + timedelta(days=70), None),  # nothing in it
        ):
            alone = await figures(pg, since, until, only)
            both = await figures(pg, since, until, only, beside=beside)
            assert alone == both
            first = datetime.fromisoformat(alone["since"])
            assert since is not None or first == start + timedelta(days=1)
            expected = await reference(pg, first, until, only)
            assert {key: alone[key] for key in expected} == expected
            # Unrounded, the percentiles are the same floats.
            window = (first, until, only)
            _, times = await report._order_figures(pg, *window)
            assert times == dict(await pg.fetchrow(REFERENCE["times"], *window))
            _, carriers, warehouses = await report._shipment_figures(pg, *window)
            assert [r["p50"] for r in carriers] == [
                r["transit_p50"] for r in await pg.fetch(REFERENCE["carriers"], *window)
            ]
            assert [r["p50"] for r in warehouses] == [
                r["shipped_p50"] for r in await pg.fetch(REFERENCE["warehouses"], *window)
            ]
    # The window held enough to mean something.
    whole = await reference(pg, start + timedelta(days=1), start + timedelta(days=50), None)
    assert sum(whole["orders"].values()) > 500
    assert len(whole["by_carrier"]) > 3
    assert whole["ratings"] > 100


async def test_seconds_are_the_exact_epoch_to_the_last_bit(pg: Any) -> None:
    pairs = [
        ("2026-11-01 10:00:00+00", "2026-11-01 10:00:00+00"),
        ("2026-11-01 10:00:00.000001+00", "2026-11-01 10:00:00+00"),
        ("2026-11-01 10:00:00+00", "2026-11-01 10:00:00.000001+00"),
        ("2026-11-01 10:00:00.5+00", "2026-11-01 10:00:00+00"),
        ("2026-11-02 09:59:59.999999+00", "2026-11-01 10:00:00+00"),
        ("2026-11-05 10:00:00.123457+00", "2026-11-01 10:00:00.000001+00"),
        ("2026-03-29 03:00:00+02", "2026-03-28 23:00:00+00"),
        ("2027-12-31 23:59:59.999999+00", "2026-01-01 00:00:00+00"),
        ("2056-06-01 12:34:56.789012+00", "2000-01-01 00:00:00+00"),
        ("2000-01-01 00:00:00+00", "2056-06-01 12:34:56.789012+00"),
    ]
    rows = await pg.fetch(
        f"""
        SELECT extract(epoch FROM a - b)::float8 AS exact, {_SECONDS.format("a - b")} AS fast
        FROM unnest($1::timestamptz[], $2::timestamptz[]) AS p(a, b)
        UNION ALL
        SELECT extract(epoch FROM a - b)::float8, {_SECONDS.format("a - b")}
        FROM (SELECT now() + make_interval(secs => random() * 1e8) AS a, now() AS b
              FROM generate_series(1, 100000)) AS r
        """,
        [datetime.fromisoformat(a) for a, _ in pairs],
        [datetime.fromisoformat(b) for _, b in pairs],
    )
    differ = [(r["exact"], r["fast"]) for r in rows if r["exact"] != r["fast"]]
    assert differ == []
    assert len(rows) == len(pairs) + 100000


async def test_the_whole_book_starts_at_the_ledger_s_first_movement(pg: Any) -> None:
    now = await pg.fetchval("SELECT now()")

    async def moved(key: str, at: datetime) -> None:
        await pg.execute(
            """
            INSERT INTO stock_ledger (movement_key, warehouse, kind, op_id, at, lines)
            VALUES ($1, 'main', 'adjust', 'x', $2, '[["A", 1, 0, 0]]')
            """,
            key,
            at,
        )

    # Nothing summed yet (every movement is from today): the ledger's own first.
    await moved("a", now - timedelta(hours=1))
    await moved("b", now - timedelta(minutes=30))
    assert (await figures(pg, None, now))["since"] == (now - timedelta(hours=1)).isoformat()
    # Summed days: the first lies before the end of the first of them.
    await moved("c", now - timedelta(days=10))
    await moved("d", now - timedelta(days=9))
    await pg.execute("DELETE FROM stock_days_done")  # as if no report had summed yet
    assert (await figures(pg, None, now))["since"] == (now - timedelta(days=10)).isoformat()
    assert await pg.fetchval("SELECT count(*) FROM stock_days") > 0
    # One written late, before every summed day, is found all the same.
    await moved("e", now - timedelta(days=20))
    assert (await figures(pg, None, now))["since"] == (now - timedelta(days=20)).isoformat()
