"""``orderd report --since --until``: the four figures over the orders paid in the window,
broken down by carrier and by warehouse, from the durable record."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

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
