"""The local Redis Cluster of tests/redis_cluster.py serves redis-py's cluster client, and
its failovers hand a master's slots to its replica without losing acknowledged writes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    ClusterCrossSlotError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TimeoutError,
)

from tests.redis_cluster import Cluster, Node

# Writes both keys and returns what they hold: two keys of one script, one slot.
BOTH = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return redis.call('MGET', KEYS[1], KEYS[2])
"""

# What a client sees while a master is down: refused connections, CLUSTERDOWN once the
# others call it failed, MOVED once its replica took its slots (and a slot map with a gap,
# which redis-py itself counts as passing).
OUTAGE = (ConnectionError, TimeoutError, ClusterDownError, MovedError, SlotNotCoveredError)
WRITE_DEADLINE_S = 30.0


@pytest.fixture
async def cluster_client(redis_cluster: Cluster, unique_name: str) -> AsyncIterator[RedisCluster]:
    """A client of the shared cluster; this test's keys (under ``unique_name``) are deleted
    afterwards."""
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        yield client
        for master in redis_cluster.masters():
            keys = await keys_on(master, unique_name)
            if keys:
                await client.delete(*keys)  # the client splits them by slot
    finally:
        await client.aclose()


async def keys_on(node: Node, prefix: str) -> set[str]:
    """The keys under ``prefix`` that the node itself holds (SCAN: a master answers for its
    own slots only, and MOVED for any key of another's)."""
    plain = aioredis.Redis(host=node.host, port=node.port, decode_responses=True)
    try:
        return {key async for key in plain.scan_iter(match=f"{prefix}*", count=1000)}
    finally:
        await plain.aclose()


async def test_keys_are_spread_over_every_master_and_read_back(
    redis_cluster: Cluster, cluster_client: RedisCluster, unique_name: str
) -> None:
    keys = [f"{unique_name}:{n}" for n in range(300)]
    for key in keys:
        await cluster_client.set(key, f"value of {key}")

    held = {m.port: await keys_on(m, unique_name) for m in redis_cluster.masters()}
    assert len(held) == 3
    assert all(held.values()), held  # every master got some
    assert sum(len(on) for on in held.values()) == len(keys)
    assert set().union(*held.values()) == set(keys)  # each key on exactly one master
    assert await cluster_client.mget_nonatomic(keys) == [f"value of {k}".encode() for k in keys]


async def test_a_script_runs_over_keys_sharing_a_hash_tag_and_is_refused_across_slots(
    redis_cluster: Cluster, cluster_client: RedisCluster, unique_name: str
) -> None:
    both = cluster_client.register_script(BOTH)
    tagged = [f"{unique_name}:{{main}}:on_hand", f"{unique_name}:{{main}}:reserved"]
    assert cluster_client.keyslot(tagged[0]) == cluster_client.keyslot(tagged[1])
    assert await both(keys=tagged, args=["5", "2"]) == [b"5", b"2"]

    apart = [f"{unique_name}:{{north}}:on_hand", f"{unique_name}:{{south}}:on_hand"]
    assert cluster_client.keyslot(apart[0]) != cluster_client.keyslot(apart[1])
    # The client refuses before sending anything ...
    with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
        await both(keys=apart, args=["5", "2"])
    # ... and sent to a master anyway, the server refuses it too.
    owner = cluster_client.get_node_from_key(apart[0])
    with pytest.raises(ClusterCrossSlotError, match="don't hash to the same slot"):
        await cluster_client.execute_command("EVAL", BOTH, 2, *apart, "5", "2", target_nodes=owner)
    assert await cluster_client.get(apart[0]) is None
    assert await cluster_client.get(apart[1]) is None


async def test_a_stream_entry_goes_round_a_consumer_group(
    cluster_client: RedisCluster, unique_name: str
) -> None:
    stream = f"{unique_name}:{{main}}:orders"
    await cluster_client.xgroup_create(stream, "workers", id="0", mkstream=True)
    added = await cluster_client.xadd(stream, {"order": "o-1", "seq": "1"})

    read = await cluster_client.xreadgroup("workers", "w1", {stream: ">"}, count=10)
    assert read == [[stream.encode(), [(added, {b"order": b"o-1", b"seq": b"1"})]]]
    assert (await cluster_client.xpending(stream, "workers"))["pending"] == 1
    assert await cluster_client.xack(stream, "workers", added) == 1
    assert (await cluster_client.xpending(stream, "workers"))["pending"] == 0


def master_port(client: RedisCluster, key: str) -> int:
    """The port of the master the client sends ``key`` to."""
    node = client.get_node_from_key(key)
    assert node is not None, key
    return int(node.port)


