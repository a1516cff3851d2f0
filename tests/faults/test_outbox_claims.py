"""Claims on customer messages: processes whose scaled clocks disagree, and senders that die
mid-send. Real PostgreSQL, a real SMTP server (aiosmtpd) and real ``orderd run`` processes.

A message may go twice only when its sender died while it was on its way: claimed and not
yet recorded as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import redis.asyncio as aioredis

from actors.mail import Mail
from actors.notifier import NotifierSettings, Outbox
from actors.notify.model import Notifier, Outgoing, Sent
from actors.ports.outboxes import QueuedNotification
from adapters.notify.smtp import SmtpNotifier, message_id_for
from adapters.notify.templates import Templates
from adapters.postgres import notifications
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.notifications import (
    PostgresNotifications,
    PostgresNotificationSettling,
)
from adapters.postgres.pool import create_pool
from adapters.postgres.writes import Writes
from adapters.redis.streams import Streams
from tests.conftest import POSTGRES_DSN, add_products, runtime_keys
from tests.integration.daemon_harness import (
    SmtpSink,
    eventually,
    generic_body,
    generic_headers,
    request,
)

DOMAIN = "shop.example"
DAY_PER_SECOND = 86400.0
# The longest the server holds a message before it answers anyway.
HOLD_S = 30.0
CONTEXT = {
    "store_name": "Example Goods",
    "customer_name": "Ada",
    "carrier": "UPS",
    "service": "Ground",
    "tracking_number": "1Z999AA10123456784",
    "tracking_url": "https://track.example/1Z999AA10123456784",
    "estimated_delivery": "Friday 14 March",
}

MakeOutbox = Callable[..., Awaitable[Outbox]]


class HoldingSink(SmtpSink):
    """The test SMTP server, able to keep a message and not answer for it until released:
    the server has the message, and its sender has not heard so (it is mid-send)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: Callable[[EmailMessage], bool] = lambda message: False
        self.held: list[EmailMessage] = []
        self._released = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        message = self.messages[-1]  # kept just now, with no await in between
        if self.hold(message):
            self.held.append(message)
            # Waited for in a thread, so the server goes on with other senders meanwhile.
            await asyncio.get_running_loop().run_in_executor(None, self._released.wait, HOLD_S)
        return answer

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> HoldingSink:
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        super().__exit__(*exc)

    def copies(self) -> Counter[str]:
        """How often each Message-ID arrived."""
        return Counter(str(m["Message-ID"]) for m in self.messages)

    def from_sender(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["From"])]


@pytest.fixture
def sink() -> Iterator[HoldingSink]:
    with HoldingSink() as server:
        yield server


def started_at(start: float, scale: float) -> Callable[[], float]:
    """The scaled clock of a process started at ``start`` (as ``daemon.run.scaled`` makes
    it): two processes started apart disagree by the gap times the scale."""
    return lambda: start + (time.time() - start) * scale


@pytest.fixture
async def make_outbox(
    pg: Any,
    pg_schema_name: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    sink: HoldingSink,
) -> AsyncIterator[MakeOutbox]:
    """Outboxes as separate processes would have them: each with its pool, its clock and
    its SMTP sender (its own From address, the same Message-ID domain), unless given
    another email sender."""
    made: list[tuple[Outbox, Any]] = []
    templates = Templates()

    async def make(
        *,
        sender: str,
        clock: Callable[[], float] = time.time,
        claim_s: float = 120.0,
        notifications: Callable[[Any], PostgresNotifications] = PostgresNotifications,
        email: Notifier | None = None,
    ) -> Outbox:
        pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=8)
        smtp = email or SmtpNotifier(
            host="127.0.0.1",
            port=sink.port,
            tls="none",
            sender=sender,
            templates=templates,
            timeout_s=HOLD_S * 2,  # a held message is waited for, not given up
            message_id_domain=DOMAIN,
            # A connection for each message a test keeps on its way at once.
            connections=10,
        )
        outbox = Outbox(
            notifications=notifications(pool),
            mail=Mail(PostgresMailbox(pool), Streams(redis_client, runtime_keys(redis_prefix))),
            senders={"email": smtp},
            settings=NotifierSettings(claim_s=claim_s),
            clock=clock,
        )
        made.append((outbox, pool))
        return outbox

    yield make
    for outbox, pool in made:
        await outbox.close()
        await pool.close()


