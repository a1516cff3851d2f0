"""The allocation core against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from actors.stock import Filled, UnknownSku
from adapters.redis.keys import WarehouseKeys
from adapters.redis.scripts import (
    BadQuantity,
    CorruptStock,
    DuplicateMovement,
    NotHeld,
    allocation_source,
    lua_source,
)
from adapters.stock.allocator import Allocator
from adapters.stock.model import AllocationPolicy, WarehouseConfig
from tests.conftest import Clock, add_products

MakeAllocator = Callable[..., Awaitable[Allocator]]


async def stocked(make: MakeAllocator, pg: Any, levels: dict[str, int], **kwargs: Any) -> Allocator:
    await add_products(pg, *levels)
    allocator = await make(**kwargs)
    for sku, quantity in levels.items():
        if quantity:
            await allocator.adjust(sku, quantity, movement_id=f"init-{sku}", mode="set")
    return allocator


async def level(allocator: Allocator, sku: str, warehouse: str | None = None) -> tuple[int, ...]:
    s = await allocator.stock(sku, warehouse)
    assert s.on_hand == s.available + s.reserved
    assert min(s.on_hand, s.reserved, s.available, s.backordered) >= 0
    return (s.on_hand, s.reserved, s.backordered)


async def ledger_rows(pg: Any) -> int:
    count: int = await pg.fetchval("SELECT count(*) FROM stock_ledger")
    return count


async def test_an_order_is_reserved_whole_and_recorded(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10, "B": 4})
    result = await allocator.reserve("o1", [("A", 3), ("B", 4)])
    assert result.status == "reserved"
    assert [(line.sku, line.reserved) for line in result.lines] == [("A", 3), ("B", 4)]
    assert await level(allocator, "A") == (10, 3, 0)
    assert await level(allocator, "B") == (4, 4, 0)
    rows = await pg.fetch("SELECT kind, lines::text FROM stock_ledger WHERE order_id = 'o1'")
    assert [(r["kind"], json.loads(r["lines"])) for r in rows] == [
        ("reserve", [["A", 0, 3, 0], ["B", 0, 4, 0]])
    ]
    assert await allocator.reconcile() == []


async def test_two_lines_of_one_sku_are_summed(make_allocator: MakeAllocator, pg: Any) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    result = await allocator.reserve("o1", [("A", 3), ("A", 3)])
    assert result.status == "backordered"
    assert [(line.wanted, line.reserved, line.backordered) for line in result.lines] == [(6, 0, 6)]
    assert await level(allocator, "A") == (5, 0, 6)


async def test_a_repeated_reservation_returns_the_first_result_and_moves_nothing(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10})
    first = await allocator.reserve("o1", [("A", 4)])
    rows = await ledger_rows(pg)
    again = await allocator.reserve("o1", [("A", 4)])
    assert (first.replay, again.replay) == (False, True)
    assert again.lines == first.lines
    assert await level(allocator, "A") == (10, 4, 0)
    assert await ledger_rows(pg) == rows


async def test_wait_all_holds_the_order_until_every_line_can_be_reserved(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10, "B": 0})
    result = await allocator.reserve("o1", [("A", 2), ("B", 1)], policy="wait_all")
    assert result.status == "backordered"
    assert await level(allocator, "A") == (10, 0, 2)
    # Stock of A alone does not fill it: B is still missing.
    assert (await allocator.adjust("A", 5, movement_id="rcv-a")).filled_orders == ()
    done = await allocator.adjust("B", 1, movement_id="rcv-b", reason="receipt")
    assert done.filled_orders == ("o1",)
    assert await level(allocator, "A") == (15, 2, 0)
    assert await level(allocator, "B") == (1, 1, 0)
    waiting = await pg.fetchval(
        "SELECT sum((l->>3)::int) FROM stock_ledger, jsonb_array_elements(lines) l "
        "WHERE order_id = 'o1'"
    )
    assert waiting == 0
    assert await allocator.reconcile() == []


async def test_ship_available_reserves_what_is_free_and_queues_the_rest(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 3, "B": 5})
    result = await allocator.reserve("o1", [("A", 5), ("B", 2)], policy="ship_available")
    assert result.status == "partially_reserved"
    assert [(ln.sku, ln.reserved, ln.backordered) for ln in result.lines] == [
        ("A", 3, 2),
        ("B", 2, 0),
    ]
    assert await level(allocator, "A") == (3, 3, 2)
    done = await allocator.adjust("A", 2, movement_id="rcv")
    assert done.filled_orders == ("o1",)
    assert await level(allocator, "A") == (5, 5, 0)
    assert await allocator.reconcile() == []


async def test_backorders_are_filled_by_priority_then_age(
    make_allocator: MakeAllocator, pg: Any, clock: Clock
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 0})
    for order_id, priority in (("old", 0), ("vip", 5), ("new", 0)):
        await allocator.reserve(order_id, [("A", 1)], priority=priority)
        clock.advance(60)
    assert (await allocator.adjust("A", 1, movement_id="m1")).filled_orders == ("vip",)
    assert (await allocator.adjust("A", 1, movement_id="m2")).filled_orders == ("old",)
    assert (await allocator.adjust("A", 1, movement_id="m3")).filled_orders == ("new",)


async def test_an_order_too_big_to_fill_keeps_its_place_while_smaller_ones_pass(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 0})
    await allocator.reserve("big", [("A", 10)])
    await allocator.reserve("small", [("A", 2)])
    assert (await allocator.adjust("A", 3, movement_id="m1")).filled_orders == ("small",)
    assert (await allocator.adjust("A", 9, movement_id="m2")).filled_orders == ("big",)
    assert await level(allocator, "A") == (12, 12, 0)


async def test_cancel_releases_everything_and_leaves_the_queues(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5, "B": 0})
    await allocator.reserve("o1", [("A", 2), ("B", 1)], policy="ship_available")
    [released] = await allocator.release("o1", "cancel")
    assert released.released == (("A", 2),)
    assert released.dropped == (("B", 1),)
    assert await level(allocator, "A") == (5, 0, 0)
    assert await level(allocator, "B") == (0, 0, 0)
    keys = allocator.keys("main")
    assert await redis_client.zcard(keys.backorder_queue("B")) == 0
    assert await allocator.holding("o1") == ({}, {})
    assert not await redis_client.hexists(keys.orders, "o1")
    assert (await allocator.adjust("B", 1, movement_id="m1")).filled_orders == ()
    assert await allocator.reconcile() == []


async def test_cancel_gives_what_it_held_to_the_orders_waiting_for_it_once(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 2, "B": 5})
    await allocator.reserve("o1", [("A", 2)])
    await allocator.reserve("o2", [("A", 1), ("B", 1)])  # waits for A, so for B too
    await allocator.reserve("o3", [("A", 1)])
    await allocator.reserve("o4", [("A", 1)])
    [released] = await allocator.release("o1", "cancel")
    assert released.released == (("A", 2),)
    filled = (Filled("o2", (("A", 1), ("B", 1))), Filled("o3", (("A", 1),)))
    assert released.fills == filled
    assert await level(allocator, "A") == (2, 2, 1)
    assert await allocator.holding("o3") == ({"A": 1}, {})
    # Repeated (a turn run again after a crash): the same answer, nothing moves.
    [again] = await allocator.release("o1", "cancel")
    assert (again.replay, again.fills) == (True, filled)
    assert await level(allocator, "A") == (2, 2, 1)
    assert await allocator.reconcile() == []


async def test_a_short_pick_releases_only_the_missing_units(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    await allocator.reserve("o1", [("A", 4)])
    await allocator.release("o1", "short-pick:1", [("A", 1)])
    assert await level(allocator, "A") == (5, 3, 0)
    with pytest.raises(NotHeld):
        await allocator.release("o1", "short-pick:2", [("A", 4)])
    assert await level(allocator, "A") == (5, 3, 0)


async def test_commit_takes_shipped_units_off_hand(make_allocator: MakeAllocator, pg: Any) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5, "B": 2})
    await allocator.reserve("o1", [("A", 3), ("B", 1)])
    with pytest.raises(NotHeld):
        await allocator.commit("o1", "ship:1", [("A", 3), ("B", 2)])
    assert await level(allocator, "A") == (5, 3, 0)
    result = await allocator.commit("o1", "ship:1", [("A", 3), ("B", 1)])
    assert result.replay is False
    again = await allocator.commit("o1", "ship:1", [("A", 3), ("B", 1)])
    assert again.replay is True
    assert await level(allocator, "A") == (2, 0, 0)
    assert await level(allocator, "B") == (1, 0, 0)
    assert await allocator.reconcile() == []


async def test_bad_adjustments_are_refused_and_write_nothing(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    await allocator.reserve("o1", [("A", 4)])
    rows = await ledger_rows(pg)
    with pytest.raises(DuplicateMovement):
        await allocator.adjust("A", 1, movement_id="init-A")
    with pytest.raises(UnknownSku):
        await allocator.adjust("NOPE", 1, movement_id="x1")
    with pytest.raises(BadQuantity):
        await allocator.adjust("A", 10**9 + 1, movement_id="x2")
    with pytest.raises(BadQuantity):
        await allocator.adjust("A", 0, movement_id="x3")
    with pytest.raises(Exception, match="below the 4 reserved"):
        await allocator.adjust("A", -2, movement_id="x4")
    with pytest.raises(UnknownSku):
        await allocator.reserve("o2", [("A", 1), ("NOPE", 1)])
    with pytest.raises(BadQuantity):
        await allocator.reserve("o3", [("A", 0)])
    assert await level(allocator, "A") == (5, 4, 0)
    assert await ledger_rows(pg) == rows


async def test_a_hot_sku_is_never_oversold(make_allocator: MakeAllocator, pg: Any) -> None:
    allocator = await stocked(make_allocator, pg, {"HOT": 10})
    results = await asyncio.gather(*(allocator.reserve(f"o{i}", [("HOT", 1)]) for i in range(1000)))
    statuses = [r.status for r in results]
    assert statuses.count("reserved") == 10
    assert statuses.count("backordered") == 990
    assert await level(allocator, "HOT") == (10, 10, 990)
    assert await allocator.reconcile() == []


async def test_a_broken_request_in_a_batch_writes_nothing_and_spares_the_others(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10, "B": 10, "C": 10})
    keys = allocator.keys("main")
    await redis_client.hset(keys.reserved, "C", "not-a-number")
    results = await asyncio.gather(
        allocator.reserve("good-1", [("A", 1)]),
        allocator.reserve("bad", [("B", 1), ("C", 1)]),
        allocator.reserve("good-2", [("A", 1), ("B", 1)]),
        return_exceptions=True,
    )
    assert isinstance(results[1], CorruptStock)
    assert [getattr(r, "status", None) for r in (results[0], results[2])] == ["reserved"] * 2
    assert await level(allocator, "B") == (10, 1, 0)
    assert await allocator.holding("bad") == ({}, {})
    windows = [k async for k in redis_client.scan_iter(match=keys.done(0)[:-1] + "*")]
    assert windows
    for key in windows:
        assert not await redis_client.hexists(key, "bad reserve")


async def test_a_malformed_script_call_writes_nothing(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10})
    keys = WarehouseKeys(redis_prefix, "main")
    before = {k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")}
    script = redis_client.register_script(allocation_source("reserve"))
    with pytest.raises(aioredis.ResponseError, match="BADBATCH"):
        await script(keys=[keys.meta], args=[keys.base, 1, 60, b"\xc1 not msgpack"])
    after = {k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")}
    assert after == before
    assert await level(allocator, "A") == (10, 0, 0)


async def test_script_flush_is_survived(
    make_allocator: MakeAllocator, pg: Any, redis_server: Any
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        allocator = await stocked(make_allocator, pg, {"A": 10}, redis=client)
        await allocator.reserve("o1", [("A", 1)])
        await client.script_flush()
        await allocator.reserve("o2", [("A", 1)])
        await client.script_flush()
        await allocator.adjust("A", 1, movement_id="after-flush")
        assert await level(allocator, "A") == (11, 2, 0)
    finally:
        await client.aclose()


async def test_an_emptied_redis_is_rebuilt_from_the_ledger(
    make_allocator: MakeAllocator, pg: Any, redis_server: Any
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        allocator = await stocked(make_allocator, pg, {"A": 10, "B": 0}, redis=client)
        await allocator.reserve("o1", [("A", 3)])
        await allocator.reserve("o2", [("A", 1), ("B", 2)], priority=3)
        await allocator.commit("o1", "ship:1", [("A", 1)])
        await client.flushall()
        # The next call finds the warehouse gone, rebuilds it, and carries on.
        again = await allocator.reserve("o1", [("A", 3)])
        assert again.replay is True
        assert await level(allocator, "A") == (9, 2, 1)
        assert await level(allocator, "B") == (0, 0, 2)
        assert (await allocator.adjust("B", 2, movement_id="rcv")).filled_orders == ("o2",)
        assert await allocator.reconcile() == []
    finally:
        await client.aclose()


async def test_a_restarted_empty_redis_is_rebuilt(
    make_allocator: MakeAllocator, pg: Any, redis_server: Any
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        allocator = await stocked(make_allocator, pg, {"A": 10}, redis=client)
        await allocator.reserve("o1", [("A", 4)])
        redis_server.stop()
        redis_server.start()
        assert (await allocator.reserve("o2", [("A", 4)])).status == "reserved"
        assert await level(allocator, "A") == (10, 8, 0)
        assert await allocator.reconcile() == []
    finally:
        await client.aclose()


async def test_redis_holding_another_databases_data_is_rebuilt_at_start(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 7})
    keys = allocator.keys("main")
    await redis_client.hset(keys.meta, "instance", "some-other-database")
    await redis_client.hset(keys.on_hand, "A", 999)
    second = await make_allocator()
    assert await level(second, "A") == (7, 0, 0)


async def test_a_warehouse_written_under_another_master_is_rebuilt_before_anything_is_decided(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 3})
    await allocator.reserve("o1", [("A", 2)])
    keys = allocator.keys("main")
    epoch, master = await redis_client.hmget(keys.meta, ["epoch", "master"])
    assert master  # the replication id of the master it was written under
    # As a replica promoted in a failover holds it: the old master's meta, without the
    # master's last write (o1's reservation), which replication had not carried yet.
    await redis_client.hset(keys.meta, "master", "a-master-that-is-gone")
    await redis_client.hset(keys.reserved, "A", 0)
    await redis_client.hdel(keys.orders, "o1")
    # Had the stale figures been trusted, o2 would take 2 of A's 3 units and oversell it.
    result = await allocator.reserve("o2", [("A", 2)])
    assert result.status == "backordered"
    assert await level(allocator, "A") == (3, 2, 2)
    assert await allocator.holding("o1") == ({"A": 2}, {})
    now_epoch, now_master = await redis_client.hmget(keys.meta, ["epoch", "master"])
    assert (now_epoch != epoch, now_master) == (True, master)
    assert await allocator.reconcile() == []


async def test_a_rebuild_claims_meta_only_under_the_master_it_began_under(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 3})
    keys = allocator.keys("main")
    before = await redis_client.hgetall(keys.meta)
    claim = redis_client.register_script(lua_source("claim_meta"))
    # As when a replica was promoted while the rebuild wrote: another master serves it.
    with pytest.raises(ResponseError, match=r"^NOMETA"):
        await claim(keys=[keys.meta], args=["a-master-that-is-gone", "epoch", "e2"])
    assert await redis_client.hgetall(keys.meta) == before
    # Found so at start, the warehouse is rebuilt then.
    await redis_client.hset(keys.meta, "master", "a-master-that-is-gone")
    second = await make_allocator()
    assert await level(second, "A") == (3, 0, 0)
    assert await redis_client.hget(keys.meta, "master") == before[b"master"]
    assert await redis_client.hget(keys.meta, "epoch") != before[b"epoch"]


async def test_redis_keys_of_an_earlier_layout_are_rebuilt_at_start(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 7})
    await allocator.reserve("o1", [("A", 2)])
    keys = allocator.keys("main")
    # As an earlier version left them: a hash per sku and per order, no layout in meta.
    await redis_client.hdel(keys.meta, "layout")
    for key in (*keys.stock, keys.orders):
        await redis_client.delete(key)
    await redis_client.hset(f"{keys.base}stock:A", mapping={"on_hand": 7, "reserved": 2})
    await redis_client.hset(f"{keys.base}res:o1", "A", 2)
    second = await make_allocator()
    assert await level(second, "A") == (7, 2, 0)
    assert await second.holding("o1") == ({"A": 2}, {})
    assert not await redis_client.exists(f"{keys.base}stock:A", f"{keys.base}res:o1")
    assert await second.reconcile() == []


async def test_recovery_restores_queue_positions(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis, clock: Clock
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 0})
    for order_id in ("first", "second", "third"):
        await allocator.reserve(order_id, [("A", 1)])
        clock.advance(1)
    await allocator.recover("main")
    assert (await allocator.adjust("A", 2, movement_id="m1")).filled_orders == ("first", "second")


async def test_reconcile_reports_drift_and_recover_repairs_it(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    await allocator.reserve("o1", [("A", 2)])
    keys = allocator.keys("main")
    await redis_client.hset(keys.on_hand, "A", 50)
    await redis_client.hset(keys.orders, "ghost", json.dumps({"r": {"A": 1}}))
    drift = await allocator.reconcile()
    assert sorted((d.what, d.redis, d.ledger) for d in drift) == [
        ("on_hand A", 50, 5),
        ("orders ghost reserved A", 1, 0),
    ]
    await allocator.recover("main")
    assert await allocator.reconcile() == []


async def test_cancel_after_days_records_when_the_wait_ends(
    make_allocator: MakeAllocator, pg: Any, clock: Clock
) -> None:
    allocator = await stocked(
        make_allocator, pg, {"A": 0}, policy=AllocationPolicy(cancel_after_days=3)
    )
    await allocator.reserve("o1", [("A", 1)], policy="cancel_after_days")
    await allocator.reserve("o2", [("A", 1)], policy="wait_all")
    rows = dict(await pg.fetch("SELECT order_id, cancel_at FROM backorder_queue"))
    assert rows["o1"].timestamp() == clock.now + 3 * 86400
    assert rows["o2"] is None


TWO = (WarehouseConfig("east", priority=1), WarehouseConfig("west", priority=2))


async def two_warehouses(
    make: MakeAllocator, pg: Any, east: dict[str, int], west: dict[str, int], **policy: Any
) -> Allocator:
    await add_products(pg, *sorted(set(east) | set(west)))
    allocator = await make(warehouses=TWO, policy=AllocationPolicy(**policy))
    for code, levels in (("east", east), ("west", west)):
        for sku, quantity in levels.items():
            await allocator.adjust(sku, quantity, movement_id=f"{code}-{sku}", warehouse=code)
    return allocator


async def test_the_first_warehouse_that_fills_the_order_whole_gets_it(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(make_allocator, pg, {"A": 5, "B": 1}, {"A": 5, "B": 5})
    first = await allocator.reserve("o1", [("A", 2), ("B", 1)])
    second = await allocator.reserve("o2", [("A", 2), ("B", 1)])
    assert {line.warehouse for line in first.lines} == {"east"}
    assert {line.warehouse for line in second.lines} == {"west"}
    again = await allocator.reserve("o2", [("A", 2), ("B", 1)])
    assert again.replay
    assert {line.warehouse for line in again.lines} == {"west"}
    assert await level(allocator, "A", "west") == (5, 2, 0)


async def test_without_splitting_a_short_order_waits_in_the_first_warehouse(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(make_allocator, pg, {"A": 1}, {"A": 1})
    result = await allocator.reserve("o1", [("A", 2)])
    assert result.status == "backordered"
    assert await level(allocator, "A", "east") == (1, 0, 2)
    assert await level(allocator, "A", "west") == (1, 0, 0)


async def test_units_a_short_pick_missed_come_from_another_warehouse_not_the_short_one(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(make_allocator, pg, {"A": 5}, {"A": 3})
    result = await allocator.reserve("o1", [("A", 2)], op_id="reserve:o1-1", avoid=["east"])
    assert result.status == "reserved"
    assert {line.warehouse for line in result.lines} == {"west"}
    assert await level(allocator, "A", "east") == (5, 0, 0)
    again = await allocator.reserve("o1", [("A", 2)], op_id="reserve:o1-1", avoid=["east"])
    assert again.replay
    assert {line.warehouse for line in again.lines} == {"west"}
    assert await level(allocator, "A", "west") == (3, 2, 0)
    assert await allocator.reconcile() == []


async def test_units_no_other_warehouse_has_wait_in_the_short_one_for_a_recount(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(make_allocator, pg, {"A": 5}, {"A": 1})
    result = await allocator.reserve(
        "o1", [("A", 2)], policy="cancel_after_days", op_id="reserve:o1-1", avoid=["east"]
    )
    # East's count says 5, but east is where the units were not found: they wait there,
    # as long as the order's policy lets them.
    assert result.status == "backordered"
    place = await pg.fetchrow("SELECT warehouse, cancel_at FROM backorder_queue")
    assert place["warehouse"] == "east"
    assert place["cancel_at"] is not None
    assert await level(allocator, "A", "east") == (5, 0, 2)
    assert await level(allocator, "A", "west") == (1, 0, 0)
    assert (await allocator.reserve("o1", [("A", 2)], op_id="reserve:o1-1", avoid=["east"])).replay
    # The recount: the waiting order is filled from what the shelf really holds.
    counted = await allocator.adjust("A", 3, movement_id="recount-1", mode="set", warehouse="east")
    assert counted.filled_orders == ("o1",)
    assert await level(allocator, "A", "east") == (3, 2, 0)
    assert await allocator.reconcile() == []


async def test_a_split_takes_from_each_warehouse(make_allocator: MakeAllocator, pg: Any) -> None:
    allocator = await two_warehouses(
        make_allocator, pg, {"A": 2}, {"A": 3}, split_across_warehouses=True
    )
    result = await allocator.reserve("o1", [("A", 4)])
    assert result.status == "reserved"
    assert sorted((ln.warehouse, ln.reserved) for ln in result.lines) == [("east", 2), ("west", 2)]
    assert (await allocator.reserve("o1", [("A", 4)])).replay is True
    assert await level(allocator, "A", "east") == (2, 2, 0)
    assert await level(allocator, "A", "west") == (3, 2, 0)
    assert await allocator.reconcile() == []


async def test_a_split_that_cannot_finish_is_given_back_under_wait_all(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(
        make_allocator, pg, {"A": 2}, {"A": 1}, split_across_warehouses=True
    )
    result = await allocator.reserve("o1", [("A", 5)], policy="wait_all")
    assert result.status == "backordered"
    assert await level(allocator, "A", "east") == (2, 0, 5)
    assert await level(allocator, "A", "west") == (1, 0, 0)
    again = await allocator.reserve("o1", [("A", 5)], policy="wait_all")
    assert again.replay
    assert again.status == "backordered"
    assert await allocator.reconcile() == []


async def test_a_split_ships_what_it_found_under_ship_available(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await two_warehouses(
        make_allocator, pg, {"A": 2}, {"A": 1}, split_across_warehouses=True
    )
    result = await allocator.reserve("o1", [("A", 5)], policy="ship_available")
    assert result.status == "partially_reserved"
    assert await level(allocator, "A", "east") == (2, 2, 2)
    assert await level(allocator, "A", "west") == (1, 1, 0)
    assert await allocator.reconcile() == []


class LostLedger:
    """A caller that died before writing its ledger entries: they go nowhere."""

    async def record(self, entry: Any) -> None:
        return None


@pytest.mark.parametrize("split", [False, True])
async def test_a_repeated_reservation_writes_the_ledger_entries_a_crash_lost(
    make_allocator: MakeAllocator, pg: Any, split: bool
) -> None:
    allocator = await two_warehouses(
        make_allocator, pg, {"A": 2}, {"A": 3}, split_across_warehouses=split
    )
    wanted = [("A", 4)] if split else [("A", 3)]
    first = await allocator.reserve("o1", wanted, sink=LostLedger())
    assert first.status == "reserved"
    assert await allocator.reconcile() != []  # Redis holds what the ledger does not know
    again = await allocator.reserve("o1", wanted)
    assert again.replay
    assert set(again.lines) == set(first.lines)
    assert await allocator.reconcile() == []


async def test_a_repeated_reservation_in_one_warehouse_writes_the_entry_a_crash_lost(
    make_allocator: MakeAllocator, pg: Any
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    first = await allocator.reserve("o1", [("A", 2)], sink=LostLedger())
    assert await allocator.reconcile() != []  # Redis holds what the ledger does not know
    again = await allocator.reserve("o1", [("A", 2)])
    assert (again.replay, again.lines) == (True, first.lines)
    assert await allocator.reconcile() == []


async def test_a_movement_the_ledger_has_already_is_not_written_twice(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 5})
    await allocator.reserve("o1", [("A", 2)])
    # Redis no longer remembers the result (its window gone), while the ledger has it: the
    # batch's COPY meets the row and the batch is written again past it.
    keys = allocator.keys("main")
    windows = [k async for k in redis_client.scan_iter(match=keys.done(0)[:-1] + "*")]
    assert windows
    for key in windows:
        await redis_client.delete(key)
    await asyncio.gather(allocator.reserve("o1", [("A", 2)]), allocator.reserve("o2", [("A", 1)]))
    rows = await pg.fetch("SELECT order_id FROM stock_ledger WHERE kind = 'reserve'")
    assert sorted(row["order_id"] for row in rows) == ["o1", "o2"]


async def test_an_order_queued_again_keeps_its_first_place(
    make_allocator: MakeAllocator, pg: Any, clock: Clock
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 0, "B": 0})
    await allocator.reserve("o1", [("A", 1)])
    first = await pg.fetchval("SELECT enqueued_at FROM backorder_queue WHERE order_id = 'o1'")
    clock.advance(60)
    again = await allocator.reserve("o1", [("B", 1)], op_id="reroute")
    assert again.status == "backordered"
    assert await pg.fetch("SELECT enqueued_at FROM backorder_queue") == [(first,)]
    assert await allocator.reconcile() == []


async def test_an_unreadable_holding_refuses_its_order_and_writes_nothing_for_it(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 10})
    keys = allocator.keys("main")
    await redis_client.hset(keys.orders, "bad", "{not json")
    results = await asyncio.gather(
        allocator.reserve("good-1", [("A", 1)]),
        allocator.reserve("bad", [("A", 2)]),
        allocator.reserve("good-2", [("A", 1)]),
        return_exceptions=True,
    )
    assert isinstance(results[1], CorruptStock)
    assert [getattr(r, "status", None) for r in (results[0], results[2])] == ["reserved"] * 2
    assert await level(allocator, "A") == (10, 2, 0)
    assert await redis_client.hget(keys.orders, "bad") == b"{not json"
    with pytest.raises(CorruptStock):
        await allocator.release("bad", "cancel")


async def test_a_receipt_meeting_an_unreadable_holding_in_the_queue_changes_nothing(
    make_allocator: MakeAllocator, pg: Any, redis_client: aioredis.Redis
) -> None:
    allocator = await stocked(make_allocator, pg, {"A": 0})
    await allocator.reserve("waiting", [("A", 1)])
    keys = allocator.keys("main")
    await redis_client.hset(keys.orders, "waiting", "[1, 2")
    for _ in range(2):  # refused each time: the receipt is never counted
        with pytest.raises(CorruptStock):
            await allocator.adjust("A", 5, movement_id="po-1")
    assert await level(allocator, "A") == (0, 0, 1)
    assert await pg.fetchval("SELECT count(*) FROM stock_ledger WHERE op_id = 'po-1'") == 0
