"""A batch of order turns is saved by one statement, all of it or none of it.

Real PostgreSQL and Redis: the turns run through :class:`OrderTurns` as in the daemon,
and what each saved turn wrote (its order row, events, ledger entry, backorder place and
customer message) is read back from the tables.
"""

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
from actors.order.messages import CancelRequested, OrderPaid
from actors.order.outbox import CustomerMessages
from actors.order.types import Customer, Line, NormalizedOrder
from actors.ports.turns import ConcurrentTurn, Turn
from actors.stock import StaleEpoch, Stock
from adapters.postgres import orders
from adapters.postgres.orders import PostgresOrders
from adapters.postgres.pool import connection, create_pool
from adapters.postgres.stock import ledger_transaction
from adapters.postgres.writes import Writes
from adapters.redis.leases import Leases
from adapters.redis.reminders import RedisSchedule
from adapters.stock.allocator import Allocator
from daemon.settings import Settings
from daemon.shipping import message_settings
from tests.conftest import POSTGRES_DSN, Clock, add_products, runtime_keys

MakeAllocator = Callable[..., Awaitable[Allocator]]


def paid(order_id: str, sku: str) -> OrderPaid:
    order = NormalizedOrder(
        id=order_id,
        platform="shopify",
        external_id=order_id.removeprefix("ord_"),
        name=f"#{order_id}",
        currency="EUR",
        customer=Customer(email=f"{order_id}@example.com"),
        lines=(Line(sku=sku, quantity=2),),
    )
    return OrderPaid(order_id=order_id, order=order, received_at=datetime.now(UTC))


class Meddling:
    """The allocator, with a hook run after an order's reservation and epochs that can
    be made to say Redis was rebuilt: what another process or a recovery would do."""

    def __init__(self, allocator: Allocator) -> None:
        self._allocator = allocator
        self.after_reserve: dict[str, Any] = {}
        self.rebuilt = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._allocator, name)

    async def reserve(self, order_id: str, *args: Any, **kwargs: Any) -> Any:
        reservation = await self._allocator.reserve(order_id, *args, **kwargs)
        hook = self.after_reserve.pop(order_id, None)
        if hook is not None:
            await hook()
        return reservation

    async def epochs(self, warehouses: Sequence[str]) -> dict[str, str | None]:
        current = await self._allocator.epochs(warehouses)
        if self.rebuilt:
            self.rebuilt = False
            return {warehouse: f"{epoch}-rebuilt" for warehouse, epoch in current.items()}
        return current


OnSaved = Callable[[Sequence[Any], Sequence[Turn]], Awaitable[None]]


@pytest.fixture
async def make_turns(
    pg: Any,
    pg_schema_name: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    make_allocator: MakeAllocator,
    settings: Settings,
    clock: Clock,
) -> Any:
    """Order turns as the daemon makes them (one allocator and pool), told after each
    save by ``on_saved`` if given."""
    await add_products(pg, "A", "B")
    allocator = Meddling(await make_allocator())
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=4)
    messages = CustomerMessages(
        settings=msgspec.structs.replace(message_settings(settings), email_enabled=True),
        feedback_secret=lambda: "secret",
    )
    keys = runtime_keys(redis_prefix)

    def make(on_saved: OnSaved | None = None) -> OrderTurns:
        return OrderTurns(
            orders=PostgresOrders(pool, allocator.epochs),
            leases=Leases(redis_client, keys, lease_ms=30_000),
            schedule=RedisSchedule(redis_client, keys),
            stock=cast(Stock, allocator),
            rules=Rules(),
            clock=clock,
            messages=messages,
            on_saved=on_saved,
        )

    try:
        yield make, allocator
    finally:
        await pool.close()


@pytest.fixture
def turns(make_turns: Any) -> Any:
    make, allocator = make_turns
    return make(), allocator