async def write_acknowledged(client: RedisCluster, key: str, value: str) -> int:
    """SET ``key`` until a reply says the key's master and its replica both hold it; return
    how many tries failed.

    Redis replicates asynchronously: a master answers OK before its replica has the write,
    so a master killed with -9 may take OK'd writes with it when its replica is elected.
    WAIT 1 answers once the replica has acknowledged every earlier write of the same
    connection, and with one replica per master that replica is the one elected, so a
    write counts as acknowledged only when WAIT says 1. (That holds for one failure: with
    several replicas a lagging one may be elected, and a master without persistence that
    restarts before it is failed over comes back empty.)

    SET and WAIT go in one pipeline pinned to one node, so they share a connection. The
    client must not retry on its own (``retries=0``): redis-py's pipeline retry drops the
    pin and sends WAIT to some other node, where it counts a replica for writes it never
    saw. So this retries, refreshing the client's view of the slots after each failure.
    """
    backoff = ExponentialWithJitterBackoff(base=0.01, cap=0.2)
    failures = 0
    deadline = time.monotonic() + WRITE_DEADLINE_S
    while True:
        try:
            await client.initialize()  # asks the cluster for its slots, if closed below
            node = client.get_node_from_key(key)
            pipe = client.pipeline()
            pipe.execute_command("SET", key, value, target_nodes=node)
            pipe.execute_command("WAIT", 1, 200, target_nodes=node)
            _, replicas = await pipe.execute(allow_redirections=False)
            if replicas >= 1:
                return failures
        except OUTAGE:
            await client.aclose()
        failures += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} was not written to two nodes in {WRITE_DEADLINE_S} s")
        await asyncio.sleep(backoff.compute(failures))  # paces the retries


async def write_all(client: RedisCluster, keys: list[str]) -> int:
    """Write ``v-<key>`` to each key, one after the other; how many tries failed."""
    return sum([await write_acknowledged(client, key, f"v-{key}") for key in keys])


async def until_gone(pid: int) -> None:
    """Poll, bounded, until process ``pid`` has been killed and reaped."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.01)


@pytest.mark.timeout(180)
async def test_killing_a_master_mid_writes_promotes_its_replica_and_loses_no_acknowledged_write(
    redis_cluster_own: Cluster,
) -> None:
    cluster = redis_cluster_own
    before = {m.port for m in cluster.masters()}
    victim = cluster.masters()[0]
    replica = cluster.replica_of(victim)
    pid = cluster.pid(victim)
    keys = [f"k{n}" for n in range(2000)]
    writer = RedisCluster.from_url(cluster.url, retry=Retry(NoBackoff(), 0))
    try:
        await writer.initialize()
        assert {master_port(writer, key) for key in keys} == before
        await write_all(writer, keys[:1000])
        failover = asyncio.create_task(
            asyncio.to_thread(cluster.fail_over, victim, hard=True, restart=True)
        )
        await until_gone(pid)
        writes = asyncio.create_task(write_all(writer, keys[1000:]))
        try:
            promoted, failures = await asyncio.gather(failover, writes)
        finally:
            writes.cancel()  # when the failover failed first
    finally:
        await writer.aclose()

    assert failures > 0  # the writes ran into the outage
    assert promoted.port == replica.port
    assert promoted.slots == victim.slots
    assert {m.port for m in cluster.masters()} == before - {victim.port} | {replica.port}
    assert cluster.replica_of(promoted).port == victim.port  # restarted, it follows
    assert all(cluster.info(port)["cluster_state"] == "ok" for _, port in cluster.startup_nodes)
    reader = RedisCluster(host=promoted.host, port=promoted.port)
    try:
        assert await reader.mget_nonatomic(keys) == [f"v-{k}".encode() for k in keys]
    finally:
        await reader.aclose()


@pytest.mark.timeout(120)
async def test_a_graceful_failover_swaps_master_and_replica_under_a_writing_client(
    redis_cluster_own: Cluster,
) -> None:
    cluster = redis_cluster_own
    master = cluster.masters()[0]
    replica = cluster.replica_of(master)
    client = RedisCluster.from_url(cluster.url)
    keys: list[str] = []
    try:
        failover = asyncio.create_task(asyncio.to_thread(cluster.fail_over, master))
        # The old master holds writes while its replica catches up, then redirects them
        # (MOVED), which the client follows: no error reaches the caller.
        while not failover.done():
            assert len(keys) < 100_000, "the failover did not end"
            keys.append(f"k{len(keys)}")
            await client.set(keys[-1], f"v-{keys[-1]}")
        promoted = await failover
        assert await client.mget_nonatomic(keys) == [f"v-{k}".encode() for k in keys]
    finally:
        await client.aclose()

    assert promoted.port == replica.port
    assert cluster.replica_of(promoted).port == master.port
    assert all(cluster.info(port)["cluster_state"] == "ok" for _, port in cluster.startup_nodes)
