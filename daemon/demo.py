"""``orderd demo``: the whole pipeline, end to end on this machine.

The catalog is imported and stock set; a local SMTP server is started, then a real
``orderd run`` with the sandbox warehouse and carrier and a fast clock; random orders arrive
as signed webhooks, concurrently. Its order actors reserve or backorder them, the sandbox
warehouse picks and packs (a few wrongly, which the pack check holds), carriers are chosen
and labels bought, the parcels travel (some late, a few failing), customers get their
messages by email, and the orders complete after their follow-ups. A delivery of the
scarcest product fills the waiting orders, which go the same way. Customers click rating
links; the KPI report comes from the durable record; orders still held for a person are
cancelled, so a second run starts from the same stock.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import re
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
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiosmtpd.controller import Controller

from actors.errors import OrderdError
from actors.order.messages import CancelRequested
from adapters.platforms.signatures import sign_generic
from adapters.postgres import schema
from daemon import report
from daemon.catalog import import_catalog
from daemon.resources import database, open_resources
from daemon.settings import Settings

SCARCE_SKU = "MUG-BLK"
SCARCE_STOCK = 5
STOCK = 40
RECEIPT = 60
_WAIT_S = 120.0


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
        with MailSink() as sink:
            daemon, url = await _start_daemon(settings, secret, run, sink.port)
            try:
                say(
                    f"orderd run started on {url}, its clock {SCALE:g} times as fast, "
                    f"mail to a local SMTP server on port {sink.port}"
                )
                # The figures count from now by the wall clock (the stock ledger's), the
                # orders are paid by the daemon's clock, which runs ahead.
                since = datetime.now(UTC)
                paid = await _daemon_time(url)
                bodies = [_order(run, n, skus, rng, paid) for n in range(orders)]
                answers = await _post_all(url, bodies, secret)
                say(
                    f"{orders} signed webhooks sent concurrently: {_counted(a for a, _ in answers)}"
                )
                ids = [order_id for _, order_id in answers if order_id]
                states = await _wait_for(res.pool, ids, lambda s: s != "received")
                say(f"the order actors took them: {_counted(states.values())}")

                delivered = await res.allocator.adjust(
                    SCARCE_SKU, RECEIPT, movement_id=f"demo-{run}-receipt", reason="demo receipt"
                )
                await res.mail.tell_filled(delivered)
                say(
                    f"receipt of {RECEIPT} x {SCARCE_SKU} filled {len(delivered.fills)} waiting "
                    "orders in queue order"
                )
                states = await _wait_for(res.pool, ids, lambda s: s in _AT_REST - _WAITING)
                say(f"then: {_counted(states.values())}")
                say(f"messages received by the SMTP server: {_counted(sink.kinds())}")
                clicks = await _rate(sink, rng)
                say(f"customers clicked {len(clicks)} rating links: {_counted(clicks)}")
                drift = await res.allocator.reconcile()
                say("Redis matches the ledger" if not drift else f"{len(drift)} ledger differences")
                async with res.pool.acquire() as conn:
                    figures = await report.figures(conn, since, datetime.now(UTC), ids)
                for line in report.lines(figures)[1:]:
                    say(line)

                held = [i for i, state in states.items() if state != "completed"]
                await res.mail.send(
                    [
                        CancelRequested(order_id=i, reason="demo over", requested_by="demo")
                        for i in held
                    ]
                )
                await _wait_for(res.pool, held, lambda s: s in ("cancelled", "completed"))
                # The next run sets every product's stock again, so it starts where this did.
                say(f"{len(held)} orders held for a person were cancelled through their actors")
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()


# Where an order rests until something from outside (stock, a person) moves it on.
_WAITING = frozenset({"backordered", "partially_reserved"})
_AT_REST = frozenset({"completed", "needs_attention"}) | _WAITING
# Half a day of the daemon's clock a second: parcels arrive within half a minute.
SCALE = 43200.0


class MailSink:
    """A local SMTP server for the demo's customer messages (aiosmtpd), keeping them all."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.messages: list[EmailMessage] = []
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def __enter__(self) -> MailSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()

    def kinds(self) -> list[str]:
        return [_KINDS.get(str(m["X-Orderd-Kind"]), str(m["Subject"])) for m in self.messages]