async def written(pg: Any, order_id: str) -> dict[str, int]:
    """How many rows of each kind the order has."""
    counts = {}
    tables = ("orders", "order_lines", "order_events", "order_event_turns", "stock_ledger",
              "notifications")  # fmt: skip
    for table in tables:
        column = "id" if table == "orders" else "order_id"
        counts[table] = await pg.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1", order_id
        )
    counts["backorder_queue"] = await pg.fetchval(
        "SELECT count(*) FROM backorder_queue WHERE order_id = $1", order_id
    )
    return counts


EVERYTHING = {
    "orders": 1, "order_lines": 1, "order_events": 3, "order_event_turns": 1,
    "stock_ledger": 1, "notifications": 1, "backorder_queue": 1,
}  # fmt: skip


async def test_a_batch_of_backordered_orders_writes_every_table_in_one_go(
    turns: Any, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_turns, _ = turns
    batches: list[list[str]] = []
    prepare_turns = orders.prepare_turns

    async def recorded(batch: Sequence[Turn]) -> Any:
        batches.append([t.order_id for t in batch])
        return await prepare_turns(batch)

    monkeypatch.setattr(orders, "prepare_turns", recorded)
    outcomes = await asyncio.gather(
        order_turns.apply("ord_1", 1, paid("ord_1", "A")),
        order_turns.apply("ord_2", 1, paid("ord_2", "B")),
    )
    assert list(outcomes) == [Outcome.APPLIED, Outcome.APPLIED]
    assert batches == [["ord_1", "ord_2"]]
    for order_id in ("ord_1", "ord_2"):
        assert await written(pg, order_id) == EVERYTHING
    # A later turn of a known order numbers its events after the ones saved.
    await order_turns.give_up("ord_1", 2, "message 2 dead-lettered")
    seqs = await pg.fetch(
        "SELECT seq, type FROM order_events WHERE order_id = 'ord_1' ORDER BY seq"
    )
    assert [r["seq"] for r in seqs] == [1, 2, 3, 4]
    assert seqs[-1]["type"] == "needs_attention"
    # One row per turn: the paid order's three events, then the hold.
    rows = await pg.fetch(
        "SELECT seq, upto FROM order_event_turns WHERE order_id = 'ord_1' ORDER BY seq"
    )
    assert [(r["seq"], r["upto"]) for r in rows] == [(1, 3), (4, 4)]
    assert await pg.fetchval("SELECT version FROM orders WHERE id = 'ord_1'") == 2


async def test_an_order_another_process_saved_first_is_left_out_and_the_rest_saved(
    turns: Any, pg: Any, pg_schema_name: str
) -> None:
    order_turns, allocator = turns

    async def other_process_saves_ord_2() -> None:
        # What another process's turn of the same order leaves behind.
        await pg.execute(
            "INSERT INTO orders (id, state, version, last_seq) "
            "VALUES ('ord_2', 'needs_attention', 1, 1)"
        )

    allocator.after_reserve["ord_2"] = other_process_saves_ord_2
    results: tuple[Any, ...] = await asyncio.gather(
        order_turns.apply("ord_1", 1, paid("ord_1", "A")),
        order_turns.apply("ord_2", 1, paid("ord_2", "B")),
        return_exceptions=True,
    )
    assert results[0] == Outcome.APPLIED
    assert isinstance(results[1], ConcurrentTurn)
    assert await written(pg, "ord_1") == EVERYTHING
    # Nothing of the dropped turn: only the other process's row.
    assert await written(pg, "ord_2") == {**dict.fromkeys(EVERYTHING, 0), "orders": 1}
    assert await pg.fetchval("SELECT state FROM orders WHERE id = 'ord_2'") == "needs_attention"


async def test_turns_whose_stock_changes_redis_lost_save_nothing(turns: Any, pg: Any) -> None:
    order_turns, allocator = turns
    allocator.rebuilt = True
    results: tuple[Any, ...] = await asyncio.gather(
        order_turns.apply("ord_1", 1, paid("ord_1", "A")),
        order_turns.apply("ord_2", 1, paid("ord_2", "B")),
        return_exceptions=True,
    )
    assert all(isinstance(r, StaleEpoch) for r in results), results
    for order_id in ("ord_1", "ord_2"):
        assert await written(pg, order_id) == dict.fromkeys(EVERYTHING, 0)
    # Tried again (as the runtime does), the turns are saved.
    assert await order_turns.apply("ord_1", 1, paid("ord_1", "A")) == Outcome.APPLIED
    assert await written(pg, "ord_1") == EVERYTHING


async def test_writes_in_one_statement_see_each_other_s_returning_and_foreign_keys(
    pg: Any,
) -> None:
    writes = Writes()
    made = writes.add(
        "INSERT INTO orders (id, state) SELECT * FROM unnest($1::text[], $2::text[]) RETURNING id",
        ["ord_a", "ord_b"],
        ["received", "received"],
    )
    writes.add(
        "INSERT INTO order_event_turns (order_id, seq, upto, events) "
        "SELECT unnest($1::text[]), 1, 1, jsonb_build_array(jsonb_build_object("
        "'type', 'order_received', 'at', $2::timestamptz))",
        ["ord_a", "ord_b"],
        datetime.now(UTC),
    )
    rows = await writes.fetch(pg, f"SELECT id FROM {made} ORDER BY id")
    assert [r["id"] for r in rows] == ["ord_a", "ord_b"]
    assert await pg.fetchval("SELECT count(*) FROM order_events") == 2


async def test_a_failing_part_writes_nothing_at_all(pg: Any) -> None:
    writes = Writes()
    writes.add("INSERT INTO orders (id, state) VALUES ($1, 'received')", "ord_a")
    writes.add(
        "INSERT INTO order_event_turns (order_id, seq, upto, events) "
        """VALUES ($1, 1, 1, '[{"type": "x"}]')""",
        "ord_unknown",
    )
    with pytest.raises(Exception, match="foreign key"):
        await writes.execute(pg)
    assert await pg.fetchval("SELECT count(*) FROM orders") == 0


async def test_a_ledger_transaction_keeps_a_rebuild_out_and_rolls_back_on_error(
    pg: Any, pg_schema_name: str
) -> None:
    take_alone = "SELECT pg_try_advisory_xact_lock(hashtext('orderd.ledger.' || current_schema()))"
    async with connection(POSTGRES_DSN, pg_schema_name) as rebuild:
        seen_by_rebuild: list[bool] = []

        async def failing_turn() -> None:
            async with ledger_transaction(pg):
                await pg.execute("INSERT INTO orders (id, state) VALUES ('ord_a', 'received')")
                seen_by_rebuild.append(await rebuild.fetchval(take_alone))
                raise RuntimeError("turn failed")

        with pytest.raises(RuntimeError, match="turn failed"):
            await failing_turn()
        assert seen_by_rebuild == [False]
        assert not pg.is_in_transaction()
        assert await pg.fetchval("SELECT count(*) FROM orders") == 0
        async with ledger_transaction(pg):
            await pg.execute("INSERT INTO orders (id, state) VALUES ('ord_a', 'received')")
        assert not pg.is_in_transaction()
        assert await rebuild.fetchval("SELECT count(*) FROM orders") == 1
        assert await rebuild.fetchval(take_alone) is True


async def test_turns_go_on_while_their_saves_reach_redis_in_the_order_saved(
    make_turns: Any,
) -> None:
    make, _ = make_turns
    let_through = asyncio.Event()
    heard: list[list[str]] = []

    async def on_saved(told: Sequence[Any], saved: Sequence[Turn]) -> None:
        await let_through.wait()
        heard.append([t.order_id for t in saved])

    order_turns = make(on_saved)
    # Each turn is saved and done while what follows its save still waits.
    assert await order_turns.apply("ord_1", 1, paid("ord_1", "A")) == Outcome.APPLIED
    assert await order_turns.apply("ord_2", 1, paid("ord_2", "B")) == Outcome.APPLIED
    assert heard == []
    let_through.set()
    await order_turns.drain()
    assert heard == [["ord_1"], ["ord_2"]]


def cancel(order_id: str) -> CancelRequested:
    return CancelRequested(order_id=order_id, reason="changed my mind", requested_by="customer")


async def test_a_process_goes_on_from_the_state_it_saved_until_another_process_runs_a_turn(
    make_turns: Any, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, _ = make_turns
    loaded: list[str] = []
    load_many = PostgresOrders.load_many

    async def counted(self: PostgresOrders, order_ids: Sequence[str]) -> Any:
        loaded.extend(order_ids)
        return await load_many(self, order_ids)

    monkeypatch.setattr(PostgresOrders, "load_many", counted)
    here, there = make(), make()  # two processes: leases of their own

    assert await here.apply("ord_1", 1, paid("ord_1", "A")) == Outcome.APPLIED
    assert loaded == ["ord_1"]
    # Its next turn of the order starts from what it saved, without loading it: the state
    # it keeps is the state PostgreSQL holds.
    assert here.kept("ord_1") == (await orders.load(pg, "ord_1"))
    assert await here.apply("ord_1", 2, cancel("ord_1")) == Outcome.APPLIED
    assert loaded == ["ord_1"]
    kept = here.kept("ord_1")
    assert kept is not None
    assert kept.snapshot is not None
    assert kept.version == 2
    assert kept == await orders.load(pg, "ord_1")
    assert kept.snapshot.state.value == "cancelled"
    # A repeat is told from the kept state too.
    assert await here.apply("ord_1", 2, cancel("ord_1")) == Outcome.REPEAT
    assert loaded == ["ord_1"]

    # Another process runs a turn of the order: this one loads what that one saved.
    await here.drain()
    assert await there.apply("ord_1", 3, cancel("ord_1")) == Outcome.APPLIED
    await there.drain()
    assert await here.apply("ord_1", 4, cancel("ord_1")) == Outcome.APPLIED
    assert loaded == ["ord_1", "ord_1", "ord_1"]
    row = await pg.fetchrow("SELECT version, last_seq FROM orders WHERE id = 'ord_1'")
    assert (row["version"], row["last_seq"]) == (4, 4)


async def test_a_state_saved_behind_the_lease_s_back_costs_one_retry_and_is_then_loaded(
    make_turns: Any, pg: Any
) -> None:
    make, _ = make_turns
    here = make()
    assert await here.apply("ord_1", 1, paid("ord_1", "A")) == Outcome.APPLIED
    # Written without taking the lease (as a dead letter's hold is): the kept state is
    # behind, and the version check refuses the turn that starts from it.
    await pg.execute("UPDATE orders SET version = version + 1 WHERE id = 'ord_1'")
    with pytest.raises(ConcurrentTurn):
        await here.apply("ord_1", 2, cancel("ord_1"))
    assert here.kept("ord_1") is None
    # Tried again, as the runtime does, it loads the order and is saved.
    assert await here.apply("ord_1", 2, cancel("ord_1")) == Outcome.APPLIED
    assert await pg.fetchval("SELECT version FROM orders WHERE id = 'ord_1'") == 3


async def test_a_turn_that_fails_keeps_no_state_and_the_next_loads_it(turns: Any, pg: Any) -> None:
    order_turns, allocator = turns
    assert await order_turns.apply("ord_1", 1, paid("ord_1", "A")) == Outcome.APPLIED
    assert order_turns.kept("ord_1") is not None
    # The cancellation gives the backordered units back: Redis "rebuilt" meanwhile.
    allocator.rebuilt = True
    with pytest.raises(StaleEpoch):
        await order_turns.apply("ord_1", 2, cancel("ord_1"))
    assert order_turns.kept("ord_1") is None
    assert await order_turns.apply("ord_1", 2, cancel("ord_1")) == Outcome.APPLIED
    assert await pg.fetchval("SELECT last_seq FROM orders WHERE id = 'ord_1'") == 2
