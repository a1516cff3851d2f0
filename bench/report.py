"""How long ``orderd report`` takes over a large order book, against a full scan of the
orders table measured in the same run.

    .venv/bin/python bench/report.py --quick      # 100,000 orders, about half a minute
    .venv/bin/python bench/report.py              # 1,000,000 orders, a few minutes

A fresh schema ``bench_report_<run>`` is migrated and filled with a history spread over a
year: one order a minute or so, each shipped from one of two warehouses by one of three
carriers, most delivered, a fifth rated, one in two hundred packed wrong, and the stock
ledger's movements (a receipt per sku per week, a commit per order). The schema is dropped
at the end, also after an error or Ctrl-C. What is timed is :func:`daemon.report.figures`,
as ``orderd report`` runs it: the first report, which sums the stock ledger's closed days
once, then the last 30 days and the whole book (median of three runs each); the baseline
is ``SELECT count(*) FROM orders`` on the same connection, the least any report of the
whole book reads. The goal: the report answers in under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.postgres import schema
from adapters.postgres.pool import connection
from daemon.report import figures
from daemon.settings import load_settings

GOAL_S = 2.0


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def build(conn: Any, orders: int, now: datetime) -> None:
    """A year of history ending at ``now``."""
    span_s = 365 * 86400
    await conn.execute(
        """
        INSERT INTO products (sku, name, weight_g, bin, unit_cost)
        SELECT 'SKU-' || g, 'Product ' || g, 100 + g, 'A-' || g, 2 + g % 20
        FROM generate_series(1, 200) g
        """
    )
    say(f"orders: {orders:,}")
    await conn.execute(
        """
        INSERT INTO orders (id, source, external_id, name, state, paid_at, shipped_at,
                            delivered_at, warehouse, currency)
        SELECT 'ord_' || g, 'generic', g::text, '#' || g,
               CASE WHEN g % 50 = 0 THEN 'shipped' ELSE 'delivered' END,
               p, p + make_interval(hours => 2 + g % 30),
               CASE WHEN g % 50 = 0 THEN NULL ELSE p + make_interval(hours => 30 + g % 90) END,
               CASE WHEN g % 3 = 0 THEN 'east' ELSE 'main' END, 'EUR'
        FROM generate_series(1, $1) g,
             LATERAL (SELECT $2::timestamptz - make_interval(secs => $3::float8 * g / $1) AS p) t
        """,
        orders,
        now,
        span_s,
    )
    say("shipments")
    await conn.execute(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, status, carrier, service,
                               rate_amount, rate_currency, label_id, promised_by, shipped_at,
                               delivered_at, packed_ok, reported_wrong, mispacked)
        SELECT o.id || '-1', o.id, 1, o.warehouse,
               CASE WHEN o.delivered_at IS NULL THEN 'shipped' ELSE 'delivered' END,
               (ARRAY['sandbox', 'easypost', 'shippo'])[1 + g % 3],
               (ARRAY['ground', 'Priority', 'express'])[1 + g % 3],
               4 + g % 7, 'EUR', 'lbl-' || g, (o.paid_at + interval '4 days')::date,
               o.shipped_at, o.delivered_at, g % 200 <> 0, false, g % 200 = 0
        FROM orders o, LATERAL (SELECT substr(o.id, 5)::int AS g) n
        """
    )
    say("events")
    await conn.execute(
        """
        INSERT INTO order_event_turns (order_id, seq, upto, events)
        SELECT o.id, 1, 2, json_build_array(
                   json_build_object('type', 'received', 'at', o.paid_at),
                   CASE WHEN g % 200 = 0
                        THEN json_build_object('type', 'pack_mismatch', 'at', o.shipped_at,
                                               'shipment_id', o.id || '-1')
                        ELSE json_build_object('type', 'shipped', 'at', o.shipped_at,
                                               'shipment_id', o.id || '-1') END)
        FROM orders o, LATERAL (SELECT substr(o.id, 5)::int AS g) n
        """
    )
    say("ratings")
    await conn.execute(
        """
        INSERT INTO feedback (order_id, score, token_id, at)
        SELECT id, 1 + substr(id, 5)::int % 5, md5(id), delivered_at + interval '1 day'
        FROM orders WHERE delivered_at IS NOT NULL AND substr(id, 5)::int % 5 = 0
        """
    )
    say("stock ledger")
    await conn.execute(
        """
        INSERT INTO stock_ledger (movement_key, warehouse, kind, op_id, at, lines)
        SELECT 'in:' || s || ':' || w, 'main', 'adjust', 'in', $1::timestamptz
                   - make_interval(days => 7 * w),
               jsonb_build_array(jsonb_build_array('SKU-' || s, 200, 0, 0))
        FROM generate_series(1, 200) s, generate_series(0, 52) w
        """,
        now,
    )
    await conn.execute(
        """
        INSERT INTO stock_ledger (movement_key, warehouse, kind, order_id, op_id, at, lines)
        SELECT 'ship:' || o.id, o.warehouse, 'commit', o.id, 'ship', o.shipped_at,
               jsonb_build_array(jsonb_build_array(
                   'SKU-' || (1 + substr(o.id, 5)::int % 200), -1, -1, 0))
        FROM orders o
        """
    )
    say("analyze")
    await conn.execute("ANALYZE")


async def timed(conn: Any, since: datetime | None, now: datetime) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        await figures(conn, since, now)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


async def scan(conn: Any) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        await conn.fetchval("SELECT count(*) FROM orders")
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 orders")
    parser.add_argument("--orders", type=int, help="orders in the book (1,000,000)")
    args = parser.parse_args()
    orders = args.orders or (100_000 if args.quick else 1_000_000)
    settings = load_settings()
    name = f"bench_report_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with connection(settings.postgres.dsn, name) as conn:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            await schema.migrate(conn, name)
            started = time.perf_counter()
            await build(conn, orders, now)
            say(f"built in {time.perf_counter() - started:.0f} s")
            started = time.perf_counter()
            await figures(conn, now - timedelta(days=30), now)
            first = time.perf_counter() - started
            window = await timed(conn, now - timedelta(days=30), now)
            whole = await timed(conn, None, now)
            baseline = await scan(conn)
        finally:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    print(f"report over {orders:,} orders")
    print(f"  the first report, summing the ledger's closed days once: {first:.3f} s")
    print("  then, median of 3:")
    print(f"  last 30 days: {window:.3f} s")
    print(f"  the whole book: {whole:.3f} s")
    print(f"  baseline, SELECT count(*) FROM orders: {baseline:.3f} s")
    for label, took in (("last 30 days", window), ("the whole book", whole)):
        mark = "PASS" if took < GOAL_S else "BELOW"
        print(f"  goal: {label} < {GOAL_S:.0f} s ... {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
