"""The leases of running turns are renewed together while the turns run, in real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio as aioredis

from actors.order.actor import OrderTurns, Outcome
from actors.order.behaviour import Rules
from actors.order.messages import OrderPaid
from actors.order.outbox import CustomerMessages
from actors.order.types import Customer, Line, NormalizedOrder
from actors.stock import Stock
from adapters.postgres.orders import PostgresOrders
from adapters.postgres.pool import create_pool
from adapters.redis.leases import Leases
from adapters.redis.reminders import RedisSchedule
from adapters.stock.allocator import Allocator
from daemon.settings import Settings
from daemon.shipping import message_settings
from tests.conftest import POSTGRES_DSN, Clock, add_products, runtime_keys

LEASE_MS = 300
BOUND_S = 20.0


def paid(order_id: str) -> OrderPaid:
    order = NormalizedOrder(
        id=order_id,
        platform="shopify",
        external_id=order_id.removeprefix("ord_"),
        currency="EUR",
        customer=Customer(email=f"{order_id}@example.com"),
        lines=(Line(sku="A", quantity=1),),
    )
    return OrderPaid(order_id=order_id, order=order, received_at=datetime.now(UTC))


class Held:
    """The allocator, holding each reservation until the test lets it go on."""

    def __init__(self, allocator: Allocator, expected: int) -> None:
        self._allocator = allocator
        self._expected = expected
        self.arrived: list[str] = []
        self.all_arrived = asyncio.Event()
        self.go_on = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._allocator, name)

    async def reserve(self, order_id: str, *args: Any, **kwargs: Any) -> Any:
        self.arrived.append(order_id)
        if len(self.arrived) == self._expected:
            self.all_arrived.set()
        await self.go_on.wait()
        return await self._allocator.reserve(order_id, *args, **kwargs)


async def test_the_leases_of_turns_running_together_are_renewed_in_one_call_while_they_run(
    pg: Any,
    pg_schema_name: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    make_allocator: Callable[..., Awaitable[Allocator]],
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await add_products(pg, "A")
    held = Held(await make_allocator(), expected=2)
    calls: list[list[str]] = []
    both_renewed = asyncio.Event()
    renew = Leases.renew

    async def recorded(self: Leases, leases: Sequence[tuple[str, str]]) -> list[bool]:
        kept = await renew(self, leases)
        calls.append(sorted(order_id for order_id, _ in leases))
        if calls[-1] == ["ord_1", "ord_2"] and all(kept):
            both_renewed.set()
        return kept

    monkeypatch.setattr(Leases, "renew", recorded)
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=4)
    keys = runtime_keys(redis_prefix)
    turns = OrderTurns(
        orders=PostgresOrders(pool, held.epochs),
        leases=Leases(redis_client, keys, lease_ms=LEASE_MS),
        schedule=RedisSchedule(redis_client, keys),
        stock=cast(Stock, held),
        rules=Rules(),
        clock=clock,
        messages=CustomerMessages(
            settings=msgspec.structs.replace(message_settings(settings), email_enabled=True),
            feedback_secret=lambda: "secret",
        ),
    )
    try:
        running = asyncio.gather(
            turns.apply("ord_1", 1, paid("ord_1")), turns.apply("ord_2", 1, paid("ord_2"))
        )
        try:
            await asyncio.wait_for(held.all_arrived.wait(), BOUND_S)
            # Held past two leases' time, both turns keep their orders: renewed together.
            await asyncio.wait_for(both_renewed.wait(), BOUND_S)
            loop = asyncio.get_running_loop()
            until = loop.time() + 2 * LEASE_MS / 1000
            while loop.time() < until:
                await asyncio.wait_for(both_renewed.wait(), BOUND_S)
                both_renewed.clear()
            other = OrderTurns(
                orders=PostgresOrders(pool, held.epochs),
                leases=Leases(redis_client, keys, lease_ms=30_000),
                schedule=RedisSchedule(redis_client, keys),
                stock=cast(Stock, held),
                rules=Rules(),
                clock=clock,
            )
            assert await other.apply("ord_1", 1, paid("ord_1")) is Outcome.BUSY
        finally:
            held.go_on.set()
        assert list(await asyncio.wait_for(running, BOUND_S)) == [Outcome.APPLIED] * 2
        await turns.drain()
    finally:
        await pool.close()
    assert calls
    assert all(call == ["ord_1", "ord_2"] for call in calls)
    keys = runtime_keys(redis_prefix)
    # Freed once the turns ended ("~" and the token of the turn that held it).
    for order_id in ("ord_1", "ord_2"):
        freed = await redis_client.get(keys.lease(order_id))
        assert isinstance(freed, bytes)
        assert freed.startswith(b"~")
