"""End to end: signed webhooks into ``orderd run`` until each order is shipped with a label
and its shipping confirmation has reached an SMTP server, on the real clock.

In one run, on this machine:

- a real ``orderd run`` (its own PostgreSQL schema and Redis prefix), the generic signed
  webhook open, the sandbox warehouse packing at once, the sandbox carrier selling labels,
  and email going to a local SMTP server (a process of its own) that notes when each
  message arrived;
- phases: a flood (orders/s from the first post to the last confirmation received), fixed
  rates (200/s and 500/s: post to shipped and post to notified, per order), and enough
  further orders to have ``--awaiting`` parcels waiting for delivery (the daemon's RSS);
- baselines in the same run: intake alone (a bare aiohttp handler driven by the same
  client) and allocation alone (``Allocator.reserve`` with its ledger, as
  ``bench/allocation.py`` measures it, on fewer orders, on the configured Redis server).

With ``--processes N`` there are N ``orderd run`` processes on one HTTP port (the kernel
spreads the connections) and one consumer group; their CPU and RSS are given each and
summed. With ``--cluster`` they run on a Redis Cluster of 3 masters with a replica each,
started for the run.

Everything it creates (schemas, Redis keys, processes, the cluster, label files) is removed
at the end, also after an error or Ctrl-C.

    .venv/bin/python bench/e2e.py [--quick] [--processes N] [--cluster] [--orders N]
                                  [--awaiting N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
import uvloop
from redis.asyncio.cluster import RedisCluster

if __package__ in (None, ""):
    # Run as a script (bench/e2e.py): the sibling benchmarks are imported as bench.*.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.errors import OrderdError
from adapters.platforms.signatures import sign_generic
from adapters.postgres import schema as pg_schema
from adapters.postgres.pool import connection, redact_dsn
from adapters.redis.client import FAILURES, RedisClient, redact_url
from adapters.stock.model import AllocationPolicy
from bench import allocation, intake
from daemon.settings import Settings, load_settings
from tests.redis_cluster import Cluster, start_cluster

ORDERD = Path(sys.executable).with_name("orderd")
SECRET = "bench-e2e-secret"
PRODUCTS = 20
PLENTY = 100_000_000  # units per product: no run can ask for more
CONFIRMATION = "shipping_confirmation"
IDLE_S = 3.0  # seconds the idle daemon's CPU is measured over, before the flood
READY_LIMIT_S = 60.0  # every orderd process started and ready (migrated schema, stock set)
CLUSTER_MASTERS = 3
CLUSTER_REPLICAS = 1  # per master

TARGET_ORDERS_PER_S = 1_000.0
TARGET_P99_SHIPPED_S = 1.0  # at 500/s
TARGET_P99_RATE = 500.0
TARGET_CPU_MS_PER_ORDER = 1.0
TARGET_PG_BYTES_PER_ORDER = 8 * 1024
TARGET_RSS_BYTES = 300 * 1024 * 1024

# The stages of an order, in the words of the durable record: where each one's time comes
# from (an order event's type, the webhook inbox, or the SMTP server's receipt).
STAGES: tuple[tuple[str, str], ...] = (
    ("accepted", "webhook_inbox.received_at (the 202's transaction)"),
    ("taken", "order_events 'received' (the actor's first turn)"),
    ("reserved", "order_events 'stock_allocated'"),
    ("requested", "order_events 'fulfillment_requested'"),
    ("packed", "order_events 'packed' (sandbox warehouse)"),
    ("labelled", "order_events 'label_created'"),
    ("shipped", "order_events 'shipped' (= orders.shipped_at)"),
    ("notified", "the SMTP server's receipt of the shipping confirmation"),
)
_EVENT_OF_STAGE = {
    "taken": "received",
    "reserved": "stock_allocated",
    "requested": "fulfillment_requested",
    "packed": "packed",
    "labelled": "label_created",
    "shipped": "shipped",
}
_AWAITING_STATES = ("shipped", "in_transit", "out_for_delivery")

# A local SMTP server in a process of its own, so that neither its CPU nor its GIL is the
# daemon's or the client's. One line per message: receive time, kind, recipient.
SINK_APP = """
import sys, time
from email.parser import BytesHeaderParser
import uvloop
from aiosmtpd.smtp import SMTP

out = open(sys.argv[2], "a", buffering=1)
headers = BytesHeaderParser()

class Keep:
    async def handle_DATA(self, server, session, envelope):
        kind = headers.parsebytes(envelope.content).get("X-Orderd-Kind", "")
        for rcpt in envelope.rcpt_tos:
            out.write(f"{time.time():.6f}\\t{kind}\\t{rcpt}\\n")
        return "250 OK"

async def main():
    import asyncio
    loop = asyncio.get_running_loop()
    await loop.create_server(
        lambda: SMTP(Keep(), hostname="127.0.0.1"), "127.0.0.1", int(sys.argv[1])
    )
    await asyncio.Event().wait()

