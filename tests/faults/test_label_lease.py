"""A label purchase slower than an order's lease, against a local Shippo.

Real PostgreSQL and Redis; each :class:`OrderTurns` stands for one orderd process, with a
pool, clients and carrier adapter of its own. The carrier server holds a call until the
test lets it answer, as a slow carrier would; meanwhile another process tries the same
message, or the turn loses its lease, or Redis goes away. Whatever happens, at most one
label purchase reaches the carrier.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from actors.order.actor import LeaseLost, OrderTurns, Outcome
from actors.order.effects import Shipping
from actors.order.messages import (
    BuyLabel,
    Message,
    OrderPaid,
    Packed,
    Picked,
    decode_message,
)
from actors.order.outbox import CustomerMessages
from actors.order.types import Address, Customer, Line, NormalizedOrder
from actors.ports.mail import Posted
from actors.ports.turns import Taken, Turn
from adapters.carriers.shippo import Shippo
from adapters.label_files import LabelFiles
from adapters.outages import is_outage
from adapters.postgres import mailbox
from adapters.postgres.catalog import PostgresCatalog
from adapters.postgres.orders import PostgresOrders
from adapters.postgres.pool import create_pool
from adapters.redis.leases import Leases
from adapters.redis.reminders import RedisSchedule
from adapters.stock.allocator import Allocator
from daemon.settings import Settings
from daemon.shipping import message_settings, rules
from tests.carrier_servers import ShippoServer
from tests.conftest import POSTGRES_DSN, REDIS_URL, Clock, RedisServer, add_products, runtime_keys

LEASE_MS = 1200
LEASE_S = LEASE_MS / 1000
BOUND_S = 20.0  # no single step of these tests waits longer than this

ORDER = "ord_lease1"
SHIPMENT = f"{ORDER}-1"
SKU = "MUG-BLK"
WAREHOUSE = Address(
    name="Dock 4", line1="100 Freight Way", city="Reno", region="NV", postal_code="89501",
    country="US",
)  # fmt: skip
CUSTOMER = Address(
    name="Ada Buyer", line1="5 Main St", city="Austin", region="TX", postal_code="78701",
    country="US",
)  # fmt: skip


class SlowShippo(ShippoServer):
    """Shippo holding the first call of one kind (rating a parcel, or buying a label)
    until the test sets ``answer``: ``arrived`` is set when that call has come in."""

    def __init__(self, held: Literal["rates", "purchase"]) -> None:
        super().__init__()
        self.held = held
        self.arrived = asyncio.Event()
        self.answer = asyncio.Event()

    async def _hold(self) -> None:
        if not self.arrived.is_set():
            self.arrived.set()
            await self.answer.wait()

    async def _create_shipment(self, request: web.Request) -> web.StreamResponse:
        if self.held == "rates":
            await self._hold()
        return await super()._create_shipment(request)

    async def _create_transaction(self, request: web.Request) -> web.StreamResponse:
        if self.held == "purchase":
            await self._hold()
        return await super()._create_transaction(request)


def purchases_asked(server: ShippoServer) -> int:
    """How many label purchases reached the carrier, answered or not."""
    return sum(1 for m, path, _ in server.requests if (m, path) == ("POST", "/transactions/"))


def label_calls(server: ShippoServer) -> list[str]:
    return [f"{m} {path}" for m, path, _ in server.requests if path.startswith("/transactions/")]


@dataclass
class Process:
    """One orderd process's order turns, and the messages its turns told their orders."""

    turns: OrderTurns
    told: list[Posted]


class MakeProcess(Protocol):
    def __call__(
        self, server: ShippoServer, *, redis_url: str = REDIS_URL
    ) -> Awaitable[Process]: ...


