"""Signed Shopify webhooks into ``orderd run``: accepted per second, and latency at a fixed rate.

In one run, against two servers started here on this machine:

- orderd: a real ``orderd run`` (its own PostgreSQL schema and Redis prefix), verifying
  each signature, parsing, storing in PostgreSQL and streaming before it answers 202,
  while its actors reserve the orders;
- baseline: a bare aiohttp handler that answers 202 without doing anything.

Both are driven by the same client: first as fast as it can (accepted/s), then at a fixed
rate (default 1,000/s) for the latency percentiles. Everything it creates is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import uvloop

from adapters.platforms.signatures import sign_shopify
from adapters.postgres import schema as pg_schema
from adapters.postgres.pool import connection
from adapters.redis.keys import RuntimeKeys
from daemon.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
ORDERD = Path(sys.executable).with_name("orderd")
FIXTURE = ROOT / "tests" / "unit" / "payloads" / "shopify_orders_paid.json"
SECRET = "bench-secret"
TARGET_ACCEPTED = 3000
TARGET_P99_MS = 25.0

BASELINE_APP = """
import sys
from aiohttp import web
async def accept(request):
    await request.read()
    return web.json_response({"status": "accepted"}, status=202)
app = web.Application()
app.router.add_post("/webhooks/shopify", accept)
app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def requests(count: int, run_id: str, first: int) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct signed orders/paid deliveries, made before any clock starts."""
    template = json.loads(FIXTURE.read_text())
    made = []
    for n in range(first, first + count):
        template["id"] = 10**15 + n
        template["name"] = f"#B{run_id}-{n}"
        body = json.dumps(template).encode()
        made.append(
            (
                body,
                {
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/paid",
                    "X-Shopify-Hmac-Sha256": sign_shopify(body, SECRET),
                    "X-Shopify-Webhook-Id": f"{run_id}-{n}",
                },
            )
        )
    return made


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                async with session.get(url) as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # the server is starting in another process
    raise RuntimeError(f"{url} did not become ready")


async def flood(
    url: str, batch: Sequence[tuple[bytes, dict[str, str]]], workers: int
) -> dict[str, Any]:
    """Send every request as fast as ``workers`` connections allow; count the 202s."""
    statuses: dict[int, int] = {}
    items = iter(batch)
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, headers in items:
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        statuses[answer.status] = statuses.get(answer.status, 0) + 1
                except aiohttp.ClientError:
                    statuses[0] = statuses.get(0, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        wall = time.perf_counter() - started
    accepted = statuses.get(202, 0)
    return {
        "requests": len(batch),
        "wall_s": round(wall, 3),
        "accepted_per_s": round(accepted / wall, 1),
        "errors": len(batch) - accepted,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def paced(
    url: str, batch: Sequence[tuple[bytes, dict[str, str]]], rate: float
) -> dict[str, Any]:
    """Send at a fixed rate (open loop: a slow answer does not delay the next send)."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 202:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        tasks = []
        for index, (body, headers) in enumerate(batch):
            due = began + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule of an open-loop load
            tasks.append(asyncio.create_task(one(body, headers)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - began
    latencies.sort()

    def pct(share: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000, 2)

    return {
        "requests": len(batch),
        "achieved_per_s": round(len(batch) / wall, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2),
        "errors": errors,
    }


async def backlog(redis: aioredis.Redis, stream: str) -> int:
    """Streamed orders the actors have not finished (lag and pending)."""
    groups: Any = await redis.xinfo_groups(stream)
    return sum(int(g.get("lag") or 0) + int(g["pending"]) for g in groups)


async def drained(redis: aioredis.Redis, stream: str, limit_s: float) -> float | None:
    """Seconds until the actors have taken every streamed order (lag and pending 0)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if await backlog(redis, stream) == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)  # polling another process's progress
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    run_id = uuid.uuid4().hex[:10]
    schema = f"bench_intake_{run_id}"
    prefix = f"orderd-bench-intake-{run_id}:"
    logs = Path(tempfile.mkdtemp(prefix="orderd-bench-intake-"))
    processes: list[subprocess.Popen[bytes]] = []
    redis = aioredis.Redis.from_url(settings.redis.url)
    finished = False
    try:
        async with connection(settings.postgres.dsn, schema) as conn:
            await pg_schema.migrate(conn, schema)
            await conn.execute(
                "INSERT INTO products (sku, name, weight_g, bin, unit_cost) VALUES "
                "('SKU2006-001', 'A', 100, 'A-1', 1), ('SKU2006-020', 'B', 100, 'A-2', 1)"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERD_")}
        env.update(
            {
                "ORDERD_REDIS__URL": settings.redis.url,
                "ORDERD_REDIS__PREFIX": prefix,
                "ORDERD_POSTGRES__DSN": settings.postgres.dsn,
                "ORDERD_POSTGRES__SCHEMA": schema,
                "ORDERD_WEBHOOKS__SHOPIFY__ENABLED": "true",
                "ORDERD_WEBHOOKS__SHOPIFY__SECRET": SECRET,
                "ORDERD_DAEMON__LOG_LEVEL": "warning",
                # Orders stop at the warehouse: what is measured is intake and reservation.
                "ORDERD_WMS__SANDBOX_DELAY_S": "86400",
                "ORDERD_LABELS__DIR": str(logs / "labels"),
            }
        )
        for sku in ("SKU2006-001", "SKU2006-020"):
            subprocess.run(
                [str(ORDERD), "stock", "set", sku, "100000000"], env=env, check=True,
                capture_output=True,
            )  # fmt: skip
        orderd_port, baseline_port = free_port(), free_port()
        env["ORDERD_HTTP__PORT"] = str(orderd_port)
        # One process doing everything; or (split) one taking webhooks and one running the
        # order actors; or (intake) webhooks alone, what the webhook path costs by itself.
        roles = {"all": ("all",), "split": ("intake", "actors"), "intake": ("intake",)}[args.roles]
        for role in roles:
            with (logs / f"orderd-{role}.log").open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [str(ORDERD), "run"],
                        env={**env, "ORDERD_DAEMON__ROLE": role},
                        stdout=out,
                        stderr=out,
                    )
                )
        baseline_process = subprocess.Popen(
            [sys.executable, "-c", BASELINE_APP, str(baseline_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(baseline_process)
        await wait_ready(f"http://127.0.0.1:{orderd_port}/readyz", processes[0])
        await wait_ready(f"http://127.0.0.1:{baseline_port}/healthz", baseline_process)

        count = args.requests
        paced_count = int(args.rate * args.paced_seconds)
        log(f"preparing {count + paced_count:,} signed deliveries ...")
        burst = requests(count, run_id, 0)
        steady = requests(paced_count, run_id, count)
        orderd_url = f"http://127.0.0.1:{orderd_port}/webhooks/shopify"
        baseline_url = f"http://127.0.0.1:{baseline_port}/webhooks/shopify"

        log(f"baseline: {count:,} as fast as possible ...")
        baseline = await flood(baseline_url, burst, args.connections)
        log(f"orderd: {count:,} as fast as possible ...")
        flood_started = time.perf_counter()
        orderd = await flood(orderd_url, burst, args.connections)
        drain_s = None
        if roles != ("intake",):
            # The fixed rate is measured once the actors have caught up with the flood.
            log("waiting for the actors to take every order of the flood ...")
            left = await drained(redis, RuntimeKeys(prefix).orders_stream, args.drain_limit_s)
            drain_s = None if left is None else time.perf_counter() - flood_started
        log(f"baseline: {paced_count:,} at {args.rate:,.0f}/s ...")
        baseline_paced = await paced(baseline_url, steady, args.rate)
        log(f"orderd: {paced_count:,} at {args.rate:,.0f}/s ...")
        orderd_paced = await paced(orderd_url, steady, args.rate)
        # Whether the actors kept up with the fixed rate: what is left when it ends.
        behind = (
            None
            if roles == ("intake",)
            else await backlog(redis, RuntimeKeys(prefix).orders_stream)
        )
        finished = True
        return {
            "accepted_per_s": orderd["accepted_per_s"],
            "baseline_per_s": baseline["accepted_per_s"],
            "p50_ms": orderd_paced["p50_ms"],
            "p99_ms": orderd_paced["p99_ms"],
            "fixed_rate_per_s": args.rate,
            "errors": orderd["errors"] + orderd_paced["errors"],
            "baseline_p50_ms": baseline_paced["p50_ms"],
            "baseline_p99_ms": baseline_paced["p99_ms"],
            "orderd": {"flood": orderd, "paced": orderd_paced},
            "actors_per_s": round(count / drain_s, 1) if drain_s else None,
            "actors_behind_after_fixed_rate": behind,
            "baseline": {"flood": baseline, "paced": baseline_paced},
            "settings": {
                "requests": count,
                "connections": args.connections,
                "paced_requests": paced_count,
                "orderd_roles": list(roles),
                "cpu_count": os.cpu_count(),
            },
            "targets": {
                "accepted_per_s": orderd["accepted_per_s"] >= TARGET_ACCEPTED,
                "p99_ms": orderd_paced["p99_ms"] < TARGET_P99_MS,
            },
        }
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        async with connection(settings.postgres.dsn, "public") as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await redis.aclose()
        if finished:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            log(f"orderd's logs are kept in {logs}")


def render(report: dict[str, Any]) -> str:
    o, b = report["orderd"], report["baseline"]
    mark = {True: "PASS", False: "BELOW"}
    return "\n".join(
        [
            "orderd intake benchmark (signed Shopify orders/paid)",
            f"  machine: {report['settings']['cpu_count']} CPUs; client, servers, Redis and "
            "PostgreSQL share them",
            f"  orderd: {' + '.join(report['settings']['orderd_roles'])} "
            "(process roles), one consumer group",
            f"  flood: {report['settings']['requests']:,} requests over "
            f"{report['settings']['connections']} connections",
            f"  {'':<28}{'orderd':>12}{'bare aiohttp':>14}",
            f"  {'accepted (202) per s':<28}{o['flood']['accepted_per_s']:>12,.0f}"
            f"{b['flood']['accepted_per_s']:>14,.0f}",
            f"  {'errors (not 202)':<28}{o['flood']['errors']:>12}{b['flood']['errors']:>14}",
            f"  orders taken by the actors per s, flood start to empty stream: {_rate(report)}",
            f"  at a fixed {report['fixed_rate_per_s']:,.0f}/s for "
            f"{report['settings']['paced_requests']:,} requests:",
            f"  {'achieved per s':<28}{o['paced']['achieved_per_s']:>12,.0f}"
            f"{b['paced']['achieved_per_s']:>14,.0f}",
            f"  {'p50 ms':<28}{o['paced']['p50_ms']:>12.2f}{b['paced']['p50_ms']:>14.2f}",
            f"  {'p99 ms':<28}{o['paced']['p99_ms']:>12.2f}{b['paced']['p99_ms']:>14.2f}",
            f"  {'max ms':<28}{o['paced']['max_ms']:>12.2f}{b['paced']['max_ms']:>14.2f}",
            f"  {'errors (not 202)':<28}{o['paced']['errors']:>12}{b['paced']['errors']:>14}",
            f"  orders not yet taken by the actors when the fixed rate ended: {_behind(report)}",
            f"  target >= {TARGET_ACCEPTED:,} accepted/s: "
            f"{mark[report['targets']['accepted_per_s']]}",
            f"  target p99 < {TARGET_P99_MS:.0f} ms at the fixed rate: "
            f"{mark[report['targets']['p99_ms']]}",
        ]
    )


def _rate(report: dict[str, Any]) -> str:
    if report["settings"]["orderd_roles"] == ["intake"]:
        return "no actors"
    value = report["actors_per_s"]
    return "not done in the time allowed" if value is None else f"{value:,.0f}"


def _behind(report: dict[str, Any]) -> str:
    value = report["actors_behind_after_fixed_rate"]
    return "no actors" if value is None else f"{value:,}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print only JSON")
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    parser.add_argument("--requests", type=int, default=None, help="flood requests")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed rate per second")
    parser.add_argument("--paced-seconds", type=float, default=None)
    parser.add_argument("--drain-limit-s", type=float, default=300.0)
    parser.add_argument(
        "--roles",
        choices=("all", "split", "intake"),
        default="all",
        help="orderd as one process (all), as a webhook process and an actors process "
        "(split), or webhooks alone with no actors (intake)",
    )
    args = parser.parse_args(argv)
    args.requests = args.requests or (4000 if args.quick else 20000)
    args.paced_seconds = args.paced_seconds or (4.0 if args.quick else 15.0)
    try:
        report = uvloop.run(run(args))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"bench/intake.py: {exc}")
        return 1
    print(json.dumps(report) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
