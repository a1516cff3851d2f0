"""Random interleavings of reserve, release, commit and adjust from concurrent tasks.

After every step: per sku 0 <= reserved <= on_hand, reserved equals what the orders hold,
backordered equals what the orders wait for, and Redis equals what the ledger implies.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from adapters.postgres import schema
from adapters.postgres.pool import connection, create_pool
from adapters.redis.scripts import BelowReserved, NotHeld
from adapters.stock.allocator import Allocator
from adapters.stock.model import WarehouseConfig
from tests.conftest import POSTGRES_DSN, REDIS_URL, add_products

SKUS = ("A", "B", "C")
EXPECTED = (NotHeld, BelowReserved)  # refusals that concurrency makes legitimate

line = st.tuples(st.sampled_from(SKUS), st.integers(1, 3))
reserve_op = st.tuples(
    st.just("reserve"),
    st.lists(line, min_size=1, max_size=3),
    st.sampled_from(["wait_all", "ship_available"]),
    st.integers(0, 9),
)
release_op = st.tuples(st.just("release"), st.integers(0, 50), st.booleans())
commit_op = st.tuples(st.just("commit"), st.integers(0, 50))
adjust_op = st.tuples(
    st.just("adjust"), st.sampled_from(SKUS), st.integers(-3, 8).filter(lambda n: n != 0)
)
operation = st.one_of(reserve_op, release_op, commit_op, adjust_op)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def make_machine(schema_name: str) -> type[RuleBasedStateMachine]:
    warehouses = itertools.count()

    class AllocationMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.code = f"p{next(warehouses)}-{uuid.uuid4().hex[:6]}"
            self.prefix = f"orderd-prop-{schema_name}:"
            self.redis = aioredis.Redis.from_url(REDIS_URL)
            self.pool = self.run(create_pool(POSTGRES_DSN, schema_name, min_size=1, max_size=4))
            self.allocator = Allocator(
                self.redis, self.pool, prefix=self.prefix, warehouses=[WarehouseConfig(self.code)]
            )
            self.run(self.allocator.start())
            self.orders: list[str] = []
            self.ids = itertools.count()

        def run(self, step: Awaitable[Any]) -> Any:
            return self.loop.run_until_complete(step)

        def teardown(self) -> None:
            keys = self.allocator.keys(self.code)

            async def close() -> None:
                await self.allocator.drain()
                stale = [k async for k in self.redis.scan_iter(match=keys.pattern, count=1000)]
                if stale:
                    await self.redis.delete(*stale)
                await self.redis.aclose()
                await self.pool.close()

            self.run(close())
            self.loop.close()

        async def held(self, order_id: str) -> list[tuple[str, int]]:
            reserved, _ = await self.allocator.holding(order_id, self.code)
            return sorted(reserved.items())

        async def apply(self, op: tuple[Any, ...]) -> None:
            n = next(self.ids)
            kind = op[0]
            if kind == "reserve":
                order_id = f"o{n}"
                self.orders.append(order_id)
                await self.allocator.reserve(order_id, op[1], policy=op[2], priority=op[3])
            elif kind == "adjust":
                await self.allocator.adjust(op[1], op[2], movement_id=f"m{n}")
            elif self.orders:
                order_id = self.orders[op[1] % len(self.orders)]
                held = await self.held(order_id)
                if kind == "release" and op[2]:
                    await self.allocator.release(order_id, f"cancel{n}")
                elif kind == "release" and held:
                    await self.allocator.release(order_id, f"short{n}", held[:1])
                elif kind == "commit" and held:
                    await self.allocator.commit(order_id, f"ship{n}", held)

        @rule(ops=st.lists(operation, min_size=1, max_size=12))
        def concurrently(self, ops: list[tuple[Any, ...]]) -> None:
            async def together() -> list[Any]:
                return await asyncio.gather(*(self.apply(op) for op in ops), return_exceptions=True)

            for outcome in self.run(together()):
                if isinstance(outcome, BaseException) and not isinstance(outcome, EXPECTED):
                    raise outcome

        @rule(index=st.integers(0, 50))
        def a_repeated_reservation_changes_nothing(self, index: int) -> None:
            if not self.orders:
                return
            order_id = self.orders[index % len(self.orders)]
            before = self.run(self.allocator.holding(order_id, self.code))
            result = self.run(self.allocator.reserve(order_id, [("A", 1)]))
            assert result.replay
            assert self.run(self.allocator.holding(order_id, self.code)) == before

        @invariant()
        def stock_adds_up_and_matches_the_ledger(self) -> None:
            self.run(self.check())

        async def check(self) -> None:
            held = {sku: 0 for sku in SKUS}
            waiting = {sku: 0 for sku in SKUS}
            for order_id in self.orders:
                reserved, waits = await self.allocator.holding(order_id, self.code)
                for sku, quantity in reserved.items():
                    held[sku] += quantity
                for sku, quantity in waits.items():
                    waiting[sku] += quantity
            for sku in SKUS:
                level = await self.allocator.stock(sku, self.code)
                assert 0 <= level.reserved <= level.on_hand
                assert level.available == level.on_hand - level.reserved
                assert level.reserved == held[sku]
                assert level.backordered == waiting[sku]
            assert await self.allocator.reconcile(self.code) == []

    return AllocationMachine


def test_random_concurrent_stock_operations_keep_every_invariant(unique_name: str) -> None:
    async def setup() -> None:
        async with connection(POSTGRES_DSN, unique_name) as conn:
            await schema.migrate(conn, unique_name)
            await add_products(conn, *SKUS)

    async def cleanup() -> None:
        async with connection(POSTGRES_DSN, "public") as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')

    asyncio.run(setup())
    try:
        run_state_machine_as_test(
            make_machine(unique_name),
            settings=settings(
                max_examples=30,
                stateful_step_count=10,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        asyncio.run(cleanup())
