"""The order stream cut into partitions (``[redis] stream_partitions``): each order's
messages go to one partition, read by a runtime of its own, and a change of layout
streams again what was not applied. Run on one server and, in ``make test``'s second run,
on a Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actors.ports.stream import Entry
from adapters.redis.client import RedisClient
from adapters.redis.keys import RuntimeKeys
from adapters.redis.streams import Streams, drop_streams_of, laid_out_before, record_layout
from tests.conftest import ON_CLUSTER, SetStock, add_products
from tests.integration.daemon_harness import eventually, generic_body, generic_headers, request

MakeDaemon = Callable[..., Any]
PARTS = {"ORDERD_REDIS__STREAM_PARTITIONS": "3"}


async def _post(url: str, refs: list[str]) -> None:
    for ref in refs:
        body = generic_body(ref, [("SKU-P", 1)])
        assert request(f"{url}/webhooks/orders", body, generic_headers(body))[0] == 202


async def _states(pg: Any) -> dict[str, str]:
    return {
        r["external_id"]: r["state"]
        for r in await pg.fetch("SELECT external_id, state FROM orders")
    }


@pytest.fixture
async def stocked(pg: Any, set_stock: SetStock) -> None:
    await add_products(pg, "SKU-P")
    await set_stock({"SKU-P": 100})


async def at_the_warehouse(pg: Any, count: int) -> None:
    async def all_requested() -> bool:
        states = await _states(pg)
        return len(states) == count and set(states.values()) == {"fulfillment_requested"}

    await eventually(all_requested, within_s=30, what=f"{count} orders at the warehouse")


@pytest.mark.usefixtures("stocked")
async def test_orders_spread_over_three_partitions_are_each_carried_through(
    make_daemon: MakeDaemon, pg: Any, redis_client: RedisClient, redis_prefix: str
) -> None:
    daemon = make_daemon(**PARTS)
    refs = [f"P-{n}" for n in range(30)]
    await _post(daemon.url, refs)
    await at_the_warehouse(pg, 30)
    keys = RuntimeKeys(redis_prefix, tagged=True, partitions=3)
    ids = {r["external_id"]: r["id"] for r in await pg.fetch("SELECT id, external_id FROM orders")}
    read = []
    for k in range(3):
        entries: Any = await redis_client.xrange(keys.orders_stream_of(k))
        orders = {fields[b"order"].decode() for _, fields in entries}
        # Each order's messages in its own partition's stream, and only there.
        assert all(keys.partition(order) == k for order in orders)
        read.append(len(orders))
    assert sum(read) == 30
    assert min(read) > 0  # thirty orders reach all three
    assert await redis_client.get(keys.stream_layout) == b"3 tagged"
    assert not await redis_client.exists(RuntimeKeys(redis_prefix).orders_stream) or ON_CLUSTER
    assert set(ids) == set(refs)


@pytest.mark.usefixtures("stocked")
async def test_a_new_layout_streams_again_what_was_stored_under_the_old_one(
    make_daemon: MakeDaemon, pg: Any, redis_client: RedisClient, redis_prefix: str
) -> None:
    # Taken in, never applied: only the intake runs, on the stream laid out as one.
    intake = make_daemon("intake", ORDERD_DAEMON__ROLE="intake")
    refs = [f"L-{n}" for n in range(12)]
    await _post(intake.url, refs)
    assert await pg.fetchval("SELECT count(*) FROM mailbox") == 12
    assert await pg.fetchval("SELECT count(*) FROM orders") == 0
    old = RuntimeKeys(redis_prefix, tagged=ON_CLUSTER)
    assert await redis_client.xlen(old.orders_stream) == 12
    intake.stop()
    # The actors start with three partitions: what waits in the old stream is streamed
    # again into the new ones, from PostgreSQL, and carried through.
    make_daemon("actors", **PARTS)
    await at_the_warehouse(pg, 12)
    new = RuntimeKeys(redis_prefix, tagged=True, partitions=3)
    assert await redis_client.get(new.stream_layout) == b"3 tagged"
    if not ON_CLUSTER:  # on a cluster the first partition's stream is the old one
        assert not await redis_client.exists(old.orders_stream)


async def test_a_new_layout_is_recorded_only_once_the_backlog_is_streamed_again(
    redis_client: RedisClient, redis_prefix: str
) -> None:
    plain = RuntimeKeys(redis_prefix, tagged=ON_CLUSTER)
    await redis_client.xadd(plain.orders_stream, {"order": "o1", "seq": "1", "msg": "{}"})
    await record_layout(redis_client, plain)
    new = RuntimeKeys(redis_prefix, tagged=True, partitions=3)
    # A process that stops before it streamed the backlog again finds the change again.
    assert await laid_out_before(redis_client, new) == plain.layout
    assert await laid_out_before(redis_client, new) == plain.layout
    await record_layout(redis_client, new)
    assert await laid_out_before(redis_client, new) is None
    dropped = await drop_streams_of(redis_client, new, plain.layout)
    # The old stream goes, unless the new layout reads it (a cluster's first partition).
    assert dropped == ([] if ON_CLUSTER else [plain.orders_stream])


async def test_a_process_with_another_layout_does_not_start_beside_one_still_running(
    make_daemon: MakeDaemon, pg: Any, redis_client: RedisClient, redis_prefix: str
) -> None:
    running = make_daemon("old", ORDERD_DAEMON__ROLE="intake")
    layout = RuntimeKeys(redis_prefix, tagged=ON_CLUSTER).layout
    new = make_daemon("new", start=False, **PARTS)
    with pytest.raises(RuntimeError, match="another layout of the stream") as refused:
        new.start()
    assert f"old {layout}" in str(refused.value)
    assert "stop every process before changing [redis] stream_partitions" in str(refused.value)
    # What the running process laid out is left as it was.
    assert await redis_client.get(RuntimeKeys(redis_prefix).stream_layout) == layout.encode()
    running.stop()


async def test_an_entry_of_another_partitions_order_is_sent_on_not_run_here(
    redis_client: RedisClient, redis_prefix: str
) -> None:
    keys = RuntimeKeys(redis_prefix, tagged=True, partitions=3)
    order = next(f"o{n}" for n in range(100) if keys.partition(f"o{n}") == 2)
    sent: list[Entry] = []
    refusing = True

    async def elsewhere(entry: Entry) -> None:
        if refusing:
            raise ConnectionError("PostgreSQL away")
        sent.append(entry)

    first = Streams(redis_client, keys, 0, elsewhere=elsewhere)
    await first.ensure_group()
    # As a process of another layout added it: into the first partition's stream.
    await redis_client.xadd(first.stream, {"order": order, "seq": "1", "msg": "{}"})
    # Not sent on (the database away): neither run here nor acknowledged; it stays pending.
    assert await first.read("c1", count=10, block_ms=None) == ([], [])
    refusing = False
    entries, done = await first.read("c1", count=10, block_ms=None, own_pending=True)
    assert entries == []
    assert [(e.order_id, e.seq) for e in sent] == [(order, 1)]
    assert done == [sent[0].id]  # acknowledged by the caller, as foreign entries are