@pytest.fixture
async def make_process(
    pg: Any,
    pg_schema_name: str,
    redis_prefix: str,
    make_allocator: Callable[..., Awaitable[Allocator]],
    settings: Settings,
    clock: Clock,
    tmp_path: Path,
) -> AsyncIterator[MakeProcess]:
    """Processes over this test's schema and key prefix; the leases live in the Redis at
    ``redis_url``, the stock always in the shared one."""
    await add_products(pg, SKU)
    stock = await make_allocator()
    await stock.adjust(SKU, 5, movement_id="count", mode="set")
    closing: list[Callable[[], Awaitable[object]]] = []

    async def make(server: ShippoServer, *, redis_url: str = REDIS_URL) -> Process:
        stock_client = aioredis.Redis.from_url(REDIS_URL)
        lease_client = aioredis.Redis.from_url(redis_url)
        pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=4)
        shipping = Shipping(
            catalog=PostgresCatalog(pool),
            carriers={"shippo": Shippo(api_key=server.api_key, base_url=server.base_url)},
            ship_from={"main": WAREHOUSE},
            labels=LabelFiles(tmp_path / "labels"),
            wms_adapter="sandbox",
        )
        closing.extend([shipping.close, pool.close, lease_client.aclose, stock_client.aclose])
        messages = CustomerMessages(
            settings=msgspec.structs.replace(message_settings(settings), email_enabled=True),
            feedback_secret=lambda: "secret",
        )
        told: list[Posted] = []

        async def record(posted: Sequence[Posted], saved: Sequence[Turn]) -> None:
            told.extend(posted)

        keys = runtime_keys(redis_prefix)
        stock = await make_allocator(redis=stock_client)
        turns = OrderTurns(
            orders=PostgresOrders(pool, stock.epochs),
            leases=Leases(lease_client, keys, lease_ms=LEASE_MS),
            schedule=RedisSchedule(lease_client, keys),
            stock=stock,
            rules=rules(settings),
            clock=clock,
            shipping=shipping,
            messages=messages,
            on_saved=record,
        )
        return Process(turns, told)

    yield make
    for close in reversed(closing):
        await close()


async def post(pg: Any, message: Message) -> int:
    """Store the message as intake would; its number in the order's mailbox."""
    async with pg.transaction():
        [posted] = await mailbox.post(pg, [message])
    return posted.seq


async def applied(process: Process, pg: Any, message: Message) -> None:
    seq = await post(pg, message)
    outcome = await asyncio.wait_for(process.turns.apply(ORDER, seq, message), BOUND_S)
    assert outcome is Outcome.APPLIED


def paid(clock: Clock) -> OrderPaid:
    now = datetime.fromtimestamp(clock.now, UTC)
    order = NormalizedOrder(
        id=ORDER,
        platform="shopify",
        external_id="1001",
        name="#1001",
        paid_at=now,
        currency="USD",
        customer=Customer(email="ada@example.com"),
        shipping_address=CUSTOMER,
        total=Decimal("40"),
        lines=(Line(sku=SKU, quantity=1, name="Mug"),),
    )
    return OrderPaid(order_id=ORDER, order=order, received_at=now)


PACKED = Packed(order_id=ORDER, shipment_id=SHIPMENT, items=((SKU, 1),), weight_g=900)


async def picked(process: Process, pg: Any, clock: Clock) -> None:
    """The order paid and its shipment picked: packing it is next."""
    await applied(process, pg, paid(clock))
    await applied(process, pg, Picked(order_id=ORDER, shipment_id=SHIPMENT))


def label_to_buy(process: Process) -> tuple[int, BuyLabel]:
    """The message the order told itself once its carrier was chosen, and its number."""
    [buy] = [(p.seq, m) for p in process.told if isinstance(m := decode_message(p.body), BuyLabel)]
    return buy


async def ready_to_buy(process: Process, pg: Any, clock: Clock) -> tuple[int, BuyLabel]:
    await picked(process, pg, clock)
    await applied(process, pg, PACKED)
    return label_to_buy(process)


async def state(pg: Any) -> str:
    found: str = await pg.fetchval("SELECT state FROM orders WHERE id = $1", ORDER)
    return found