async def queue(
    pg: Any, count: int, *, first: int = 0, to: Callable[[int], str] | None = None
) -> None:
    """Queue ``count`` shipping confirmations, one per order, due now."""
    numbers = range(first, first + count)
    await pg.executemany("INSERT INTO orders (id) VALUES ($1)", [(f"ord_{n}",) for n in numbers])
    writes = Writes()
    notifications.add_queued(
        writes,
        [
            QueuedNotification(
                order_id=f"ord_{n}",
                shipment_id=None,
                episode=0,
                message=Outgoing(
                    idempotency_key=f"ord_{n}:shipping_confirmation",
                    kind="shipping_confirmation",
                    channel="email",
                    to=to(n) if to else f"customer{n}@example.com",
                    context={**CONTEXT, "order_name": f"#{n}"},
                    items=(("MUG-BLK", "Mug", 1),),
                ),
                due_at=datetime.now(UTC),
            )
            for n in numbers
        ],
    )
    await writes.execute(pg)


def message_id(n: int) -> str:
    return message_id_for(f"ord_{n}:shipping_confirmation", DOMAIN)


async def send_until_done(outbox: Outbox, within_s: float = 20.0) -> None:
    """Send until the outbox finds nothing more to send."""
    deadline = time.monotonic() + within_s
    while await outbox.send_due():
        assert time.monotonic() < deadline, "the outbox kept finding messages to send"


async def statuses(pg: Any) -> Counter[str]:
    rows = await pg.fetch("SELECT status FROM notifications")
    return Counter(r["status"] for r in rows)


async def test_processes_whose_scaled_clocks_are_days_apart_send_each_message_once(
    pg: Any, sink: HoldingSink, make_outbox: MakeOutbox
) -> None:
    await queue(pg, 30)
    now = time.time()
    # A day a second, started two seconds apart: the first runs two days ahead.
    ahead = await make_outbox(sender="a@shop.example", clock=started_at(now - 2, DAY_PER_SECOND))
    behind = await make_outbox(sender="b@shop.example", clock=started_at(now, DAY_PER_SECOND))

    # The second's messages reach the server, which answers only once the first had its go.
    sink.hold = lambda message: "b@shop.example" in str(message["From"])
    sending = asyncio.create_task(behind.send_due(limit=10))

    async def behind_mid_send() -> bool:
        return len(sink.from_sender("b@shop.example")) == 10

    await eventually(behind_mid_send, what="ten messages on their way from the second")
    await send_until_done(ahead)
    sink.release()
    assert await sending == 10

    # And both at once, as two daemons run, on a second lot.
    await queue(pg, 40, first=30)
    stopping = asyncio.Event()
    running = [asyncio.create_task(o.run(stopping, every_s=0.05)) for o in (ahead, behind)]
    try:

        async def all_sent() -> bool:
            return (await statuses(pg))["sent"] == 70

        await eventually(all_sent, what="every message to be sent")
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*running), 10)

    copies = sink.copies()
    assert sorted(copies) == sorted(message_id(n) for n in range(70))
    assert {id_: count for id_, count in copies.items() if count > 1} == {}
    assert len(sink.from_sender("b@shop.example")) >= 10
    recorded = await pg.fetch("SELECT message_id FROM notifications WHERE status = 'sent'")
    assert sorted(r["message_id"] for r in recorded) == sorted(copies)


