"""``orderd demo``: the whole pipeline, end to end on this machine.

The catalog is imported and stock set; a local SMTP server is started, then a real
``orderd run`` with the sandbox warehouse and carrier and a fast clock. Random orders
arrive as signed webhooks over a week of that clock, in hourly waves that follow the hours
of the day, each paid at the daemon's time it is sent. Its order actors reserve or
backorder them, the sandbox warehouse picks and packs (a few wrongly, which the pack check
holds), carriers are chosen and labels bought, the parcels travel (a few late, a few
failing), customers get their messages by email, and the orders complete after their
follow-ups. Midweek, a delivery of the scarcest product fills the waiting orders, which go
the same way. A line every few seconds tells how far it got. Customers click rating links;
the KPI report comes from the durable record. With ``--keep`` the daemon then serves its
dashboard until Ctrl-C. Last, orders still held for a person are cancelled, so a second
run starts from the same stock.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import math
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
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from daemon.settings import Settings, Warehouse

SCARCE_SKU = "MUG-BLK"
SCARCE_STOCK = 5
STOCK = 40
RECEIPT = 60
_WAIT_S = 120.0
# Half a day of the daemon's clock a second: a week of orders comes in a quarter of a
# minute, and the parcels of the last arrive about as long after. Not faster: the sandbox
# carrier's scans are read every half second, which must stay hours of that clock, not
# the better part of a day, or parcels delivered on their promised day would be found
# late before their delivery was read.
SCALE = 43200.0
WEEK_DAYS = 7
# The supplier's delivery of the scarce product arrives in the middle of the week.
RECEIPT_AFTER = timedelta(days=3, hours=2)
# About a line a day of the daemon's clock.
PROGRESS_S = 2.0
# How many orders each hour of the day brings, relatively (the warehouse's local time):
# few at night, more through the working day, most in the evening.
_BUSY = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 5, 5, 5, 5, 6, 7, 8, 8, 7, 4, 2)
# Where an order stays for good, or until a person moves it on.
_SETTLED = frozenset({"completed", "needs_attention", "cancelled"})
_DONE = frozenset({"completed", "cancelled"})


async def run_demo(
    settings: Settings, orders: int, say: Callable[[str], None], *, keep: bool = False
) -> None:
    """Run the demo against the configured servers, telling each step through ``say``.

    With ``keep``, the daemon goes on serving once the report is out (its dashboard and
    admin API open under a fresh token) until SIGINT or SIGTERM; the orders held for a
    person stay as they are until then."""
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
    first = min(settings.warehouses, key=lambda w: (w.priority, w.code))
    async with open_resources(settings) as res:
        await res.allocator.start()
        for sku in skus:
            units = SCARCE_STOCK if sku == SCARCE_SKU else STOCK
            await res.allocator.adjust(
                sku, units, movement_id=f"demo-{run}-set-{sku}", mode="set", reason="demo count"
            )
        say(f"stock set: {STOCK} units of each product, {SCARCE_STOCK} of {SCARCE_SKU}")

        secret, token = secrets.token_hex(16), secrets.token_urlsafe(24)
        stop = asyncio.Event()
        # Signals (with --keep) are handled until the daemon has stopped: a second
        # Ctrl-C while it stops interrupts nothing.
        with contextlib.ExitStack() as signals, MailSink() as sink:
            daemon, url = await _start_daemon(settings, secret, token, run, sink.port)
            try:
                say(
                    f"orderd run started on {url}, its clock {SCALE:g} times as fast, "
                    f"mail to a local SMTP server on port {sink.port}"
                )
                # The stock ledger runs on the wall clock, the orders on the daemon's,
                # which is ahead: the report's window holds both.
                since = datetime.now(UTC)
                connector = aiohttp.TCPConnector(limit=32)
                async with aiohttp.ClientSession(connector=connector) as session:
                    orderd = Orderd(session, url, secret)
                    week = Week(orderd, res, run, skus, rng, first)
                    async with _progress(week, orders, say):
                        await week.send(orders, say)
                        states = await _wait_for(res.pool, week.sent, _SETTLED.__contains__)
                    say(f"then: {_counted(states.values())}")
                    say(f"messages received by the SMTP server: {_counted(sink.kinds())}")
                    clicks = await _rate(sink, rng)
                    say(f"customers clicked {len(clicks)} rating links: {_counted(clicks)}")
                    drift = await res.allocator.reconcile()
                    say(
                        "Redis matches the ledger"
                        if not drift
                        else f"{len(drift)} ledger differences"
                    )
                    until = await orderd.now()
                async with res.pool.acquire() as conn:
                    figures = await report.figures(conn, since, until, week.sent)
                for line in report.lines(figures)[1:]:
                    say(line)

                if keep:
                    signals.enter_context(_stopped_by_signals(stop))
                    # Served on at the wall clock's pace from where the fast clock got
                    # to: the dashboard's window stays on the demo's week.
                    async with aiohttp.ClientSession() as session:
                        reached = await Orderd(session, url, secret).now()
                    _stop(daemon)
                    ahead = (reached - datetime.now(UTC)).total_seconds()
                    daemon, url = await _start_daemon(
                        settings, secret, token, run, sink.port, scale=1.0, offset_s=ahead
                    )
                    async with res.pool.acquire() as conn:
                        first_paid = await conn.fetchval(
                            "SELECT min(paid_at) FROM orders WHERE id = ANY($1::text[])",
                            week.sent,
                        )
                    spanned = (reached - (first_paid or reached)) / timedelta(days=1)
                    days = min(90, math.ceil(spanned))
                    say(f"dashboard: {url}/dashboard?days={max(days, 1)}")
                    say(f"admin token: {token}")
                    say("serving until Ctrl-C")
                    await _serve(daemon, stop)
                held = await _cancel_held(res, week.sent)
                say(f"{held} orders held for a person were cancelled through their actors")
            finally:
                _stop(daemon)


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()


async def _cancel_held(res: Any, ids: list[str]) -> int:
    """Cancel the orders still held for a person, through their actors; how many. The
    next run sets every product's stock again, so it starts where this one did."""
    # A person may have moved some on from the dashboard: each settles first.
    states = await _wait_for(res.pool, ids, _SETTLED.__contains__)
    held = [i for i, state in states.items() if state not in _DONE]
    await res.mail.send(
        [CancelRequested(order_id=i, reason="demo over", requested_by="demo") for i in held]
    )
    await _wait_for(res.pool, held, _DONE.__contains__)
    return len(held)