uvloop.run(main())
"""


def log(message: str) -> None:
    # Progress goes to stderr so that stdout holds only the report (or only the JSON).
    print(message, file=sys.stderr, flush=True)


# -- the orders -----------------------------------------------------------------------------


def skus() -> list[str]:
    return [f"E2E-{index:03d}" for index in range(PRODUCTS)]


def external_id(run_id: str, phase: str, n: int) -> str:
    # Lower case and no '_': it is also the customer's mailbox and a LIKE prefix.
    return f"b{run_id}-{phase}-{n}"


def phase_pattern(run_id: str, phase: str) -> str:
    return f"b{run_id}-{phase}-%"


Delivery = tuple[str, bytes, dict[str, str]]


def deliveries(run_id: str, phase: str, first: int, count: int) -> Iterator[Delivery]:
    """Distinct signed generic orders, each to a customer of its own, paid now (an order
    paid days ago would be late at once, and its delay alert would be measured too)."""
    catalog = skus()
    paid_at = datetime.now(UTC).isoformat()
    for n in range(first, first + count):
        ref = external_id(run_id, phase, n)
        lines = [
            {"sku": catalog[(n + k * 7) % PRODUCTS], "quantity": 1 + (n + k) % 2}
            for k in range(1 + n % 3)
        ]
        body = json.dumps(
            {
                "id": ref,
                "name": f"#{ref}",
                "status": "paid",
                "paid_at": paid_at,
                "currency": "USD",
                "customer": {"email": f"{ref}@example.com"},
                "shipping_address": {
                    "name": "Bench Customer", "line1": "200 Main St", "city": "Springfield",
                    "region": "IL", "postal_code": "62704", "country": "US",
                },
                "shipping_service": "Standard",
                "lines": lines,
            }
        ).encode()  # fmt: skip
        headers = {"Content-Type": "application/json", "X-Orderd-Signature": ""}
        headers["X-Orderd-Signature"] = sign_generic(body, SECRET)
        yield ref, body, headers


# -- the client -----------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    """What the client did in one phase: each order's post time (wall clock)."""

    posted_at: dict[str, float] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    wall_s: float = 0.0
    first_post: float = math.inf
    client_cpu_s: float = 0.0

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def post(
        self, session: aiohttp.ClientSession, url: str, ref: str, body: bytes, headers: Any
    ) -> None:
        """Post one delivery, noting when it went and how it was answered (0: no answer)."""
        self.posted_at[ref] = time.time()
        try:
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                self.count(answer.status)
        except aiohttp.ClientError:
            self.count(0)


async def flood(url: str, batch: Iterable[Delivery], connections: int, sent: Sent) -> Sent:
    """Post every delivery as fast as ``connections`` connections allow."""
    items = iter(batch)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for ref, body, headers in items:
                await sent.post(session, url, ref, body, headers)

        cpu = time.process_time()
        started = time.perf_counter()
        sent.first_post = min(sent.first_post, time.time())
        await asyncio.gather(*(worker() for _ in range(connections)))
        sent.wall_s += time.perf_counter() - started
        sent.client_cpu_s += time.process_time() - cpu
    return sent


async def paced(url: str, batch: Sequence[Delivery], rate: float) -> Sent:
    """Post at a fixed rate (open loop: a slow answer does not delay the next post)."""
    sent = Sent()
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu = time.process_time()
        began = time.perf_counter()
        sent.first_post = time.time()
        tasks = []
        for index, (ref, body, headers) in enumerate(batch):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule of an open-loop load
            tasks.append(asyncio.create_task(sent.post(session, url, ref, body, headers)))
        await asyncio.gather(*tasks)
        sent.wall_s = time.perf_counter() - began
        sent.client_cpu_s = time.process_time() - cpu
    return sent


# -- what the other processes did -------------------------------------------------------------


class SinkLog:
    """The SMTP server's notes, read as they grow: first confirmation time per order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.confirmed_at: dict[str, float] = {}
        self.kinds: dict[str, int] = {}

    def read(self) -> int:
        """Take in what was written since the last read; the confirmations so far."""
        with self.path.open("rb") as notes:
            notes.seek(self._offset)
            chunk = notes.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            at, kind, rcpt = line.decode().split("\t")
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if kind == CONFIRMATION:
                self.confirmed_at.setdefault(rcpt.partition("@")[0], float(at))
        return len(self.confirmed_at)


def per_order_ms(seconds: float, orders: int) -> float:
    return round(seconds / orders * 1000, 3)


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of the process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def rss_figures(found: Sequence[dict[str, int]]) -> dict[str, Any]:
    """RSS and peak RSS summed over the daemons (None if one could not be read), and each's.
    The summed peaks need not have been at the same moment."""

    def total(values: list[int | None]) -> int | None:
        return None if None in values else sum(value or 0 for value in values)

    rss = [each.get("VmRSS") for each in found]
    peaks = [each.get("VmHWM") for each in found]
    return {
        "rss_bytes": total(rss),
        "rss_peak_bytes": total(peaks),
        "rss_bytes_by_process": rss,
        "rss_peak_bytes_by_process": peaks,
    }


async def table_bytes(conn: Any, schema: str) -> dict[str, int]:
    """Per table of the schema: its size with its indexes and TOAST."""
    rows = await conn.fetch(
        """
        SELECT c.relname, pg_total_relation_size(c.oid) AS size
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')
        """,
        schema,
    )
    return {row["relname"]: int(row["size"]) for row in rows}


async def messages_per_order(conn: Any, pattern: str, orders: int) -> dict[str, float]:
    """Per message type, the actors' messages per order: each is a turn's work."""
    rows = await conn.fetch(
        """
        SELECT m.type, count(*) AS n FROM mailbox m JOIN orders o ON o.id = m.order_id
        WHERE o.external_id LIKE $1 GROUP BY m.type ORDER BY count(*) DESC, m.type
        """,
        pattern,
    )
    return {row["type"]: round(row["n"] / orders, 2) for row in rows}


async def wal_lsn(conn: Any) -> str:
    return str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))


async def wal_bytes(conn: Any, before: str) -> int:
    diff = await conn.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", before
    )
    return int(diff)


async def redis_cpu_s(redis: RedisClient) -> dict[str, float]:
    """Each Redis server's user + system CPU so far (INFO cpu): the one server, or every
    master of the cluster (a cluster client sends INFO to one node unless told)."""
    if isinstance(redis, RedisCluster):
        infos = await redis.info("cpu", target_nodes=RedisCluster.PRIMARIES)
    else:
        infos = {"server": await redis.info("cpu")}
    return {
        node: float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        for node, info in sorted(infos.items())
    }


async def delete_keys(redis: RedisClient, pattern: str) -> int:
    """Unlink every key matching ``pattern``; how many there were (on a cluster, SCAN visits
    every master and UNLINK is split by slot)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += await redis.unlink(*batch)
            batch = []
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def stage_times(conn: Any, pattern: str) -> dict[str, dict[str, float]]:
    """Per stage, each order's first time there (epoch seconds), from PostgreSQL."""
    times: dict[str, dict[str, float]] = {stage: {} for stage, _ in STAGES}
    rows = await conn.fetch(
        "SELECT external_id, received_at FROM webhook_inbox "
        "WHERE source = 'generic' AND external_id LIKE $1",
        pattern,
    )
    for row in rows:
        times["accepted"].setdefault(row["external_id"], row["received_at"].timestamp())
    stage_of = {event: stage for stage, event in _EVENT_OF_STAGE.items()}
    rows = await conn.fetch(
        """
        SELECT o.external_id, e.type, min(e.at) AS at
        FROM orders o JOIN order_events e ON e.order_id = o.id
        WHERE o.external_id LIKE $1 AND e.type = ANY($2::text[])
        GROUP BY o.external_id, e.type
        """,
        pattern,
        list(stage_of),
    )
    for row in rows:
        times[stage_of[row["type"]]][row["external_id"]] = row["at"].timestamp()
    return times


