"""Allocation throughput: orderd's allocator against a plain PostgreSQL baseline, one run.

Both allocators get the same generated orders (the baseline a prefix of them, since it is
much slower) against the same servers. Each workload gets a PostgreSQL schema and a Redis
key prefix of its own (``bench_<run>_<workload>``, ``orderd-bench-<run>:<workload>:``), so
every run starts from an empty ledger; all of it is removed at the end, also on error or
Ctrl-C.

- orderd: ``Allocator.reserve`` (Redis Lua decides in batches, PostgreSQL records the
  ledger before the call returns), ``wait_all`` backorder policy.
- baseline: one PostgreSQL transaction per order, one conditional ``UPDATE`` per line on a
  ``bench_stock`` table, rolled back when any line is short.

Workloads: ``uniform`` (three random SKUs per order, nothing runs out) and ``hot_sku``
(every order also wants one unit of the same SKU, whose stock covers 1% of the orders).

    .venv/bin/python bench/allocation.py [--quick] [--orders N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

from actors.errors import OrderdError
from actors.stock import LedgerEntry
from adapters.postgres import schema as pg_schema
from adapters.postgres.pool import connection, create_pool, redact_dsn
from adapters.postgres.stock import implied_stock
from adapters.stock.allocator import Allocator
from adapters.stock.model import AllocationPolicy, StockLevel, WarehouseConfig
from daemon.run import settle_memory
from daemon.settings import Settings, load_settings

Line = tuple[str, int]
Order = tuple[Line, ...]

PRODUCTS = 1_000
LINES_PER_ORDER = 3
PLENTY = 1_000_000  # per SKU: far more than any run can ask for, so nothing runs out
HOT_SHARE = 0.01  # the hot SKU's stock covers this share of the orders that ask for it
WAREHOUSE = "main"
SEED = 20_240_601
DEFAULT_ORDERS = 100_000
QUICK_ORDERS = 20_000
BASELINE_SHARE = 10  # the baseline runs the first 1/BASELINE_SHARE of the orders
DEFAULT_CONCURRENCY = 2_000
DEFAULT_POOL_SIZE = 10
SETUP_CONCURRENCY = 20  # stock set-up calls in flight; not measured

TARGET_ORDERS_PER_S = 50_000
TARGET_RATIO = 20.0

_BASELINE_UPDATE = (
    "UPDATE bench_stock SET available = available - $2 WHERE sku = $1 AND available >= $2"
)


def log(message: str) -> None:
    # Progress goes to stderr so that stdout holds only the report (or only the JSON).
    print(message, file=sys.stderr, flush=True)


# -- workloads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    orders: list[Order]
    hot_sku: str | None = None

    def stock(self, skus: Sequence[str], orders: int) -> dict[str, int]:
        """Starting stock for a run over the first ``orders`` orders."""
        levels = dict.fromkeys(skus, PLENTY)
        if self.hot_sku is not None:
            # Scaled to the run so that both allocators face the same shortage ratio.
            levels[self.hot_sku] = max(1, int(orders * HOT_SHARE))
        return levels


def catalog() -> list[str]:
    return [f"BENCH-{index:04d}" for index in range(PRODUCTS)]


def uniform_orders(rng: random.Random, skus: Sequence[str], count: int) -> list[Order]:
    return [
        tuple((sku, rng.randint(1, 3)) for sku in rng.sample(skus, LINES_PER_ORDER))
        for _ in range(count)
    ]


def hot_orders(rng: random.Random, skus: Sequence[str], hot: str, count: int) -> list[Order]:
    others = [sku for sku in skus if sku != hot]
    return [
        ((hot, 1), *((sku, rng.randint(1, 3)) for sku in rng.sample(others, LINES_PER_ORDER - 1)))
        for _ in range(count)
    ]


def workloads(skus: Sequence[str], count: int, seed: int) -> list[Workload]:
    rng = random.Random(seed)
    hot = rng.choice(skus)
    return [
        Workload(
            "uniform",
            f"{LINES_PER_ORDER} distinct random SKUs per order, quantity 1-3, ample stock",
            uniform_orders(rng, skus, count),
        ),
        Workload(
            "hot_sku",
            f"1 x {hot} + {LINES_PER_ORDER - 1} random SKUs per order; "
            f"{hot} stock = {HOT_SHARE:.0%} of the orders",
            hot_orders(rng, skus, hot, count),
            hot_sku=hot,
        ),
    ]


# -- measurement ----------------------------------------------------------------------------


@dataclass(slots=True)
class SideResult:
    """One allocator's run of one workload, and what its final state says."""

    allocator: str
    orders: int
    wall_s: float
    orders_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    reserved: int  # orders that got all their lines
    backordered: int  # orderd: queued as backorders; baseline: rolled back as short
    partially_reserved: int
    oversold_units: int  # units reserved beyond a SKU's stock, summed over SKUs
    negative_skus: int  # SKUs whose available went below zero
    oversell: int  # oversold_units + negative_skus; anything but 0 is a bug
    hot_stock: int | None
    hot_demand: int | None  # hot units asked for by all orders of the run
    hot_reserved: int | None
    # Where the time went: this process's CPU (the allocator's Python, or the baseline's
    # driver), and Redis's time in scripts (server-wide, so other clients would count).
    client_cpu_us_per_order: float
    redis_script_us_per_order: float | None
    problems: list[str] = field(default_factory=list)  # consistency checks that failed


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def drive(count: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> float:
    """Run ``call(0..count-1)`` with at most ``concurrency`` in flight; the wall time."""
    indexes = iter(range(count))

    async def worker() -> None:
        # A fixed set of workers pulls from one iterator: no task per order to create.
        for index in indexes:
            await call(index)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, count)):
            group.create_task(worker())
    return time.perf_counter() - started


