"""``orderd demo``: the pipeline as far as it is built, end to end on this machine.

The catalog is imported and stock set; a real ``orderd run`` is started with the sandbox
warehouse and carrier; random orders arrive as signed webhooks, concurrently; its order
actors reserve or backorder them, the sandbox warehouse picks and packs (a few wrongly, so
the pack check has something to catch), carriers are chosen and labels bought, and the
orders ship. A delivery of the scarcest product fills the waiting orders, which ship too.
Redis is checked against the ledger; orders still held at the end are cancelled, so a
second run starts from the same stock.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from actors.order.messages import CancelRequested
from adapters.errors import OrderdError
from adapters.platforms.signatures import sign_generic
from adapters.postgres import schema
from daemon.catalog import import_catalog
from daemon.resources import database, open_resources
from daemon.settings import Settings

SCARCE_SKU = "MUG-BLK"
SCARCE_STOCK = 5
STOCK = 40
RECEIPT = 60
_WAIT_S = 60.0


async def run_demo(settings: Settings, orders: int, say: Callable[[str], None]) -> None:
    """Run the demo against the configured servers, telling each step through ``say``."""
    pg = settings.postgres
    async with database(settings) as conn:
        await schema.migrate(conn, pg.schema)
    say(f"schema {pg.schema!r} is at version {schema.latest_version()}")
    catalog = resources.files("daemon").joinpath("data", "demo_catalog.csv")
    with resources.as_file(catalog) as path:
        say(await import_catalog(settings, path))
        skus = [line.split(",", 1)[0] for line in path.read_text().splitlines()[1:] if line]

    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)  # noqa: S311 - demo orders, not secrets
    async with open_resources(settings) as res:
        await res.allocator.start()
        for sku in skus:
            units = SCARCE_STOCK if sku == SCARCE_SKU else STOCK
            await res.allocator.adjust(
                sku, units, movement_id=f"demo-{run}-set-{sku}", mode="set", reason="demo count"
            )
        say(f"stock set: {STOCK} units of each product, {SCARCE_STOCK} of {SCARCE_SKU}")

        secret = secrets.token_hex(16)
        daemon, url = await _start_daemon(settings, secret, run)
        try:
            say(f"orderd run started on {url}")
            bodies = [_order(run, n, skus, rng) for n in range(orders)]
            answers = await _post_all(url, bodies, secret)
            say(f"{orders} signed webhooks sent concurrently: {_counted(a for a, _ in answers)}")
            ids = [order_id for _, order_id in answers if order_id]
            states = await _wait_for(res.pool, ids, lambda s: s in _AT_REST)
            say(f"the order actors took them: {_counted(states.values())}")

            delivered = await res.allocator.adjust(
                SCARCE_SKU, RECEIPT, movement_id=f"demo-{run}-receipt", reason="demo receipt"
            )
            await res.mail.tell_filled(delivered)
            say(
                f"receipt of {RECEIPT} x {SCARCE_SKU} filled {len(delivered.fills)} waiting "
                "orders in queue order"
            )
            filled = list(delivered.filled_orders)
            await _wait_for(res.pool, filled, lambda s: s in ("shipped", "needs_attention"))
            states = await _wait_for(res.pool, ids, lambda s: s in _AT_REST)
            say(f"now: {_counted(states.values())}")
            for line in await _shipping_report(res.pool, ids):
                say(line)
            level = await res.allocator.stock(SCARCE_SKU)
            say(
                f"{SCARCE_SKU} @ {level.warehouse}: on hand {level.on_hand}, reserved "
                f"{level.reserved}, available {level.available}, backordered {level.backordered}"
            )
            drift = await res.allocator.reconcile()
            say("Redis matches the ledger" if not drift else f"{len(drift)} ledger differences")

            held = [i for i, state in states.items() if state != "shipped"]
            await res.mail.send(
                [CancelRequested(order_id=i, reason="demo over", requested_by="demo") for i in held]
            )
            await _wait_for(res.pool, held, lambda s: s == "cancelled")
            # The next run sets every product's stock again, so it starts where this one did.
            say(f"{len(held)} orders still held were cancelled through their actors")
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    say("customer messages and delivery tracking are not built yet: the demo ends at shipped")


# Where an order rests until something from outside (stock, a person) moves it on.
_AT_REST = frozenset({"shipped", "backordered", "partially_reserved", "needs_attention"})


async def _shipping_report(pool: Any, ids: list[str]) -> list[str]:
    """What shipped, how, and how fast, from the durable record."""
    async with pool.acquire() as conn:
        shipped = await conn.fetch(
            """
            SELECT s.carrier_account, s.service, s.tracking_number, s.label_path,
                   s.estimated_delivery, s.shipped_at - o.paid_at AS took
            FROM shipments s JOIN orders o ON o.id = s.order_id
            WHERE s.order_id = ANY($1::text[]) AND s.status = 'shipped'
            ORDER BY s.shipped_at
            """,
            ids,
        )
        wrong = await conn.fetchval(
            "SELECT count(*) FROM shipments WHERE order_id = ANY($1::text[]) AND NOT packed_ok",
            ids,
        )
    if not shipped:
        return ["nothing shipped"]
    services = _counted(f"{r['carrier_account']} {r['service']}" for r in shipped)
    took = sorted(r["took"].total_seconds() for r in shipped)
    first = shipped[0]
    return [
        f"{len(shipped)} shipments left: {services}",
        f"paid -> shipped: median {took[len(took) // 2]:.1f} s, slowest {took[-1]:.1f} s",
        f"packed wrong and held for a person: {wrong}",
        f"e.g. tracking number {first['tracking_number']}, delivery expected "
        f"{first['estimated_delivery']}, label {first['label_path']}",
    ]


_ADDRESSES = (
    {"name": "Demo Customer", "line1": "200 Main St", "city": "Springfield", "region": "IL",
     "postal_code": "62704", "country": "US"},
    {"name": "Demo Customer", "line1": "5 Ocean Ave", "city": "Brooklyn", "region": "NY",
     "postal_code": "11225", "country": "US"},
    {"name": "Demo Customer", "line1": "Damrak 1", "city": "Amsterdam",
     "postal_code": "1012 LG", "country": "NL"},
)  # fmt: skip


def _order(run: str, n: int, skus: list[str], rng: random.Random) -> bytes:
    picks = rng.sample(skus, rng.randint(1, 3))
    if rng.random() < 0.3:
        picks = [SCARCE_SKU, *picks[:2]]  # a popular product runs short
    return msgspec.json.encode(
        {
            "id": f"D{run}-{n}",
            "name": f"#D{run}-{n}",
            "status": "paid",
            "paid_at": datetime.now(UTC).isoformat(),
            "currency": "EUR",
            "customer": {"email": f"customer{n}@example.com"},
            "shipping_address": rng.choice(_ADDRESSES),
            "shipping_service": rng.choice(("Standard", "Standard", "Express")),
            "lines": [
                {"sku": sku, "quantity": rng.randint(1, 2)} for sku in dict.fromkeys(picks)
            ],
        }
    )  # fmt: skip


async def _start_daemon(
    settings: Settings, secret: str, run: str
) -> tuple[subprocess.Popen[bytes], str]:
    daemon, url = _spawn(settings, secret, run)
    deadline = time.monotonic() + _WAIT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise OrderdError(f"orderd run stopped at start (exit {daemon.returncode})")
            try:
                async with session.get(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        return daemon, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # the daemon starts in its own process
    daemon.kill()
    raise OrderdError("orderd run did not become ready")


def _spawn(settings: Settings, secret: str, run: str) -> tuple[subprocess.Popen[bytes], str]:
    """``orderd run`` with the same settings, its generic webhook open under ``secret``,
    the sandbox warehouse, and labels kept in a directory of the run's own."""
    labels = Path(tempfile.gettempdir()) / f"orderd-demo-{run}" / "labels"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ)
    if Path(settings.source).is_file():
        env["ORDERD_CONFIG"] = settings.source
    env.update(
        {
            "ORDERD_WEBHOOKS__GENERIC__ENABLED": "true",
            "ORDERD_WEBHOOKS__GENERIC__SECRET": secret,
            "ORDERD_HTTP__HOST": "127.0.0.1",
            "ORDERD_HTTP__PORT": str(port),
            "ORDERD_DAEMON__CONSUMER_NAME": f"demo-{run}",
            "ORDERD_DAEMON__LOG_LEVEL": "warning",
            # The sandbox warehouse packs at once and gets one parcel in 25 wrong.
            "ORDERD_WMS__ADAPTER": "sandbox",
            "ORDERD_WMS__SANDBOX_DELAY_S": "0.2",
            "ORDERD_WMS__SANDBOX_MISPICK_RATE": "0.04",
            "ORDERD_LABELS__DIR": str(labels),
        }
    )
    orderd = Path(sys.executable).with_name("orderd")
    command = (
        [str(orderd), "run"] if orderd.exists() else [sys.executable, "-m", "daemon.cli", "run"]
    )
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    return daemon, f"http://127.0.0.1:{port}"


async def _post_all(url: str, bodies: list[bytes], secret: str) -> list[tuple[str, str]]:
    """Post every order; (status and outcome, order id) for each."""
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes) -> tuple[str, str]:
            headers = {"X-Orderd-Signature": sign_generic(body, secret)}
            async with session.post(f"{url}/webhooks/orders", data=body, headers=headers) as a:
                answer = await a.json()
                return f"{a.status} {answer.get('status', '')}", answer.get("order_id", "")

        return list(await asyncio.gather(*(post(body) for body in bodies)))


async def _wait_for(pool: Any, ids: list[str], done: Callable[[str], bool]) -> dict[str, str]:
    """Each order's state once every one of them satisfies ``done`` (the daemon works apart)."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, state FROM orders WHERE id = ANY($1::text[])", ids)
        states = {r["id"]: r["state"] for r in rows}
        if len(states) == len(ids) and all(done(s) for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise OrderdError("the daemon did not finish the demo's orders in time")
        await asyncio.sleep(0.1)  # polling the daemon's progress, bounded above


def _counted(values: Any) -> str:
    counts = Counter(values)
    return ", ".join(f"{count} {value}" for value, count in counts.most_common())