def stage_rates(times: dict[str, dict[str, float]], since: float) -> dict[str, dict[str, Any]]:
    """Per stage: orders done, their rate between the stage's first and last completion,
    and when the first and last were done, in seconds after ``since`` (the first post)."""
    rates: dict[str, dict[str, Any]] = {}
    for stage, _ in STAGES:
        done = sorted(times[stage].values())
        if not done:
            rates[stage] = {"orders": 0, "per_s": None, "first_s": None, "last_s": None}
            continue
        span = done[-1] - done[0]
        rates[stage] = {
            "orders": len(done),
            "per_s": round(len(done) / span, 1) if span > 0 else None,
            "first_s": round(done[0] - since, 3),
            "last_s": round(done[-1] - since, 3),
        }
    return rates


def latencies(times: dict[str, dict[str, float]], sent: Sent) -> dict[str, dict[str, Any]]:
    """Per stage: p50, p99 and max of (time there - the client's post time), in ms."""
    result: dict[str, dict[str, Any]] = {}
    for stage, _ in STAGES:
        values = sorted(
            (at - sent.posted_at[ref]) * 1000
            for ref, at in times[stage].items()
            if ref in sent.posted_at
        )
        result[stage] = {
            "orders": len(values),
            "p50_ms": round(allocation.percentile(values, 0.50), 1) if values else None,
            "p99_ms": round(allocation.percentile(values, 0.99), 1) if values else None,
            "max_ms": round(values[-1], 1) if values else None,
        }
    return result


# -- the run --------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    settings: Settings
    run_id: str
    schema: str
    prefix: str
    tmp: Path
    single: aioredis.Redis  # the configured server: the allocation-alone baseline's
    redis: RedisClient  # the daemons' Redis: the configured server, or the run's cluster
    cluster: Cluster | None = None
    partitions: int = 1  # the order stream's ([redis] stream_partitions)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schema_made: bool = False
    allocation_bench: allocation.Bench | None = None
    sink: SinkLog | None = None
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # One sd_notify socket per daemon, where it says READY=1 (and STOPPING=1 at the end).
    notify: list[socket.socket] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return self.settings.redis.url if self.cluster is None else self.cluster.url

    @property
    def redis_label(self) -> str:
        return "single" if self.cluster is None else f"cluster({CLUSTER_MASTERS} masters)"

    def daemon_cpu_s(self) -> list[float]:
        return [cpu_seconds(daemon.pid) for daemon in self.daemons]

    def daemon_memory(self) -> list[dict[str, int]]:
        return [memory(daemon.pid) for daemon in self.daemons]


def daemon_env(run: Run, port: int, smtp_port: int) -> dict[str, str]:
    """What every orderd command of the run is given; :func:`start_daemons` adds what
    differs between the ``orderd run`` processes."""
    settings = run.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERD_")}
    env.update(
        {
            "ORDERD_REDIS__URL": run.redis_url,
            "ORDERD_REDIS__CLUSTER": "false" if run.cluster is None else "true",
            "ORDERD_REDIS__STREAM_PARTITIONS": str(run.partitions),
            "ORDERD_REDIS__PREFIX": run.prefix,
            "ORDERD_POSTGRES__DSN": settings.postgres.dsn,
            "ORDERD_POSTGRES__SCHEMA": run.schema,
            "ORDERD_HTTP__HOST": "127.0.0.1",
            "ORDERD_HTTP__PORT": str(port),
            # Several processes listen on the one port; the kernel spreads the connections.
            "ORDERD_HTTP__REUSE_PORT": "true",
            "ORDERD_DAEMON__LOG_LEVEL": "warning",
            "ORDERD_WEBHOOKS__GENERIC__ENABLED": "true",
            "ORDERD_WEBHOOKS__GENERIC__SECRET": SECRET,
            # The sandbox warehouse packs at once; the sandbox carrier sells the labels.
            "ORDERD_WMS__ADAPTER": "sandbox",
            "ORDERD_WMS__SANDBOX_DELAY_S": "0",
            "ORDERD_WMS__SANDBOX_MISPICK_RATE": "0",
            "ORDERD_CARRIERS__SANDBOX__ENABLED": "true",
            "ORDERD_CARRIERS__SANDBOX__DELAY_RATE": "0",
            "ORDERD_CARRIERS__SANDBOX__EXCEPTION_RATE": "0",
            "ORDERD_LABELS__DIR": str(run.tmp / "labels"),
            "ORDERD_EMAIL__ENABLED": "true",
            "ORDERD_EMAIL__HOST": "127.0.0.1",
            "ORDERD_EMAIL__PORT": str(smtp_port),
            "ORDERD_EMAIL__TLS": "none",
            "ORDERD_SMS__ENABLED": "false",
            "ORDERD_NOTIFY__CHANNELS": "email",
            "ORDERD_NOTIFY__PUBLIC_URL": f"http://127.0.0.1:{port}",
            # The real clock: parcels take days, so shipped orders wait for delivery.
            "ORDERD_CLOCK__SCALE": "1",
        }
    )
    return env


