"""How long ``orderd report`` takes over a large order book, against a full scan of the
orders table measured in the same run.

    .venv/bin/python bench/report.py --quick      # 100,000 orders, about half a minute
    .venv/bin/python bench/report.py              # 1,000,000 orders, a few minutes

A fresh schema ``bench_report_<run>`` is migrated and filled with a history spread over a
year: one order a minute or so, each shipped from one of two warehouses by one of three
carriers, most delivered, a fifth rated, one in two hundred packed wrong, and the stock
ledger's movements (a receipt per sku per week, a commit per order). The rows are as wide
as the daemon writes them (an order's row holds its actor's state, about 1.2 kB of JSON;
a shipment's its label, tracking and rate), the times to ship and to deliver are spread to
the microsecond, and the tables are vacuumed as autovacuum keeps a book a year old. The
schema is dropped at the end, also after an error or Ctrl-C. What is timed is
:func:`daemon.report.figures`, as ``orderd report`` runs it (on two connections): the first
report, which sums the stock ledger's closed days once, then the last 30 days and the whole
book (median of three runs each), then both again on one connection, as ``/metrics`` and
the dashboard read them. The baseline is ``SELECT count(state) FROM orders`` on the same
connection: each order's row read once, the least any report of the whole book reads. The
goal: the report answers in under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    """A year of history ending at ``now``, its rows as wide as the daemon writes them."""
    span_s = 365 * 86400
    await conn.execute(
        """
        INSERT INTO products (sku, name, weight_g, bin, unit_cost)
        SELECT 'SKU-' || g, 'Product ' || g, 100 + g, 'A-' || g, 2 + g % 20
        FROM generate_series(1, 200) g
        """
    )
    say(f"orders: {orders:,}")
    # Each order's row holds its actor's state (the JSON a turn saves, about 1.2 kB once
    # shipped), and its times to ship and to deliver are spread to the microsecond as the
    # daemon's clock records them: a sort of a million of them does a million's work.
    await conn.execute(
        """
        INSERT INTO orders (id, source, external_id, name, state, paid_at, shipped_at,
                            delivered_at, warehouse, currency, service_level, actor_state)
        SELECT o.id, 'generic', o.g::text, '#' || o.g, o.state, o.paid_at, o.shipped_at,
               o.delivered_at, o.warehouse, 'EUR', 'standard',
               json_build_object(
                   'order_id', o.id, 'state', o.state, 'policy', 'wait_all',
                   'shipments', json_build_array(json_build_object(
                       'id', o.id || '-1', 'seq', 1, 'warehouse', o.warehouse,
                       'lines', json_build_array(json_build_array(o.sku, 1)),
                       'status', o.state, 'service_level', 'standard',
                       'promised_by', o.promised_by,
                       'parcel', json_build_object('weight_g', 400 + o.g % 900,
                                                   'length_cm', 21.0, 'width_cm', 15.0,
                                                   'height_cm', 4.0),
                       'rate', json_build_object(
                           'carrier', o.carrier, 'carrier_account', o.carrier || ' account',
                           'service', o.service, 'amount', (4 + o.g % 7)::text,
                           'currency', 'EUR', 'delivery_days', 3,
                           'delivery_date', o.promised_by - 1,
                           'rate_id', 'r_' || o.id || ':' || o.service, 'quote_id', 'q_' || o.id),
                       'estimated_delivery', o.promised_by - 1,
                       'tracking_number', o.tracking_number,
                       'tracking_url', 'https://track.example/' || o.carrier || '/'
                                       || o.tracking_number,
                       'label_format', 'pdf',
                       'label_path', '/var/lib/orderd/labels/' || o.id || '-1.pdf',
                       'purchase_id', 'lbl-' || o.g, 'packed_ok', o.g % 200 <> 0,
                       'shipped_at', o.shipped_at,
                       'tracking_status', CASE WHEN o.delivered_at IS NULL THEN 'in_transit'
                                               ELSE 'delivered' END,
                       'tracking_detail', CASE WHEN o.delivered_at IS NULL THEN 'In transit'
                                               ELSE 'Delivered' END,
                       'tracking_at', coalesce(o.delivered_at, o.shipped_at),
                       'carrier_estimate', o.promised_by - 1, 'scans', 6,
                       'delivered_at', o.delivered_at)))
        FROM (
            SELECT 'ord_' || g AS id, g, p AS paid_at,
                   CASE WHEN g % 50 = 0 THEN 'shipped' ELSE 'delivered' END AS state,
                   p + make_interval(secs => 7200 + 100800 * r1) AS shipped_at,
                   CASE WHEN g % 50 <> 0
                        THEN p + make_interval(secs => 108000 + 324000 * r2) END AS delivered_at,
                   CASE WHEN g % 3 = 0 THEN 'east' ELSE 'main' END AS warehouse,
                   'SKU-' || (1 + g % 200) AS sku, (p + interval '4 days')::date AS promised_by,
                   (ARRAY['sandbox', 'easypost', 'shippo'])[1 + g % 3] AS carrier,
                   (ARRAY['ground', 'Priority', 'express'])[1 + g % 3] AS service,
                   'TRK' || lpad(g::text, 14, '0') AS tracking_number
            FROM generate_series(1, $1) g,
                 LATERAL (SELECT $2::timestamptz - make_interval(secs => $3::float8 * g / $1)
                                     AS p,
                                 -- two spreads over [0, 1) that do not follow g's order
                                 (g::bigint * 2654435761 % 4294967296) / 4294967296.0 AS r1,
                                 (g::bigint * 2246822519 % 4294967296) / 4294967296.0 AS r2) t
        ) o
        """,
        orders,
        now,
        span_s,
    )
    say("shipments")
    await conn.execute(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, status, carrier, carrier_account,
                               service, service_level, rate_amount, rate_currency, quote_id,
                               rate_id, label_idempotency, label_id, tracking_number,
                               tracking_url, label_format, label_path, weight_g, length_cm,
                               width_cm, height_cm, promised_by, estimated_delivery,
                               packed_ok, shipped_at, tracking_status, tracking_detail,
                               tracking_at, carrier_estimate, delivered_at, reported_wrong,
                               mispacked)
        SELECT o.id || '-1', o.id, 1, o.warehouse,
               CASE WHEN o.delivered_at IS NULL THEN 'shipped' ELSE 'delivered' END,
               c.carrier, c.carrier || ' account', c.service, 'standard', 4 + g % 7, 'EUR',
               'q_' || o.id, 'r_' || o.id || ':' || c.service, o.id || '-1:label',
               'lbl-' || g, 'TRK' || lpad(g::text, 14, '0'),
               'https://track.example/' || c.carrier || '/TRK' || lpad(g::text, 14, '0'),
               'pdf', '/var/lib/orderd/labels/' || o.id || '-1.pdf', 400 + g % 900, 21, 15, 4,
               (o.paid_at + interval '4 days')::date, (o.paid_at + interval '3 days')::date,
               g % 200 <> 0, o.shipped_at,
               CASE WHEN o.delivered_at IS NULL THEN 'in_transit' ELSE 'delivered' END,
               CASE WHEN o.delivered_at IS NULL THEN 'In transit' ELSE 'Delivered' END,
               coalesce(o.delivered_at, o.shipped_at), (o.paid_at + interval '3 days')::date,
               o.delivered_at, false, g % 200 = 0
        FROM orders o, LATERAL (SELECT substr(o.id, 5)::int AS g) n,
             LATERAL (SELECT (ARRAY['sandbox', 'easypost', 'shippo'])[1 + g % 3] AS carrier,
                             (ARRAY['ground', 'Priority', 'express'])[1 + g % 3] AS service) c
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
    # As autovacuum keeps a book a year old: statistics, the visibility map, and the
    # stock ledger's BRIN ranges summarised.
    say("vacuum analyze")
    await conn.execute(
        "VACUUM ANALYZE products, orders, shipments, order_event_turns, feedback, stock_ledger"
    )


async def timed(conn: Any, since: datetime | None, now: datetime, beside: Any = None) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        await figures(conn, since, now, beside=beside)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


async def scan(conn: Any) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        # count(state), not count(*): an index answers count(*) without the rows.
        await conn.fetchval("SELECT count(state) FROM orders")
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
    month = now - timedelta(days=30)
    load_before = os.getloadavg()
    async with connection(settings.postgres.dsn, name) as conn:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            await schema.migrate(conn, name)
            started = time.perf_counter()
            await build(conn, orders, now)
            say(f"built in {time.perf_counter() - started:.0f} s")
            async with connection(settings.postgres.dsn, name) as beside:
                started = time.perf_counter()
                await figures(conn, month, now, beside=beside)
                first = time.perf_counter() - started
                window = await timed(conn, month, now, beside)
                whole = await timed(conn, None, now, beside)
            alone = {"window": await timed(conn, month, now), "whole": await timed(conn, None, now)}
            baseline = await scan(conn)
        finally:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    print(f"report over {orders:,} orders, on two connections as `orderd report` reads it")
    print(
        f"  {os.cpu_count()} CPUs, shared with whatever else runs: load average before the "
        f"run {' '.join(f'{x:.2f}' for x in load_before)}"
    )
    print(f"  the first report, summing the ledger's closed days once: {first:.3f} s")
    print("  then, median of 3:")
    print(f"  last 30 days: {window:.3f} s ({window / baseline:.1f}x the baseline)")
    print(f"  the whole book: {whole:.3f} s ({whole / baseline:.1f}x the baseline)")
    print(
        f"  on one connection (as /metrics and the dashboard read it): last 30 days "
        f"{alone['window']:.3f} s, the whole book {alone['whole']:.3f} s"
    )
    print(f"  baseline, SELECT count(state) FROM orders (each order's row once): {baseline:.3f} s")
    for label, took in (("last 30 days", window), ("the whole book", whole)):
        mark = "PASS" if took < GOAL_S else "BELOW"
        print(f"  goal: {label} < {GOAL_S:.0f} s ... {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