def oversell(
    stock: dict[str, int], reserved: dict[str, int], available: dict[str, int]
) -> tuple[int, int]:
    units = sum(max(0, reserved.get(sku, 0) - level) for sku, level in stock.items())
    negative = sum(1 for value in available.values() if value < 0)
    return units, negative


def side_result(
    allocator: str,
    workload: Workload,
    orders: Sequence[Order],
    wall_s: float,
    latencies: list[float],
    statuses: Counter[str],
    stock: dict[str, int],
    reserved: dict[str, int],
    available: dict[str, int],
    problems: list[str],
    client_cpu_s: float,
    redis_script_s: float | None = None,
) -> SideResult:
    latencies.sort()
    units, negative = oversell(stock, reserved, available)
    hot = workload.hot_sku
    return SideResult(
        allocator=allocator,
        orders=len(orders),
        wall_s=round(wall_s, 4),
        orders_per_s=round(len(orders) / wall_s, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 3),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3),
        mean_ms=round(sum(latencies) / len(latencies) * 1000, 3),
        reserved=statuses["reserved"],
        backordered=statuses["backordered"],
        partially_reserved=statuses["partially_reserved"],
        oversold_units=units,
        negative_skus=negative,
        oversell=units + negative,
        hot_stock=stock[hot] if hot else None,
        hot_demand=sum(q for order in orders for sku, q in order if sku == hot) if hot else None,
        hot_reserved=reserved.get(hot, 0) if hot else None,
        client_cpu_us_per_order=round(client_cpu_s / len(orders) * 1e6, 1),
        redis_script_us_per_order=(
            round(redis_script_s / len(orders) * 1e6, 1) if redis_script_s is not None else None
        ),
        problems=problems,
    )


def expected_reserved(orders: Sequence[Order], got_all: Sequence[bool]) -> Counter[str]:
    """Per SKU, the units reserved by the orders that were told they got everything."""
    expected: Counter[str] = Counter()
    for order, ok in zip(orders, got_all, strict=True):
        if ok:
            for sku, quantity in order:
                expected[sku] += quantity
    return expected


