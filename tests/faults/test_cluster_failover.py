"""orderd on a Redis Cluster of its own (3 masters, each with a replica), losing a master
mid-flood: the master is killed with -9 and its replica takes over, which may lack the
last writes the master acknowledged. No accepted order is lost and no unit oversold,
judged from the durable record: the allocation scripts refuse a warehouse written under
another master until it is rebuilt from the ledger, and the runtime streams again what
is not applied when another server holds the stream."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from adapters.redis.keys import RuntimeKeys, WarehouseKeys
from tests.faults.test_floods import assert_sound, flood_under_way, running, settled
from tests.faults.world import World
from tests.redis_cluster import Cluster, Node


async def master_of(cluster: Cluster, key: str) -> Node:
    """The master serving ``key``'s slot now."""
    client = RedisCluster.from_url(cluster.url)
    try:
        await client.initialize()
        node = client.get_node_from_key(key)
    finally:
        await client.aclose()
    assert node is not None
    return next(m for m in cluster.masters() if m.port == node.port)


async def meta_of(cluster: Cluster, meta: str) -> dict[str, str]:
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    try:
        found = await client.hgetall(meta)
    finally:
        await client.aclose()
    return {str(k): str(v) for k, v in found.items()}


@pytest.mark.timeout(180)
async def test_a_master_failing_over_mid_flood_loses_no_order_and_oversells_nothing(
    cluster_world: World, redis_cluster_own: Cluster
) -> None:
    world, cluster = cluster_world, redis_cluster_own
    daemon, flood, sending = await flood_under_way(world, 600, "c")
    # The shard that decides reservations: the warehouse's stock, its holdings and queues.
    meta = WarehouseKeys(world.prefix, "main").meta
    before = await meta_of(cluster, meta)
    stock = await master_of(cluster, meta)
    world.note(f"master {stock.port} (the warehouse's) killed")
    promoted = await asyncio.to_thread(cluster.fail_over, stock, hard=True)
    world.note(f"its replica {promoted.port} promoted")
    # Then the shard of the stream and the leases, if it is another one.
    stream = await master_of(cluster, RuntimeKeys(world.prefix, tagged=True).orders_stream)
    if stream.port != promoted.port:
        world.note(f"master {stream.port} (the stream's) killed")
        again = await asyncio.to_thread(cluster.fail_over, stream, hard=True)
        world.note(f"its replica {again.port} promoted")
    await asyncio.wait_for(sending, 110)
    settling, history, told = await settled(world, flood)
    assert running(daemon), f"the daemon died\n{told}"
    assert_sound(flood, settling, history, told)
    # The promoted replica's warehouse was not trusted: rebuilt from the ledger under it.
    after = await meta_of(cluster, meta)
    assert after["epoch"] != before["epoch"], told
    assert after["master"] != before["master"], told