async def test_only_the_message_on_its_way_when_the_sender_dies_goes_again(
    pg: Any, sink: HoldingSink, make_outbox: MakeOutbox
) -> None:
    victim = 4
    await queue(pg, 10, to=lambda n: "held@example.com" if n == victim else f"c{n}@example.com")
    # Long enough that the held send is not cut off before the sender dies.
    claim_s = 6.0
    first = await make_outbox(sender="a@shop.example", claim_s=claim_s)
    sink.hold = lambda message: message["To"] == "held@example.com"
    crashing = asyncio.create_task(first.send_due())

    async def others_recorded() -> bool:
        taken = len(sink.messages) == 10 and len(sink.held) == 1
        return taken and (await statuses(pg))["sent"] == 9

    # What the server took and answered is recorded though another send is still on its way.
    await eventually(
        others_recorded, within_s=claim_s / 2, what="the answered messages to be recorded"
    )
    crashing.cancel()  # the process dies: nothing more is recorded
    with contextlib.suppress(asyncio.CancelledError):
        await crashing
    in_flight = await pg.fetch(
        "SELECT order_id FROM notifications WHERE status = 'sending' AND claimed_until > now()"
    )
    assert [r["order_id"] for r in in_flight] == [f"ord_{victim}"]
    sink.release()

    # A process started after the crash sends it again once the dead one's claim runs out,
    # by real time.
    second = await make_outbox(sender="a@shop.example")

    async def resent() -> bool:
        await second.send_due()
        return (await statuses(pg))["sent"] == 10

    await eventually(resent, within_s=claim_s * 3, what="the message in flight to go again")
    copies = sink.copies()
    assert copies == {message_id(n): 2 if n == victim else 1 for n in range(10)}
    attempts = await pg.fetchval(
        "SELECT attempts FROM notifications WHERE order_id = $1", f"ord_{victim}"
    )
    assert attempts == 2


class Instant:
    """An email sender whose server takes every message at once, without I/O: the
    results of all the messages sent together come together."""

    channel = "email"

    async def send(self, message: Outgoing) -> Sent:
        return Sent(message_id_for(message.idempotency_key, DOMAIN))

    async def close(self) -> None:
        pass


class Refusing(PostgresNotificationSettling):
    """Recording in a transaction, unable to record the message of row ``refused`` sent."""

    def __init__(self, conn: Any, refused: int | None) -> None:
        super().__init__(conn)
        self._refused = refused

    async def sent(self, delivered: Sequence[tuple[int, str, datetime]]) -> set[int]:
        if any(row_id == self._refused for row_id, _, _ in delivered):
            raise RuntimeError(f"row {self._refused} cannot be recorded")
        return await super().sent(delivered)


class Counted(PostgresNotifications):
    """The outbox, counting the transactions results are recorded in."""

    def __init__(self, pool: Any, refused: int | None = None) -> None:
        super().__init__(pool)
        self._own_pool = pool
        self._refused = refused
        self.transactions = 0

    @contextlib.asynccontextmanager
    async def settling(self) -> AsyncIterator[Refusing]:
        self.transactions += 1
        async with self._own_pool.acquire() as conn, conn.transaction():
            yield Refusing(conn, self._refused)


async def test_results_that_come_together_are_recorded_in_one_transaction(
    pg: Any, make_outbox: MakeOutbox
) -> None:
    await queue(pg, 10)
    counted: list[Counted] = []

    def counting(pool: Any) -> Counted:
        counted.append(Counted(pool))
        return counted[-1]

    outbox = await make_outbox(sender="a@shop.example", notifications=counting, email=Instant())

    assert await outbox.send_due() == 10
    assert await statuses(pg) == Counter(sent=10)
    assert counted[0].transactions == 1


async def test_messages_recorded_sent_once_keep_their_first_message_id(pg: Any) -> None:
    await queue(pg, 3)
    ids = [r["id"] for r in await pg.fetch("SELECT id FROM notifications ORDER BY order_id")]
    at = datetime.now(UTC)
    async with pg.transaction():
        first = await PostgresNotificationSettling(pg).sent(
            [(ids[0], "<a@x>", at), (ids[1], "<b@x>", at)]
        )
    assert first == {ids[0], ids[1]}
    async with pg.transaction():
        # A sender that took the first over after its claim ran out also sent it.
        again = await PostgresNotificationSettling(pg).sent(
            [(ids[0], "<c@x>", at), (ids[2], "<d@x>", at)]
        )
    assert again == {ids[2]}
    rows = await pg.fetch("SELECT status, message_id FROM notifications ORDER BY order_id")
    assert [tuple(r) for r in rows] == [("sent", "<a@x>"), ("sent", "<b@x>"), ("sent", "<d@x>")]