def check_hot(result: SideResult) -> list[str]:
    """All-or-nothing orders of one unit each: the hot SKU's stock must be used up exactly."""
    if result.hot_stock is None or result.hot_demand is None or result.hot_reserved is None:
        return []
    wanted = min(result.hot_stock, result.hot_demand)
    if result.hot_reserved != wanted:
        return [f"hot SKU reserved {result.hot_reserved}, expected min(stock, demand) = {wanted}"]
    return []


# -- set-up ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Bench:
    settings: Settings
    run_id: str
    prefix: str
    redis: aioredis.Redis
    skus: list[str]
    concurrency: int
    pool_size: int
    policy: AllocationPolicy
    schemas: list[str] = field(default_factory=list)
    pools: list[Any] = field(default_factory=list)

    async def schema(self, workload: str) -> str:
        """A freshly migrated schema holding the bench catalog, for one workload."""
        schema = f"bench_{self.run_id}_{workload}"
        self.schemas.append(schema)  # before creating it, so cleanup cannot miss it
        async with connection(self.settings.postgres.dsn, schema) as conn:
            await pg_schema.migrate(conn, schema)
            await insert_catalog(conn, self.skus)
        return schema

    async def pool(self, schema: str) -> Any:
        # min_size = max_size: every connection is open before the clock starts.
        pool = await create_pool(
            self.settings.postgres.dsn, schema, min_size=self.pool_size, max_size=self.pool_size
        )
        self.pools.append(pool)
        return pool

    async def close_pools(self) -> None:
        pools, self.pools = self.pools, []
        for pool in pools:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    async def drop_schemas(self) -> None:
        if not self.schemas:
            return
        async with connection(self.settings.postgres.dsn, "public") as conn:
            while self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schemas[-1]}" CASCADE')
                self.schemas.pop()