class Orderd:
    """The demo's daemon as a platform and a watch see it: its webhook and its clock."""

    def __init__(self, session: aiohttp.ClientSession, url: str, secret: str) -> None:
        self._session = session
        self._url = url
        self._secret = secret

    async def now(self) -> datetime:
        """The daemon's clock, which runs ahead of the wall clock in the demo."""
        async with self._session.get(f"{self._url}/healthz") as answer:
            health = await answer.json()
        return datetime.fromisoformat(health["time"])

    async def until(self, moment: datetime) -> datetime:
        """The daemon's clock once it has reached ``moment``."""
        now = await self.now()
        if now < moment:
            # Pacing, not waiting for something: the daemon's clock runs at a known rate.
            await asyncio.sleep((moment - now).total_seconds() / SCALE)
            now = await self.now()
        return now

    async def post(self, body: bytes) -> tuple[str, str]:
        """Post one signed order: (status and outcome, order id)."""
        headers = {"X-Orderd-Signature": sign_generic(body, self._secret)}
        url = f"{self._url}/webhooks/orders"
        async with self._session.post(url, data=body, headers=headers) as answer:
            found = await answer.json()
            return f"{answer.status} {found.get('status', '')}", found.get("order_id", "")


class Week:
    """A week of orders on the daemon's clock, and the scarce product's delivery in it."""

    def __init__(
        self,
        orderd: Orderd,
        res: Any,
        run: str,
        skus: list[str],
        rng: random.Random,
        warehouse: Warehouse,
    ) -> None:
        self.orderd = orderd
        self.zone = ZoneInfo(warehouse.timezone)
        self.home = warehouse.address.country
        self.sent: list[str] = []  # order ids, as the daemon answered them
        self._numbered = 0
        self._res = res
        self._run = run
        self._skus = skus
        self._rng = rng

    async def send(self, orders: int, say: Callable[[str], None]) -> None:
        """Send the orders wave by wave, each paid at the daemon's time it is sent."""
        start = await self.orderd.now()
        waves = schedule(orders, start, self.zone, self._rng)
        receipt: datetime | None = start + RECEIPT_AFTER
        say(
            f"{orders} orders to come over {WEEK_DAYS} days of orderd's clock from "
            f"{self.when(start)}, in {len(waves)} hourly waves, busiest in the evening"
        )
        outcomes: Counter[str] = Counter()
        for at, size in waves:
            if receipt is not None and receipt <= at:
                await self._receive(await self.orderd.until(receipt), say)
                receipt = None
            paid = await self.orderd.until(at)
            numbers = range(self._numbered, self._numbered + size)
            self._numbered += size
            bodies = [_order(self._run, n, self._skus, self._rng, paid, self.home) for n in numbers]
            answers = await asyncio.gather(*(self.orderd.post(body) for body in bodies))
            outcomes.update(outcome for outcome, _ in answers)
            self.sent.extend(order_id for _, order_id in answers if order_id)
        if receipt is not None:
            await self._receive(await self.orderd.until(receipt), say)
        days = (await self.orderd.now() - start) / timedelta(days=1)
        say(f"{orders} signed webhooks sent over {days:.1f} days: {_counted(outcomes.elements())}")

    def when(self, moment: datetime) -> str:
        """A moment of the daemon's clock as the warehouse reads it."""
        return f"{moment.astimezone(self.zone):%a %d %b %H:%M}"

    async def states(self) -> dict[str, str]:
        """The state of each order sent so far."""
        return await _states(self._res.pool, self.sent)

    async def _receive(self, now: datetime, say: Callable[[str], None]) -> None:
        allocator, mail = self._res.allocator, self._res.mail
        delivered = await allocator.adjust(
            SCARCE_SKU, RECEIPT, movement_id=f"demo-{self._run}-receipt", reason="demo receipt"
        )
        await mail.tell_filled(delivered)
        say(
            f"{self.when(now)}: a delivery of {RECEIPT} x {SCARCE_SKU} filled "
            f"{len(delivered.fills)} waiting orders in queue order"
        )