async def wait_port(port: int, process: subprocess.Popen[bytes], limit_s: float = 30) -> None:
    """Until something listens on ``port`` (a server starting in another process)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start_daemons(run: Run, env: dict[str, str], count: int) -> None:
    """``count`` ``orderd run`` processes, each with a consumer name, a log and a notify
    socket of its own."""
    for index in range(1, count + 1):
        said = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        run.notify.append(said)  # before binding, so cleanup closes it whatever happens
        said.bind(str(run.tmp / f"notify-{index}"))
        said.setblocking(False)
        own = env | {
            "ORDERD_DAEMON__CONSUMER_NAME": f"bench-e2e-{run.run_id}-{index}",
            "NOTIFY_SOCKET": str(run.tmp / f"notify-{index}"),
        }
        with (run.tmp / f"orderd-{index}.log").open("wb") as out:
            daemon = subprocess.Popen([str(ORDERD), "run"], env=own, stdout=out, stderr=out)
        run.processes.append(daemon)
        run.daemons.append(daemon)


async def wait_daemons_ready(run: Run, limit_s: float = READY_LIMIT_S) -> None:
    """Until every ``orderd run`` has sent READY=1 (its listener and consumers are up): with
    one shared port, /readyz answers for whichever process the kernel picks."""
    waiting = set(range(len(run.daemons)))
    deadline = time.monotonic() + limit_s
    while waiting:
        for index in sorted(waiting):
            daemon = run.daemons[index]
            if daemon.poll() is not None:
                raise RuntimeError(
                    f"orderd run #{index + 1} exited with {daemon.returncode} while starting"
                )
            with contextlib.suppress(BlockingIOError):
                while index in waiting:
                    if "READY=1" in run.notify[index].recv(4096).decode().splitlines():
                        waiting.discard(index)
        if not waiting:
            return
        if time.monotonic() > deadline:
            started = ", ".join(f"#{index + 1}" for index in sorted(waiting))
            raise RuntimeError(f"orderd run {started} not ready within {limit_s:.0f} s")
        await asyncio.sleep(0.05)  # other processes starting


async def set_up(run: Run, env: dict[str, str]) -> None:
    """A migrated schema with the bench's products, each stocked far beyond the run."""
    run.schema_made = True  # before creating it, so cleanup cannot miss it
    async with connection(run.settings.postgres.dsn, run.schema) as conn:
        await pg_schema.migrate(conn, run.schema)
        catalog = skus()
        await conn.execute(
            """
            INSERT INTO products (sku, name, weight_g, bin, unit_cost)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::numeric[])
            """,
            catalog,
            [f"Bench product {sku}" for sku in catalog],
            [150 + 40 * index for index in range(len(catalog))],
            [f"E-{index:02d}" for index in range(len(catalog))],
            [1] * len(catalog),
        )
    for sku in skus():
        done = await asyncio.to_thread(
            subprocess.run,
            [str(ORDERD), "stock", "set", sku, str(PLENTY)],
            env=env,
            capture_output=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"orderd stock set {sku}: {done.stderr.decode()[-500:]}")


async def wait_done(
    run: Run, conn: Any, refs: Sequence[str], pattern: str, limit_s: float
) -> float | None:
    """Seconds until every order in ``refs`` is shipped and confirmed at the SMTP server;
    None when the limit came first."""
    assert run.sink is not None
    started = time.perf_counter()
    wanted = set(refs)
    while time.perf_counter() - started < limit_s:
        run.sink.read()
        if wanted.issubset(run.sink.confirmed_at):
            # A confirmation goes out with the shipped turn; the record says so too.
            shipped = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE external_id LIKE $1 AND shipped_at IS NOT NULL",
                pattern,
            )
            if shipped >= len(wanted):
                return time.perf_counter() - started
        for index, daemon in enumerate(run.daemons, 1):
            if daemon.poll() is not None:
                raise RuntimeError(
                    f"orderd run #{index} exited with {daemon.returncode} during the run"
                )
        await asyncio.sleep(0.25)  # polling another process's progress
    return None


async def allocation_alone(run: Run, orders: int) -> dict[str, Any]:
    """bench/allocation.py's orderd side (durable ledger) on the uniform workload."""
    settings = run.settings
    policy = settings.allocation
    bench = allocation.Bench(
        settings=settings,
        run_id=f"e2e{run.run_id}",
        prefix=f"{run.prefix}alloc:",
        redis=run.single,
        skus=allocation.catalog(),
        concurrency=allocation.DEFAULT_CONCURRENCY,
        pool_size=allocation.DEFAULT_POOL_SIZE,
        policy=AllocationPolicy(
            backorder_policy="wait_all",
            batch_max=policy.batch_max,
            batch_linger_ms=policy.batch_linger_ms,
            batches_in_flight=policy.batches_in_flight,
            fill_limit=policy.fill_limit,
        ),
    )
    run.allocation_bench = bench
    workload = allocation.workloads(bench.skus, orders, allocation.SEED)[0]
    schema = await bench.schema(workload.name)
    result = await allocation.run_orderd(bench, await bench.pool(schema), workload, orders)
    await bench.close_pools()
    await bench.drop_schemas()
    return {
        "orders": result.orders,
        "orders_per_s": result.orders_per_s,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "concurrency": bench.concurrency,
        "consistent": not result.problems and result.oversell == 0,
        "redis": "single",
    }


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:
        # A `kill` or a CI timeout cleans up as Ctrl-C does.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = load_settings()
    run_id = uuid.uuid4().hex[:10]
    single = aioredis.Redis.from_url(settings.redis.url)
    run = Run(
        settings=settings,
        run_id=run_id,
        schema=f"bench_e2e_{run_id}",
        prefix=f"orderd-bench-e2e-{run_id}:",
        tmp=Path(tempfile.mkdtemp(prefix="orderd-bench-e2e-")),
        single=single,
        redis=single,
        partitions=args.partitions,
    )
    finished = False
    try:
        if args.cluster:
            log(
                f"starting a Redis Cluster of {CLUSTER_MASTERS} masters with "
                f"{CLUSTER_REPLICAS} replica each ..."
            )
            # In the loop's thread on purpose: nothing else runs yet, and a signal meanwhile
            # cancels at the next await, once run.cluster is set for cleanup to stop it.
            run.cluster = start_cluster(
                run.tmp / "redis-cluster", CLUSTER_MASTERS, CLUSTER_REPLICAS
            )
            run.redis = RedisCluster.from_url(run.cluster.url)
        log(
            f"schema {run.schema} on {redact_dsn(settings.postgres.dsn)}, Redis prefix "
            f"{run.prefix} on {redact_url(run.redis_url)}"
            f"{' (a cluster)' if run.cluster else ''}, files in {run.tmp}"
        )
        report = await measure(run, args)
        finished = True
        return report
    finally:
        await cleanup(run, keep_logs=not finished)