async def test_a_label_purchase_slower_than_the_lease_is_made_once_while_another_process_tries(
    make_process: MakeProcess,
    pg: Any,
    clock: Clock,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    async with SlowShippo(held="purchase") as server:
        first, second = await make_process(server), await make_process(server)
        seq, buy = await ready_to_buy(first, pg, clock)
        buying = asyncio.create_task(first.turns.apply(ORDER, seq, buy))
        tries: list[Outcome] = []
        try:
            await asyncio.wait_for(server.arrived.wait(), BOUND_S)
            # The carrier takes three leases' time to answer; meanwhile the other process
            # tries the message again and again, as its consumer would.
            loop = asyncio.get_running_loop()
            until = loop.time() + 3 * LEASE_S
            while loop.time() < until:
                outcome = await asyncio.wait_for(second.turns.apply(ORDER, seq, buy), BOUND_S)
                tries.append(outcome)
                if outcome is not Outcome.BUSY:
                    break
                await asyncio.sleep(LEASE_S / 10)  # the other consumer's retry interval
        finally:
            server.answer.set()
        [first_outcome] = await asyncio.wait_for(
            asyncio.gather(buying, return_exceptions=True), BOUND_S
        )

        assert purchases_asked(server) == 1
        assert server.purchases == 1
        assert first_outcome is Outcome.APPLIED
        assert set(tries) == {Outcome.BUSY}
        # Tried again once the first process is done (its lease freed), the message finds
        # the label bought.
        await first.turns.drain()
        assert await second.turns.apply(ORDER, seq, buy) is Outcome.REPEAT
        await second.turns.drain()
    assert await state(pg) == "shipped"
    freed = await redis_client.get(runtime_keys(redis_prefix).lease(ORDER))
    assert isinstance(freed, bytes)
    assert freed.startswith(b"~")


async def test_a_turn_that_lost_its_lease_stops_before_buying_and_buys_once_when_tried_again(
    make_process: MakeProcess,
    pg: Any,
    clock: Clock,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease = runtime_keys(redis_prefix).lease(ORDER)
    other = "f" * 16
    take = Leases.take
    losing = False

    async def then_lost(self: Leases, wanted: Sequence[tuple[str, str]]) -> list[Taken]:
        taken = await take(self, wanted)
        if losing:
            # Right after it was taken, the lease ran out and another process took it.
            await redis_client.set(lease, other, px=60_000)
        return taken

    # In place before the process is made: its turns hold the method they take with.
    monkeypatch.setattr(Leases, "take", then_lost)
    async with ShippoServer() as server:
        process = await make_process(server)
        seq, buy = await ready_to_buy(process, pg, clock)
        losing = True
        with pytest.raises(LeaseLost, match="no longer holds its lease"):
            await asyncio.wait_for(process.turns.apply(ORDER, seq, buy), BOUND_S)
        assert label_calls(server) == []
        assert await redis_client.get(lease) == other.encode()  # the other's, left alone

        losing = False
        await redis_client.delete(lease)  # the other process is done with the order
        outcome = await asyncio.wait_for(process.turns.apply(ORDER, seq, buy), BOUND_S)
        assert outcome is Outcome.APPLIED
        assert server.purchases == 1
    assert await state(pg) == "shipped"


async def test_renewals_failing_while_redis_is_away_do_not_fail_a_turn_by_themselves(
    make_process: MakeProcess,
    pg: Any,
    clock: Clock,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = asyncio.Event()
    renew = Leases.renew

    async def watched(self: Leases, held: Sequence[tuple[str, str]]) -> list[bool]:
        try:
            return await renew(self, held)
        except RedisError:
            failed.set()
            raise

    async with SlowShippo(held="rates") as server:
        process = await make_process(server, redis_url=redis_server.url)
        await picked(process, pg, clock)
        monkeypatch.setattr(Leases, "renew", watched)
        seq = await post(pg, PACKED)
        packing = asyncio.create_task(process.turns.apply(ORDER, seq, PACKED))
        try:
            # The rates are asked for outside under the lease; then the leases' Redis goes.
            await asyncio.wait_for(server.arrived.wait(), BOUND_S)
            redis_server.stop()
            await asyncio.wait_for(failed.wait(), BOUND_S)
        finally:
            server.answer.set()
        assert await asyncio.wait_for(packing, BOUND_S) is Outcome.APPLIED
    assert await state(pg) == "packed"
    assert label_to_buy(process)[0] == seq + 1


async def test_a_turn_that_cannot_reach_redis_at_its_fence_buys_nothing_and_is_retried(
    make_process: MakeProcess,
    pg: Any,
    clock: Clock,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    take = Leases.take
    going = False

    async def then_away(self: Leases, wanted: Sequence[tuple[str, str]]) -> list[Taken]:
        taken = await take(self, wanted)
        if going:
            redis_server.stop()  # the leases' Redis goes while the turn runs
        return taken

    # In place before the process is made: its turns hold the method they take with.
    monkeypatch.setattr(Leases, "take", then_away)
    async with ShippoServer() as server:
        process = await make_process(server, redis_url=redis_server.url)
        seq, buy = await ready_to_buy(process, pg, clock)
        going = True
        with pytest.raises(LeaseLost, match="cannot confirm its lease") as lost:
            await asyncio.wait_for(process.turns.apply(ORDER, seq, buy), BOUND_S)
        # An outage: the runtime tries the message again without counting a delivery.
        assert is_outage(lost.value)
        assert label_calls(server) == []

        going = False
        redis_server.start()  # back, empty: no lease, no scripts
        outcome = await asyncio.wait_for(process.turns.apply(ORDER, seq, buy), BOUND_S)
        assert outcome is Outcome.APPLIED
        assert server.purchases == 1
    assert await state(pg) == "shipped"