def schedule(
    orders: int, start: datetime, zone: ZoneInfo, rng: random.Random
) -> list[tuple[datetime, int]]:
    """When each wave of orders is sent (the daemon's time) and how many it holds: the
    orders spread evenly over the week's days, each at an hour drawn by how busy that hour
    of the day is in ``zone``."""
    hours = range(WEEK_DAYS * 24)
    weights = [_BUSY[(start + timedelta(hours=h)).astimezone(zone).hour] for h in hours]
    per_hour: Counter[int] = Counter()
    for n in range(orders):
        day = n * WEEK_DAYS // orders
        of_day = slice(day * 24, day * 24 + 24)
        per_hour[rng.choices(hours[of_day], weights[of_day])[0]] += 1
    return [(start + timedelta(hours=h), size) for h, size in sorted(per_hour.items())]


@contextlib.asynccontextmanager
async def _progress(week: Week, orders: int, say: Callable[[str], None]) -> AsyncIterator[None]:
    """A line every few seconds, about one a day of the daemon's clock, while the orders
    come and go: how many were sent and where they all are."""

    async def tell() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)  # how often a person wants to hear, no more
            try:
                now = await week.orderd.now()
                states = await week.states()
            except (aiohttp.ClientError, OSError):
                continue  # a line missed; the waits that follow notice a daemon gone
            where = _counted(states.values()) or "none in yet"
            say(f"{week.when(now)}: {len(week.sent)} of {orders} orders sent; {where}")

    task = asyncio.create_task(tell())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def _stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of interrupting whatever runs."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(daemon: subprocess.Popen[bytes], stop: asyncio.Event) -> None:
    """Until ``stop`` is set; a daemon that stops by itself ends the demo with an error."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if daemon.poll() is not None:
            raise OrderdError(f"orderd run stopped while serving (exit {daemon.returncode})")


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


_ADDRESSES = (
    {"name": "Demo Customer", "line1": "200 Main St", "city": "Springfield", "region": "IL",
     "postal_code": "62704", "country": "US"},
    {"name": "Demo Customer", "line1": "5 Ocean Ave", "city": "Brooklyn", "region": "NY",
     "postal_code": "11225", "country": "US"},
    {"name": "Demo Customer", "line1": "Damrak 1", "city": "Amsterdam",
     "postal_code": "1012 LG", "country": "NL"},
)  # fmt: skip


def _order(
    run: str, n: int, skus: list[str], rng: random.Random, paid_at: datetime, home: str
) -> bytes:
    picks = rng.sample(skus, rng.randint(1, 3))
    if rng.random() < 0.3:
        picks = [SCARCE_SKU, *picks[:2]]  # a popular product runs short
    address = rng.choice(_ADDRESSES)
    # Express is offered at home only: abroad, no carrier keeps its two days.
    services = ("Standard", "Standard", "Express") if address["country"] == home else ("Standard",)
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
            "shipping_address": address,
            "shipping_service": rng.choice(services),
            "lines": [
                {"sku": sku, "quantity": rng.randint(1, 2)} for sku in dict.fromkeys(picks)
            ],
        }
    )  # fmt: skip


async def _start_daemon(
    settings: Settings,
    secret: str,
    token: str,
    run: str,
    smtp_port: int,
    *,
    scale: float = SCALE,
    offset_s: float = 0.0,
) -> tuple[subprocess.Popen[bytes], str]:
    daemon, url = _spawn(settings, secret, token, run, smtp_port, scale, offset_s)
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
    settings: Settings,
    secret: str,
    token: str,
    run: str,
    smtp_port: int,
    scale: float,
    offset_s: float,
) -> tuple[subprocess.Popen[bytes], str]:
    """``orderd run`` with the same settings, its generic webhook open under ``secret``,
    its admin API under ``token``, the sandbox warehouse and carrier, labels kept in a
    directory of the run's own, mail to the demo's SMTP server, and a fast clock."""
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
            "ORDERD_ADMIN__TOKEN": token,
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
            "ORDERD_CLOCK__SCALE": str(scale),
            "ORDERD_CLOCK__OFFSET_S": str(max(0.0, offset_s)),
        }
    )
    orderd = Path(sys.executable).with_name("orderd")
    command = (
        [str(orderd), "run"] if orderd.exists() else [sys.executable, "-m", "daemon.cli", "run"]
    )
    # A session of its own: Ctrl-C in the terminal reaches the demo alone, which still
    # needs the daemon to cancel what is held before it stops it.
    daemon = subprocess.Popen(  # noqa: S603
        command, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    return daemon, f"http://127.0.0.1:{port}"


async def _wait_for(pool: Any, ids: list[str], done: Callable[[str], bool]) -> dict[str, str]:
    """Each order's state once every one of them satisfies ``done`` (the daemon works apart)."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        states = await _states(pool, ids)
        if len(states) == len(ids) and all(done(s) for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise OrderdError("the daemon did not finish the demo's orders in time")
        await asyncio.sleep(0.1)  # polling the daemon's progress, bounded above


async def _states(pool: Any, ids: list[str]) -> dict[str, str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, state FROM orders WHERE id = ANY($1::text[])", ids)
    return {r["id"]: r["state"] for r in rows}


def _counted(values: Any) -> str:
    counts = Counter(values)
    return ", ".join(f"{count} {value}" for value, count in counts.most_common())