_KINDS = {
    "shipping_confirmation": "shipping confirmation",
    "backorder_notice": "backorder notice",
    "delay_alert": "delay alert",
    "delivered": "delivered",
    "delivery_exception": "delivery exception",
    "review_request": "review request",
    "repeat_purchase": "repeat-purchase reminder",
}
_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/feedback/[A-Za-z0-9_-]+)\?score=")


async def _rate(sink: MailSink, rng: random.Random) -> list[str]:
    """Most customers click a rating in their review request and press its button; most
    are happy."""
    clicks = []
    async with aiohttp.ClientSession() as session:
        for message in sink.messages:
            text = message.get_body(preferencelist=("plain",))
            found = _LINK.search(text.get_content() if text is not None else "")
            if found is None or rng.random() < 0.3:
                continue
            score = rng.choices((5, 4, 3, 2, 1), weights=(50, 30, 10, 6, 4))[0]
            async with session.get(f"{found.group(1)}?score={score}") as page:
                if page.status != 200:
                    continue
            # The page's button posts the score to the link itself.
            form = {"score": str(score)}
            async with session.post(found.group(1), data=form) as answer:
                if answer.status == 200:
                    clicks.append(str(score))
    return clicks


async def _daemon_time(url: str) -> datetime:
    """The daemon's clock, which runs ahead of the wall clock in the demo."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as answer:
        health = await answer.json()
    return datetime.fromisoformat(health["time"])


_ADDRESSES = (
    {"name": "Demo Customer", "line1": "200 Main St", "city": "Springfield", "region": "IL",
     "postal_code": "62704", "country": "US"},
    {"name": "Demo Customer", "line1": "5 Ocean Ave", "city": "Brooklyn", "region": "NY",
     "postal_code": "11225", "country": "US"},
    {"name": "Demo Customer", "line1": "Damrak 1", "city": "Amsterdam",
     "postal_code": "1012 LG", "country": "NL"},
)  # fmt: skip


def _order(run: str, n: int, skus: list[str], rng: random.Random, paid_at: datetime) -> bytes:
    picks = rng.sample(skus, rng.randint(1, 3))
    if rng.random() < 0.3:
        picks = [SCARCE_SKU, *picks[:2]]  # a popular product runs short
    return msgspec.json.encode(
        {
            "id": f"D{run}-{n}",
            "name": f"#D{run}-{n}",
            "status": "paid",
            "paid_at": paid_at.isoformat(),
            "currency": "EUR",
            # Most customers agreed to hear from the shop again; the others get no reminder.
            "customer": {
                "email": f"customer{n}@example.com",
                "accepts_marketing": rng.random() < 0.7,
            },
            "shipping_address": rng.choice(_ADDRESSES),
            "shipping_service": rng.choice(("Standard", "Standard", "Express")),
            "lines": [
                {"sku": sku, "quantity": rng.randint(1, 2)} for sku in dict.fromkeys(picks)
            ],
        }
    )  # fmt: skip


async def _start_daemon(
    settings: Settings, secret: str, run: str, smtp_port: int
) -> tuple[subprocess.Popen[bytes], str]:
    daemon, url = _spawn(settings, secret, run, smtp_port)
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


def _spawn(
    settings: Settings, secret: str, run: str, smtp_port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """``orderd run`` with the same settings, its generic webhook open under ``secret``,
    the sandbox warehouse and carrier, labels kept in a directory of the run's own, mail to
    the demo's SMTP server, and a fast clock."""
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
            # Some parcels are late or fail, so delay alerts and exceptions have a turn.
            "ORDERD_CARRIERS__SANDBOX__ENABLED": "true",
            "ORDERD_CARRIERS__SANDBOX__DELAY_RATE": "0.1",
            "ORDERD_CARRIERS__SANDBOX__EXCEPTION_RATE": "0.03",
            "ORDERD_EMAIL__ENABLED": "true",
            "ORDERD_EMAIL__HOST": "127.0.0.1",
            "ORDERD_EMAIL__PORT": str(smtp_port),
            "ORDERD_EMAIL__TLS": "none",
            "ORDERD_SMS__ENABLED": "false",
            "ORDERD_NOTIFY__CHANNELS": "email",
            "ORDERD_NOTIFY__PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ORDERD_NOTIFY__REVIEW_AFTER_DAYS": "1",
            "ORDERD_NOTIFY__REPEAT_AFTER_DAYS": "2",
            "ORDERD_CLOCK__SCALE": str(SCALE),
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