async def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    settings = run.settings
    report: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "orders": args.orders,
            "connections": args.connections,
            "rates_per_s": args.rates,
            "rate_seconds": args.rate_seconds,
            "awaiting": args.awaiting,
            "allocation_orders": args.allocation_orders,
            "products": PRODUCTS,
            "max_turns": settings.runtime.max_turns,
            "processes": args.processes,
            "stream_partitions": args.partitions,
            "redis": run.redis_label,
            "redis_cluster": None
            if run.cluster is None
            else {"masters": CLUSTER_MASTERS, "replicas_per_master": CLUSTER_REPLICAS},
        },
    }

    log(f"allocation alone: {args.allocation_orders:,} orders through Allocator.reserve ...")
    report["allocation_alone"] = await allocation_alone(run, args.allocation_orders)

    log("setting up the schema, products and stock ...")
    smtp_port, orderd_port, bare_port = (intake.free_port() for _ in range(3))
    env = daemon_env(run, orderd_port, smtp_port)
    await set_up(run, env)
    notes = run.tmp / "smtp.tsv"
    notes.touch()
    run.sink = SinkLog(notes)
    with (run.tmp / "smtp.log").open("wb") as out:
        sink = subprocess.Popen(
            [sys.executable, "-c", SINK_APP, str(smtp_port), str(notes)],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    run.processes.append(sink)
    bare = subprocess.Popen(
        [sys.executable, "-c", intake.BASELINE_APP, str(bare_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run.processes.append(bare)
    log(f"starting {args.processes} orderd run on port {orderd_port} ...")
    start_daemons(run, env, args.processes)
    await wait_port(smtp_port, sink)
    await intake.wait_ready(f"http://127.0.0.1:{bare_port}/healthz", bare)
    await wait_daemons_ready(run)
    orderd_url = f"http://127.0.0.1:{orderd_port}/webhooks/orders"

    log(f"preparing {args.orders:,} signed deliveries ...")
    burst = list(deliveries(run.run_id, "f", 0, args.orders))

    log(f"intake alone (bare aiohttp): {args.orders:,} as fast as possible ...")
    bare_sent = await flood(
        f"http://127.0.0.1:{bare_port}/webhooks/shopify", burst, args.connections, Sent()
    )
    report["intake_alone"] = {
        "requests": args.orders,
        "accepted_per_s": round(bare_sent.accepted / bare_sent.wall_s, 1),
        "errors": args.orders - bare_sent.accepted,
        "client_cpu_us_per_request": round(bare_sent.client_cpu_s / args.orders * 1e6, 1),
    }
    bare.terminate()

    async with connection(settings.postgres.dsn, run.schema) as conn:
        # -- flood
        log(f"flood: {args.orders:,} orders as fast as possible, then until each is confirmed")
        # What the daemons spend with nothing to do (their polling loops), to read the CPU
        # per order against: over a long wait it is a part of the figure.
        idle_before = run.daemon_cpu_s()
        await asyncio.sleep(IDLE_S)
        idle_cpu = [
            (now - then) / IDLE_S for now, then in zip(run.daemon_cpu_s(), idle_before, strict=True)
        ]
        tables_before = await table_bytes(conn, run.schema)
        lsn_before = await wal_lsn(conn)
        redis_before = await redis_cpu_s(run.redis)
        cpu_before = run.daemon_cpu_s()
        sent = await flood(orderd_url, burst, args.connections, Sent())
        log(
            f"  {sent.accepted:,} accepted in {sent.wall_s:.1f} s; waiting for shipping and "
            "confirmations ..."
        )
        pattern = phase_pattern(run.run_id, "f")
        refs = [ref for ref, _, _ in burst]
        waited = await wait_done(run, conn, refs, pattern, args.drain_limit_s)
        cpu_after = run.daemon_cpu_s()
        redis_after = await redis_cpu_s(run.redis)
        rss = run.daemon_memory()
        wal = await wal_bytes(conn, lsn_before)
        tables_after = await table_bytes(conn, run.schema)
        grown = {
            name: round((size - tables_before.get(name, 0)) / args.orders)
            for name, size in tables_after.items()
        }
        assert run.sink is not None
        times = await stage_times(conn, pattern)
        times["notified"] = {
            r: run.sink.confirmed_at[r] for r in refs if r in run.sink.confirmed_at
        }
        last = max(times["notified"].values(), default=math.nan)
        end_to_end = len(times["notified"]) / (last - sent.first_post) if times["notified"] else 0
        report["flood"] = {
            "orders": args.orders,
            "accepted": sent.accepted,
            "errors": args.orders - sent.accepted,
            "accepted_per_s": round(sent.accepted / sent.wall_s, 1),
            "done": waited is not None,
            "notified": len(times["notified"]),
            "first_post_to_last_notified_s": (
                round(last - sent.first_post, 3) if times["notified"] else None
            ),
            "orders_per_s": round(end_to_end, 1) if waited is not None else None,
            "stages": stage_rates(times, sent.first_post),
            "daemon_cpu_ms_per_order": per_order_ms(sum(cpu_after) - sum(cpu_before), args.orders),
            "daemon_cpu_ms_per_order_by_process": [
                per_order_ms(after - before, args.orders)
                for before, after in zip(cpu_before, cpu_after, strict=True)
            ],
            "daemon_idle_cpu_ms_per_s": round(sum(idle_cpu) * 1000, 1),
            "daemon_idle_cpu_ms_per_s_by_process": [round(cpu * 1000, 1) for cpu in idle_cpu],
            "redis_cpu_ms_per_order": per_order_ms(
                sum(redis_after.values()) - sum(redis_before.values()), args.orders
            ),
            "redis_cpu_ms_per_order_by_node": {
                node: per_order_ms(spent - redis_before.get(node, 0.0), args.orders)
                for node, spent in redis_after.items()
            },
            "client_cpu_ms_per_order": per_order_ms(sent.client_cpu_s, args.orders),
            **rss_figures(rss),
            "pg_table_bytes_per_order": sum(grown.values()),
            "pg_table_bytes_per_order_by_table": dict(
                sorted(grown.items(), key=lambda item: -item[1])
            ),
            "messages_per_order": await messages_per_order(conn, pattern, args.orders),
            "pg_wal_bytes_per_order": round(wal / args.orders),
        }
        report["flood"]["pg_bytes_per_order"] = (
            report["flood"]["pg_table_bytes_per_order"] + report["flood"]["pg_wal_bytes_per_order"]
        )
        del burst, times

        # -- fixed rates
        report["rates"] = {}
        first = args.orders
        for rate in args.rates:
            count = max(1, int(rate * args.rate_seconds))
            phase = f"r{int(rate)}"
            batch = list(deliveries(run.run_id, phase, first, count))
            first += count
            log(f"fixed rate: {count:,} orders at {rate:,.0f}/s, then until each is confirmed")
            sent = await paced(orderd_url, batch, rate)
            pattern = phase_pattern(run.run_id, phase)
            refs = [ref for ref, _, _ in batch]
            waited = await wait_done(run, conn, refs, pattern, args.drain_limit_s)
            times = await stage_times(conn, pattern)
            times["notified"] = {
                r: run.sink.confirmed_at[r] for r in refs if r in run.sink.confirmed_at
            }
            report["rates"][str(int(rate))] = {
                "rate_per_s": rate,
                "orders": count,
                "achieved_per_s": round(count / sent.wall_s, 1),
                "errors": count - sent.accepted,
                "done": waited is not None,
                "latency": latencies(times, sent),
            }

        # -- parcels awaiting delivery
        report["awaiting"] = await awaiting(run, conn, args, orderd_url, first)
        report["schema_bytes_per_order_at_end"] = round(
            sum((await table_bytes(conn, run.schema)).values())
            / max(1, await conn.fetchval("SELECT count(*) FROM orders"))
        )
    report["smtp_messages"] = dict(run.sink.kinds)
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = targets(report)
    return report


async def awaiting(
    run: Run, conn: Any, args: argparse.Namespace, url: str, first: int
) -> dict[str, Any]:
    """Orders until ``args.awaiting`` parcels wait for delivery at once; the daemons' RSS."""

    async def waiting() -> int:
        count = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE state = ANY($1::text[])", list(_AWAITING_STATES)
        )
        return int(count)

    before = await waiting()
    more = max(0, args.awaiting - before)
    log(
        f"awaiting delivery: {before:,} parcels wait; {more:,} more orders, "
        f"within {args.awaiting_limit_s:.0f} s ..."
    )
    started = time.perf_counter()
    deadline = started + args.awaiting_limit_s
    sent = Sent()
    chunk = 5_000
    n = first
    while n < first + more and time.perf_counter() < deadline:
        size = min(chunk, first + more - n)
        await flood(url, deliveries(run.run_id, "a", n, size), args.connections, sent)
        n += size
    posted = n - first
    refs = [external_id(run.run_id, "a", k) for k in range(first, n)]
    left = max(1.0, deadline - time.perf_counter())
    waited = await wait_done(run, conn, refs, phase_pattern(run.run_id, "a"), left)
    rss = run.daemon_memory()
    now_waiting = await waiting()
    return {
        "wanted": args.awaiting,
        "posted": posted,
        "accepted": sent.accepted,
        "done": waited is not None and now_waiting >= args.awaiting,
        "awaiting_delivery": now_waiting,
        "seconds": round(time.perf_counter() - started, 1),
        **rss_figures(rss),
    }


def targets(report: dict[str, Any]) -> dict[str, bool]:
    flood = report["flood"]
    at_500 = report["rates"].get(str(int(TARGET_P99_RATE)))
    p99 = at_500["latency"]["shipped"]["p99_ms"] if at_500 else None
    shipped_ok = bool(at_500 and at_500["done"] and p99 is not None)
    waited = report["awaiting"]
    return {
        "orders_per_s": (flood["orders_per_s"] or 0) >= TARGET_ORDERS_PER_S,
        "p99_shipped_at_500": shipped_ok and p99 is not None and p99 < TARGET_P99_SHIPPED_S * 1000,
        "daemon_cpu_ms_per_order": flood["daemon_cpu_ms_per_order"] <= TARGET_CPU_MS_PER_ORDER,
        "pg_bytes_per_order": flood["pg_bytes_per_order"] <= TARGET_PG_BYTES_PER_ORDER,
        "rss_awaiting": bool(waited["done"])
        and (waited["rss_bytes"] or math.inf) < TARGET_RSS_BYTES,
    }


async def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process still running, then wait for all (kill -9 after 30 s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


async def cleanup(run: Run, *, keep_logs: bool) -> None:
    """Remove everything the run made; each step is tried even if an earlier one failed."""
    # The daemons first: what they finish while draining still reaches the SMTP server.
    await stop(run.daemons)
    await stop(run.processes)
    for said in run.notify:  # only now: a daemon stopping says STOPPING=1 there
        said.close()
    if run.allocation_bench is not None:
        await run.allocation_bench.close_pools()
        try:
            await run.allocation_bench.drop_schemas()
        except (OrderdError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log(f"could not drop schemas {', '.join(run.allocation_bench.schemas)}: {exc}")
    if run.schema_made:
        try:
            async with connection(run.settings.postgres.dsn, "public") as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{run.schema}" CASCADE')
        except (OrderdError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log(f"could not drop schema {run.schema}: {exc}")
    # The daemons' keys are on the cluster when there is one; the allocation baseline's are
    # on the configured server either way.
    clients: list[RedisClient] = [run.redis] if run.redis is run.single else [run.redis, run.single]
    for client in clients:
        where = "the cluster" if isinstance(client, RedisCluster) else "the Redis server"
        try:
            deleted = await delete_keys(client, f"{run.prefix}*")
            log(f"{deleted:,} keys {run.prefix}* deleted on {where}")
        except FAILURES as exc:
            log(f"could not delete Redis keys {run.prefix}*: {exc}")
        finally:
            await client.aclose()
    if run.cluster is not None:
        try:
            await asyncio.to_thread(run.cluster.stop)
        except (subprocess.TimeoutExpired, OSError) as exc:
            log(f"could not stop the Redis Cluster: {exc}")
        left = run.cluster.leftovers()
        if left:
            log("Redis Cluster processes still running: " + "; ".join(left))
    if keep_logs:
        # Labels are many and say nothing about a failure: only the logs are kept.
        shutil.rmtree(run.tmp / "labels", ignore_errors=True)
        log(f"orderd's and the SMTP server's logs are kept in {run.tmp}")
    else:
        shutil.rmtree(run.tmp, ignore_errors=True)


# -- report ---------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def _ms(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024 / 1024:,.1f} MB"


def _each(values: Iterable[Any], show: Callable[[Any], str], unit: str = "") -> str:
    """Each process's (or node's) part of a summed figure, when there is more than one."""
    parts = [show(value) for value in values]
    return f"  (each{unit}: {' + '.join(parts)})" if len(parts) > 1 else ""


def _mb_each(values: Iterable[int | None]) -> str:
    return _each(
        values, lambda value: "-" if value is None else f"{value / 1024 / 1024:,.1f}", " MB"
    )


def render(report: dict[str, Any]) -> str:
    machine, setup, flood = report["machine"], report["settings"], report["flood"]
    processes, on_cluster = setup["processes"], setup["redis_cluster"] is not None
    summed = ", summed" if processes > 1 else ""
    alloc, bare, waited, goals = (
        report["allocation_alone"],
        report["intake_alone"],
        report["awaiting"],
        report["targets"],
    )
    load = " / ".join(f"{x:.2f}" for x in machine["load_avg_at_start"])
    load_end = " / ".join(f"{x:.2f}" for x in machine["load_avg_at_end"])
    at_500 = report["rates"].get(str(int(TARGET_P99_RATE)))
    p99_500 = at_500["latency"]["shipped"]["p99_ms"] if at_500 else None
    redis_cpu = (
        f"Redis CPU ms per order ({setup['redis_cluster']['masters']} masters)"
        if on_cluster
        else "Redis CPU ms per order (server-wide)"
    )
    rows: list[tuple[str, str, str, str]] = [
        (
            f"end to end, flood of {flood['orders']:,}: orders/s",
            "-" if flood["orders_per_s"] is None else f"{flood['orders_per_s']:,.0f}",
            f">= {TARGET_ORDERS_PER_S:,.0f}",
            mark(goals["orders_per_s"]),
        ),
        (
            f"p99 post->shipped at {TARGET_P99_RATE:,.0f}/s (ms)",
            _ms(p99_500),
            f"< {TARGET_P99_SHIPPED_S * 1000:,.0f}",
            mark(goals["p99_shipped_at_500"]),
        ),
        (
            f"daemon CPU per order (ms, flood{summed})",
            f"{flood['daemon_cpu_ms_per_order']:.3f}",
            f"<= {TARGET_CPU_MS_PER_ORDER:g}",
            mark(goals["daemon_cpu_ms_per_order"]),
        ),
        (
            "PostgreSQL per order (bytes: table + WAL)",
            f"{flood['pg_bytes_per_order']:,}",
            f"<= {TARGET_PG_BYTES_PER_ORDER:,}",
            mark(goals["pg_bytes_per_order"]),
        ),
        (
            f"RSS{summed}, {waited['awaiting_delivery']:,} awaiting delivery",
            _mb(waited["rss_bytes"]),
            f"< {TARGET_RSS_BYTES // 1024 // 1024} MB at {waited['wanted']:,}",
            mark(goals["rss_awaiting"]),
        ),
    ]
    out = [
        "orderd end-to-end benchmark: signed generic webhook -> shipped with a label -> "
        "shipping confirmation at a local SMTP server",
        f"  processes={processes}, stream_partitions={setup['stream_partitions']}, "
        f"redis={setup['redis']}",
        f"    {processes} orderd run on one HTTP port (SO_REUSEPORT), one consumer group"
        + ("; their CPU and RSS summed, then each's" if processes > 1 else "")
        + (
            f"; a Redis Cluster of {setup['redis_cluster']['masters']} masters with "
            f"{setup['redis_cluster']['replicas_per_master']} replica each, started for the "
            "run (allocation alone runs on the configured single server)"
            if on_cluster
            else "; the configured single Redis server"
        ),
        f"  machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python "
        f"{machine['python']}; client, orderd, SMTP server, Redis and PostgreSQL share them",
        f"  load average (1/5/15 min): {load} at start, {load_end} at end",
        f"  sandbox warehouse (packs at once) and carrier, real clock, {setup['products']} "
        f"products, {setup['connections']} client connections in the flood, "
        f"runtime.max_turns = {setup['max_turns']}",
        "",
        f"  {'goal':<46}{'orderd':>12}  {'target':<22}",
    ]
    out += [f"  {name:<46}{value:>12}  {goal:<22}{verdict}" for name, value, goal, verdict in rows]
    out += [
        "",
        f"  flood of {flood['orders']:,}"
        f"{'' if flood['done'] else ' (NOT all confirmed within the limit)'}:",
        f"    {'accepted (202) per s':<44}{flood['accepted_per_s']:>10,.0f}   baseline: "
        f"intake alone (bare aiohttp, one process, same client) "
        f"{bare['accepted_per_s']:,.0f}/s",
        f"    {'orders/s, first post to last notified':<44}"
        f"{(flood['orders_per_s'] or 0):>10,.0f}   baseline: allocation alone "
        f"(Allocator.reserve, {alloc['redis']} Redis, {alloc['orders']:,} orders) "
        f"{alloc['orders_per_s']:,.0f}/s",
        f"    {'first post to last notified (s)':<44}"
        f"{_ms(flood['first_post_to_last_notified_s'], ',.1f'):>10}",
        f"    {'errors (not 202)':<44}{flood['errors']:>10,}",
        f"    {'daemon CPU ms per order':<44}{flood['daemon_cpu_ms_per_order']:>10.3f}"
        + _each(flood["daemon_cpu_ms_per_order_by_process"], lambda ms: f"{ms:.3f}"),
        f"    {'daemon CPU ms per s when idle (before)':<44}"
        f"{flood['daemon_idle_cpu_ms_per_s']:>10.1f}"
        + _each(flood["daemon_idle_cpu_ms_per_s_by_process"], lambda ms: f"{ms:.1f}"),
        f"    {redis_cpu:<44}{flood['redis_cpu_ms_per_order']:>10.3f}"
        + _each(flood["redis_cpu_ms_per_order_by_node"].values(), lambda ms: f"{ms:.3f}"),
        f"    {'client CPU ms per order':<44}{flood['client_cpu_ms_per_order']:>10.3f}",
        f"    {'daemon RSS after the flood (peak)':<44}{_mb(flood['rss_bytes']):>10}   "
        f"({_mb(flood['rss_peak_bytes'])})" + _mb_each(flood["rss_bytes_by_process"]),
        f"    {'PostgreSQL tables+indexes bytes per order':<44}"
        f"{flood['pg_table_bytes_per_order']:>10,}",
        f"    {'PostgreSQL WAL bytes per order (cluster)':<44}"
        f"{flood['pg_wal_bytes_per_order']:>10,}",
        "    largest tables, bytes per order: "
        + ", ".join(
            f"{name} {size:,}"
            for name, size in list(flood["pg_table_bytes_per_order_by_table"].items())[:6]
        ),
        "    actor messages per order (turns): "
        + ", ".join(f"{kind} {n:g}" for kind, n in flood["messages_per_order"].items())
        + f" = {sum(flood['messages_per_order'].values()):g}",
        "",
        "    stage       orders   per s (first->last)   first s   last s  (after the first post)",
    ]
    for stage, source in STAGES:
        s = flood["stages"][stage]
        per_s = "-" if s["per_s"] is None else f"{s['per_s']:,.0f}"
        first = "-" if s["first_s"] is None else f"{s['first_s']:.2f}"
        last = "-" if s["last_s"] is None else f"{s['last_s']:.2f}"
        out.append(f"    {stage:<10}{s['orders']:>8,}{per_s:>22}{first:>10}{last:>9}  {source}")
    for rate, data in report["rates"].items():
        out += [
            "",
            f"  fixed {int(float(rate)):,}/s: {data['orders']:,} orders, achieved "
            f"{data['achieved_per_s']:,.0f}/s, errors {data['errors']}"
            f"{'' if data['done'] else ', NOT all confirmed within the limit'}",
            f"    {'post -> stage':<14}{'orders':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
        ]
        for stage, _ in STAGES:
            s = data["latency"][stage]
            out.append(
                f"    {stage:<14}{s['orders']:>8,}{_ms(s['p50_ms']):>10}{_ms(s['p99_ms']):>10}"
                f"{_ms(s['max_ms']):>10}"
            )
    out += [
        "",
        f"  awaiting delivery: {waited['posted']:,} more orders posted, "
        f"{waited['awaiting_delivery']:,} parcels waiting at the end, in {waited['seconds']:.0f} s"
        f"{'' if waited['done'] else ' (NOT reached within the limit)'}; daemon RSS "
        f"{_mb(waited['rss_bytes'])} (peak {_mb(waited['rss_peak_bytes'])})"
        + _mb_each(waited["rss_bytes_by_process"]),
        f"  PostgreSQL schema bytes per order at the end (all phases): "
        f"{report['schema_bytes_per_order_at_end']:,}",
        "  messages at the SMTP server: "
        + ", ".join(f"{v:,} {k}" for k, v in sorted(report["smtp_messages"].items())),
        f"  allocation alone: p50 {alloc['p50_ms']:.2f} ms, p99 {alloc['p99_ms']:.2f} ms at "
        f"{alloc['concurrency']:,} in flight; "
        f"{'consistent' if alloc['consistent'] else 'PROBLEMS'}",
    ]
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small run, about a minute")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("--orders", type=int, help="flood orders (20,000; quick 2,000)")
    parser.add_argument("--connections", type=int, default=64, help="client connections")
    parser.add_argument(
        "--processes", type=int, default=1, help="orderd run processes sharing the work (1)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help=f"run orderd on a local Redis Cluster ({CLUSTER_MASTERS} masters, "
        f"{CLUSTER_REPLICAS} replica each) started for the run",
    )
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[200.0, 500.0], help="fixed rates per s"
    )
    parser.add_argument("--rate-seconds", type=float, help="seconds per fixed rate (20; quick 4)")
    parser.add_argument(
        "--awaiting", type=int, help="parcels awaiting delivery for RSS (100,000; quick 6,000)"
    )
    parser.add_argument("--awaiting-limit-s", type=float, help="bound of that phase (s)")
    parser.add_argument(
        "--allocation-orders", type=int, help="allocation-alone baseline orders (20,000)"
    )
    parser.add_argument(
        "--drain-limit-s", type=float, default=600.0, help="bound of each wait for shipping"
    )
    parser.add_argument(
        "--partitions", type=int, default=1, help="the order stream's partitions (1-64)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.partitions <= 64:
        parser.error("--partitions: from 1 to 64")
    quick = args.quick
    args.orders = args.orders or (2_000 if quick else 20_000)
    args.rate_seconds = args.rate_seconds or (4.0 if quick else 20.0)
    args.awaiting = args.awaiting if args.awaiting is not None else (6_000 if quick else 100_000)
    args.awaiting_limit_s = args.awaiting_limit_s or (300.0 if quick else 1_200.0)
    args.allocation_orders = args.allocation_orders or (5_000 if quick else 20_000)
    for name in ("orders", "connections", "allocation_orders", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(rate <= 0 for rate in args.rates):
        parser.error("--rates must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report: dict[str, Any] = uvloop.run(run_bench(args))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except asyncio.CancelledError:
        log("terminated")
        return 143
    except (OrderdError, *FAILURES, RuntimeError, asyncpg.PostgresError) as exc:
        log(f"bench failed: {exc}")
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