async def insert_catalog(conn: Any, skus: Sequence[str]) -> None:
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO products (sku, name, weight_g, bin, unit_cost)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::numeric[])
            """,
            list(skus),
            [f"Bench product {sku}" for sku in skus],
            [100 + index % 900 for index in range(len(skus))],
            [f"B-{index // 100:02d}-{index % 100:02d}" for index in range(len(skus))],
            [Decimal("1.25")] * len(skus),
        )
    await conn.execute("ANALYZE products")


async def settle(pool: Any) -> None:
    """Write out dirty pages before a measured phase, so one side does not pay for another."""
    async with pool.acquire() as conn:
        # Only a superuser may; without it the run is still valid, just noisier.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")


async def script_seconds(client: aioredis.Redis) -> float:
    """Redis's total time in Lua scripts so far, from INFO commandstats."""
    stats = await client.info("commandstats")
    usec = sum(stats.get(name, {}).get("usec", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    return float(usec) / 1e6


async def delete_keys(client: aioredis.Redis, pattern: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


# -- orderd ---------------------------------------------------------------------------------


class HandedOver:
    """A ledger sink standing for the daemon's order actor, which writes the entries in its
    own turn's transaction: the allocator hands them over and goes on. Nothing here is
    durable; it measures the allocation path without its ledger write."""

    def __init__(self) -> None:
        self.entries = 0

    async def record(self, entry: LedgerEntry) -> None:
        self.entries += 1


async def run_orderd(
    bench: Bench, pool: Any, workload: Workload, count: int, *, handed_over: bool = False
) -> SideResult:
    orders = workload.orders[:count]
    stock = workload.stock(bench.skus, count)
    prefix = f"{bench.prefix}{workload.name}{'-handed' if handed_over else ''}:"

    def allocator_with(sink: HandedOver | None) -> Allocator:
        return Allocator(
            bench.redis,
            pool,
            prefix=prefix,
            warehouses=[WarehouseConfig(WAREHOUSE)],
            policy=bench.policy,
            ledger_sink=sink,
        )

    # Stock is set through a durable allocator in both runs, so both start alike.
    setup = allocator_with(None)
    allocator = allocator_with(HandedOver()) if handed_over else setup
    await allocator.start()

    skus = list(stock)

    async def set_level(index: int) -> None:
        sku = skus[index]
        await setup.adjust(sku, stock[sku], movement_id=f"bench-set-{sku}", mode="set")

    await drive(len(skus), SETUP_CONCURRENCY, set_level)
    await setup.drain()
    await settle(pool)

    latencies = [0.0] * count
    statuses: Counter[str] = Counter()
    told = Told()
    names = [f"{workload.name}-{index:07d}" for index in range(count)]

    async def reserve(index: int) -> None:
        started = time.perf_counter()
        result = await allocator.reserve(names[index], orders[index], policy="wait_all")
        latencies[index] = time.perf_counter() - started
        # Tallied now rather than kept: 100,000 results held alive would make every full
        # garbage collection of the run slower, a cost the daemon does not have.
        statuses[result.status] += 1
        for line in result.lines:
            told.reserved[line.sku] += line.reserved
            told.backordered[line.sku] += line.backordered

    log(f"  orderd{' (ledger handed over)' if handed_over else ''}: {count:,} orders ...")
    scripts = await script_seconds(bench.redis)
    cpu = time.process_time()
    wall = await drive(count, bench.concurrency, reserve)
    cpu = time.process_time() - cpu
    scripts = await script_seconds(bench.redis) - scripts
    await allocator.drain()  # every ledger write done before the final state is read

    levels: dict[str, StockLevel] = {sku: await allocator.stock(sku) for sku in skus}
    problems = await orderd_problems(pool, stock, levels, told, check_ledger=not handed_over)
    result = side_result(
        "orderd (ledger handed over)" if handed_over else "orderd",
        workload,
        orders,
        wall,
        latencies,
        statuses,
        stock,
        {sku: level.reserved for sku, level in levels.items()},
        {sku: level.available for sku, level in levels.items()},
        problems,
        client_cpu_s=cpu,
        redis_script_s=scripts,
    )
    result.problems.extend(check_hot(result))
    await delete_keys(bench.redis, f"{prefix}*")  # keep Redis small for the next run
    return result


@dataclass(slots=True)
class Told:
    """Per SKU, the units reserve() told its callers it reserved and queued."""

    reserved: Counter[str] = field(default_factory=Counter)
    backordered: Counter[str] = field(default_factory=Counter)


async def orderd_problems(
    pool: Any,
    stock: dict[str, int],
    levels: dict[str, StockLevel],
    told: Told,
    *,
    check_ledger: bool = True,
) -> list[str]:
    """Redis, the ledger and what the callers were told must all agree."""
    problems: list[str] = []
    async with pool.acquire() as conn:
        ledger = {
            row.sku: (row.on_hand, row.reserved) for row in await implied_stock(conn, WAREHOUSE)
        }
    for sku, level in levels.items():
        if level.on_hand != stock[sku]:
            problems.append(f"{sku}: on hand {level.on_hand}, set to {stock[sku]}")
        if level.reserved > level.on_hand:
            problems.append(f"{sku}: reserved {level.reserved} > on hand {level.on_hand}")
        if level.reserved != told.reserved[sku]:
            problems.append(f"{sku}: reserved {level.reserved}, callers told {told.reserved[sku]}")
        if level.backordered != told.backordered[sku]:
            problems.append(
                f"{sku}: backordered {level.backordered}, callers told {told.backordered[sku]}"
            )
        if check_ledger and ledger.get(sku, (0, 0)) != (level.on_hand, level.reserved):
            problems.append(f"{sku}: ledger {ledger.get(sku)} != Redis {level}")
    return problems[:20]


# -- baseline -------------------------------------------------------------------------------


class _Short(Exception):
    """A line could not be had: the transaction rolls back."""


async def run_baseline(bench: Bench, pool: Any, workload: Workload, count: int) -> SideResult:
    orders = workload.orders[:count]
    stock = workload.stock(bench.skus, count)
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE bench_stock (sku text PRIMARY KEY, available int NOT NULL)"
        )
        await conn.execute(
            "INSERT INTO bench_stock (sku, available) SELECT * FROM unnest($1::text[], $2::int[])",
            list(stock),
            list(stock.values()),
        )
        await conn.execute("ANALYZE bench_stock")
    await settle(pool)

    latencies = [0.0] * count
    got_all = [False] * count

    async def reserve(index: int) -> None:
        started = time.perf_counter()
        # One lock order for every transaction, so two orders cannot deadlock.
        lines = sorted(orders[index])
        try:
            async with pool.acquire() as conn, conn.transaction():
                for sku, quantity in lines:
                    if await conn.execute(_BASELINE_UPDATE, sku, quantity) != "UPDATE 1":
                        raise _Short
        except _Short:
            pass
        else:
            got_all[index] = True
        latencies[index] = time.perf_counter() - started

    log(f"  baseline: {count:,} orders ...")
    cpu = time.process_time()
    wall = await drive(count, bench.concurrency, reserve)
    cpu = time.process_time() - cpu

    async with pool.acquire() as conn:
        available = {
            row["sku"]: row["available"]
            for row in await conn.fetch("SELECT sku, available FROM bench_stock")
        }
    reserved = {sku: stock[sku] - value for sku, value in available.items()}
    expected = expected_reserved(orders, got_all)
    problems = [
        f"{sku}: {reserved[sku]} taken, committed orders hold {expected[sku]}"
        for sku in stock
        if reserved[sku] != expected[sku]
    ][:20]
    ok = sum(got_all)
    statuses = Counter({"reserved": ok, "backordered": count - ok})
    result = side_result(
        "baseline",
        workload,
        orders,
        wall,
        latencies,
        statuses,
        stock,
        reserved,
        available,
        problems,
        client_cpu_s=cpu,
    )
    result.problems.extend(check_hot(result))
    return result


# -- report ---------------------------------------------------------------------------------


def summary(orderd: SideResult, handed: SideResult, baseline: SideResult) -> dict[str, Any]:
    ratio = orderd.orders_per_s / baseline.orders_per_s if baseline.orders_per_s else 0.0
    handed_ratio = handed.orders_per_s / baseline.orders_per_s if baseline.orders_per_s else 0.0
    return {
        "orderd_orders_per_s": orderd.orders_per_s,
        "orderd_ledger_handed_over_orders_per_s": handed.orders_per_s,
        "ledger_handed_over_ratio": round(handed_ratio, 2),
        "baseline_orders_per_s": baseline.orders_per_s,
        "ratio": round(ratio, 2),
        "p50_ms": orderd.p50_ms,
        "p99_ms": orderd.p99_ms,
        "oversell": orderd.oversell,
        "baseline_p50_ms": baseline.p50_ms,
        "baseline_p99_ms": baseline.p99_ms,
        "baseline_oversell": baseline.oversell,
        "targets": {
            "orderd_orders_per_s": orderd.orders_per_s >= TARGET_ORDERS_PER_S,
            "ratio": ratio >= TARGET_RATIO,
            "zero_oversell": orderd.oversell == 0
            and baseline.oversell == 0
            and handed.oversell == 0,
        },
        "orderd": asdict(orderd),
        "orderd_ledger_handed_over": asdict(handed),
        "baseline": asdict(baseline),
    }


def mark(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def render(report: dict[str, Any]) -> str:
    setup = report["settings"]
    machine = report["machine"]
    out = [
        "orderd allocation benchmark",
        f"  machine: {machine['cpu_count']} CPUs, {machine['platform']}, "
        f"Python {machine['python']}, Redis {machine['redis']}, PostgreSQL {machine['postgres']}",
        f"  load average (1 min): {machine['load_avg_1m_at_start']} at start, "
        f"{machine['load_avg_1m_at_end']} at end",
        f"  concurrency: {setup['concurrency']:,} orders in flight (both allocators)",
        f"  PostgreSQL pool: {setup['pool_size']} connections each (orderd ledger; baseline)",
        f"  orderd batching: batch_max={setup['batch_max']}, "
        f"batch_linger_ms={setup['batch_linger_ms']}, "
        f"batches_in_flight={setup['batches_in_flight']}, policy=wait_all",
        f"  garbage collector: {setup['gc']}",
        f"  orders: orderd {setup['orderd_orders']:,}, baseline {setup['baseline_orders']:,} "
        f"per workload (seed {setup['seed']}); {PRODUCTS:,} products",
    ]
    for name, data in report["workloads"].items():
        o, h, b = data["orderd"], data["orderd_ledger_handed_over"], data["baseline"]
        rows = [
            ("orders", *(f"{x['orders']:,}" for x in (o, h, b))),
            ("orders/s", *(f"{x['orders_per_s']:,.0f}" for x in (o, h, b))),
            ("wall s", *(f"{x['wall_s']:.2f}" for x in (o, h, b))),
            ("p50 ms", *(f"{x['p50_ms']:.2f}" for x in (o, h, b))),
            ("p99 ms", *(f"{x['p99_ms']:.2f}" for x in (o, h, b))),
            ("max ms", *(f"{x['max_ms']:.2f}" for x in (o, h, b))),
            ("client CPU us/order", *(f"{x['client_cpu_us_per_order']:.1f}" for x in (o, h, b))),
            (
                "Redis script us/order",
                f"{o['redis_script_us_per_order']:.1f}",
                f"{h['redis_script_us_per_order']:.1f}",
                "-",
            ),
            ("reserved", *(f"{x['reserved']:,}" for x in (o, h, b))),
            ("backordered / short", *(f"{x['backordered']:,}" for x in (o, h, b))),
            ("oversell", *(f"{x['oversell']}" for x in (o, h, b))),
        ]
        if o["hot_stock"] is not None:
            rows.append(
                (
                    "hot SKU reserved/stock",
                    *(f"{x['hot_reserved']:,}/{x['hot_stock']:,}" for x in (o, h, b)),
                )
            )
        rows.append(
            (
                "consistency",
                *(
                    "ok" if not x["problems"] else f"{len(x['problems'])} problems"
                    for x in (o, h, b)
                ),
            )
        )
        out += [
            "",
            f"{name}: {data['description']}",
            f"  {'':<24}{'orderd':>14}{'orderd*':>14}{'baseline':>14}",
        ]
        out += [f"  {row[0]:<24}{row[1]:>14}{row[2]:>14}{row[3]:>14}" for row in rows]
        targets = data["targets"]
        out += [
            f"  ratio {data['ratio']:.1f}x (orderd* {data['ledger_handed_over_ratio']:.1f}x)",
            f"  target orderd >= {TARGET_ORDERS_PER_S:,} orders/s: "
            f"{mark(targets['orderd_orders_per_s'])}",
            f"  target >= {TARGET_RATIO:.0f}x baseline: {mark(targets['ratio'])}",
            f"  target zero oversell: {mark(targets['zero_oversell'])}",
        ]
        for side in (o, h, b):
            out += [f"  ! {side['allocator']}: {problem}" for problem in side["problems"]]
    out += [
        "",
        "orderd: every reservation's ledger row is committed to PostgreSQL before reserve()",
        "returns. orderd*: the same allocator handing its ledger rows to the caller, as the",
        "order actor does when it writes them with its turn; not durable on its own.",
    ]
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------


async def server_versions(bench: Bench) -> tuple[str, str]:
    info = await bench.redis.info("server")
    async with connection(bench.settings.postgres.dsn, "public") as conn:
        postgres = await conn.fetchval("SHOW server_version")
    return str(info.get("redis_version", "?")), str(postgres)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:
        # A `kill` or a CI timeout cleans up as Ctrl-C does.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = load_settings()
    run_id = uuid.uuid4().hex[:12]
    allocation = settings.allocation
    bench = Bench(
        settings=settings,
        run_id=run_id,
        prefix=f"orderd-bench-{run_id}:",
        redis=aioredis.Redis.from_url(settings.redis.url),
        skus=catalog(),
        concurrency=args.concurrency,
        pool_size=args.pool_size,
        # The configured batching, so that a tuning can be measured without editing code.
        policy=AllocationPolicy(
            backorder_policy="wait_all",
            batch_max=allocation.batch_max,
            batch_linger_ms=allocation.batch_linger_ms,
            batches_in_flight=allocation.batches_in_flight,
            fill_limit=allocation.fill_limit,
        ),
    )
    log(
        f"schemas bench_{run_id}_* on {redact_dsn(settings.postgres.dsn)}, "
        f"Redis prefix {bench.prefix} on {settings.redis.url}"
    )
    try:
        generated = workloads(bench.skus, args.orders, args.seed)
        # The collector set as `orderd run` sets it once started; the generated orders
        # (which the daemon never holds) are frozen with the rest, out of its walks.
        settle_memory()
        redis_version, postgres_version = await server_versions(bench)
        report: dict[str, Any] = {
            "settings": {
                "orderd_orders": args.orders,
                "baseline_orders": args.baseline_orders,
                "concurrency": args.concurrency,
                "pool_size": args.pool_size,
                "batch_max": allocation.batch_max,
                "batch_linger_ms": allocation.batch_linger_ms,
                "batches_in_flight": allocation.batches_in_flight,
                "backorder_policy": "wait_all",
                "products": PRODUCTS,
                "seed": args.seed,
                "event_loop": "uvloop",
                "gc": "as orderd run: frozen after start, young generation threshold "
                f"{gc.get_threshold()[0]:,}",
            },
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "redis": redis_version,
                "postgres": postgres_version,
                # Other work on the machine shares its CPUs with all three servers.
                "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            },
            "targets": {
                "orderd_orders_per_s": TARGET_ORDERS_PER_S,
                "ratio": TARGET_RATIO,
                "oversell": 0,
            },
            "workloads": {},
        }
        for workload in generated:
            log(f"{workload.name}:")
            schema = await bench.schema(workload.name)
            # Baseline first: the orderd run leaves more behind in PostgreSQL (ledger rows,
            # autovacuum work), so this order does not favour orderd.
            baseline = await run_baseline(
                bench, await bench.pool(schema), workload, args.baseline_orders
            )
            await bench.close_pools()
            orderd = await run_orderd(bench, await bench.pool(schema), workload, args.orders)
            await bench.close_pools()
            # A schema of its own: the first run's ledger would otherwise be rebuilt into it.
            handed_schema = await bench.schema(f"{workload.name}_handed")
            handed = await run_orderd(
                bench, await bench.pool(handed_schema), workload, args.orders, handed_over=True
            )
            await bench.close_pools()
            await bench.drop_schemas()
            report["workloads"][workload.name] = {
                "description": workload.description,
                **summary(orderd, handed, baseline),
            }
        report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        return report
    finally:
        await cleanup(bench)


async def cleanup(bench: Bench) -> None:
    """Remove everything the run made; each step is tried even if an earlier one failed."""
    await bench.close_pools()
    try:
        await bench.drop_schemas()
    except (OrderdError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log(f"could not drop schemas {', '.join(bench.schemas)}: {exc}")
    try:
        await delete_keys(bench.redis, f"{bench.prefix}*")
    except (RedisError, OSError) as exc:
        log(f"could not delete Redis keys {bench.prefix}*: {exc}")
    finally:
        await bench.redis.aclose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small run, under 30 s in all")
    parser.add_argument(
        "--orders", type=int, help=f"orderd orders per workload ({DEFAULT_ORDERS:,})"
    )
    parser.add_argument(
        "--baseline-orders",
        type=int,
        help=f"baseline orders per workload (default: 1/{BASELINE_SHARE} of --orders)",
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    args = parser.parse_args(argv)
    if args.orders is None:
        args.orders = QUICK_ORDERS if args.quick else DEFAULT_ORDERS
    if args.baseline_orders is None:
        args.baseline_orders = max(1, args.orders // BASELINE_SHARE)
    args.baseline_orders = min(args.baseline_orders, args.orders)
    for name in ("orders", "baseline_orders", "concurrency", "pool_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report: dict[str, Any] = uvloop.run(run(args))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except asyncio.CancelledError:
        log("terminated")
        return 143
    except (OrderdError, RedisError, OSError) as exc:
        log(f"bench failed: {exc}")
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