async def test_a_result_that_cannot_be_recorded_keeps_none_that_came_with_it_from_it(
    pg: Any, make_outbox: MakeOutbox
) -> None:
    await queue(pg, 10)
    refused = await pg.fetchval("SELECT id FROM notifications WHERE order_id = 'ord_4'")
    outbox = await make_outbox(
        sender="a@shop.example",
        # It is tried again until its claim runs out: soon.
        claim_s=2.0,
        notifications=lambda pool: Counted(pool, refused),
        email=Instant(),
    )

    assert await outbox.send_due() == 10

    # The nine are recorded; the one goes again when its claim runs out.
    assert await statuses(pg) == Counter(sent=9, sending=1)
    left = await pg.fetchval("SELECT order_id FROM notifications WHERE status = 'sending'")
    assert left == "ord_4"


SKUS = ("A-1", "B-1")


def post_orders(url: str, refs: list[str]) -> list[int]:
    def post(ref: str) -> int:
        body = generic_body(ref, [(SKUS[0], 1), (SKUS[1], 1)])
        return request(f"{url}/webhooks/orders", body, generic_headers(body))[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, refs))


@pytest.mark.timeout(150)
async def test_kill_9_mid_flood_sends_again_only_the_message_then_on_its_way(
    make_daemon: Callable[..., Any], pg: Any, run_orderd: Any
) -> None:
    await add_products(pg, *SKUS)
    for sku in SKUS:
        assert run_orderd("stock", "set", sku, "500").returncode == 0
    orders = [f"F{n}" for n in range(40)]
    claim_s = 10.0
    env = {
        "ORDERD_CLOCK__SCALE": str(DAY_PER_SECOND),
        "ORDERD_WMS__SANDBOX_DELAY_S": "0",
        # No messages after the delivery: a completed order has been sent all of its.
        "ORDERD_NOTIFY__DELIVERED_MESSAGE": "false",
        "ORDERD_NOTIFY__REVIEW_AFTER_DAYS": "0",
        "ORDERD_NOTIFY__REPEAT_AFTER_DAYS": "0",
        "ORDERD_NOTIFY__RESEND_AFTER_S": str(claim_s),
    }
    with HoldingSink() as sink:
        first = make_daemon("d1", **env, **sink.env())
        # The tenth message is kept by the server and not answered: mid-send at the kill.
        sink.hold = lambda message: len(sink.messages) == 10
        assert set(post_orders(first.url, orders)) == {202}

        async def only_held_in_flight() -> bool:
            if len(sink.held) != 1:
                return False
            rows = await pg.fetch("SELECT status, message_id FROM notifications")
            sending = [r for r in rows if r["status"] == "sending"]
            recorded = {r["message_id"] for r in rows if r["status"] == "sent"}
            answered = {str(m["Message-ID"]) for m in sink.messages} - {
                str(sink.held[0]["Message-ID"])
            }
            return len(sending) == 1 and answered <= recorded

        await eventually(
            only_held_in_flight,
            within_s=claim_s / 2,
            what="every answered message recorded while the held one is on its way",
        )
        first.kill()
        assert first.process is not None
        assert first.process.returncode == -9
        held = str(sink.held[0]["Message-ID"])
        domain = held.strip("<>").rpartition("@")[2]
        at_kill = await pg.fetch(
            "SELECT idempotency_key FROM notifications WHERE status = 'sending'"
        )
        assert {message_id_for(r["idempotency_key"], domain) for r in at_kill} == {held}
        sink.release()

        make_daemon("d2", **env, **sink.env())

        async def all_sent() -> bool:
            done = await pg.fetchval("SELECT count(*) FROM orders WHERE state = 'completed'")
            left = await pg.fetchval("SELECT count(*) FROM notifications WHERE status <> 'sent'")
            return bool(done == len(orders) and left == 0)

        await eventually(all_sent, within_s=60, what="every order completed, every message sent")
        copies = sink.copies()
    recorded = await pg.fetch("SELECT message_id FROM notifications")
    assert sorted(copies) == sorted(r["message_id"] for r in recorded)
    # The held message, which its sender never heard was taken, went again; no other did.
    assert {id_: count for id_, count in copies.items() if count > 1} == {held: 2}
