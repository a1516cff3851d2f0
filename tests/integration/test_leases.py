"""Order leases against real Redis: taken where free, renewed and freed only by the turn
that took them."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from actors.ports.turns import Taken
from adapters.redis.keys import RuntimeKeys
from adapters.redis.leases import Leases
from tests.conftest import runtime_keys

# A token's first 10 characters name its process: A and A2 are two turns of one process.
A, B, C = "a" * 16, "b" * 16, "c" * 16
A2 = "a" * 10 + "000002"


async def test_a_lease_is_taken_only_where_free(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    one, other = (Leases(redis_client, keys, lease_ms=60_000) for _ in range(2))
    assert await one.take([("o1", A), ("o2", A)]) == [Taken.TAKEN, Taken.TAKEN]
    # Another process: o1 and o2 are taken, o3 is free.
    assert await other.take([("o1", B), ("o3", B), ("o2", B)]) == [
        Taken.BUSY,
        Taken.TAKEN,
        Taken.BUSY,
    ]
    assert await redis_client.get(keys.lease("o1")) == A.encode()
    assert 0 < await redis_client.pttl(keys.lease("o1")) <= 60_000


async def test_a_lease_is_freed_only_with_the_token_that_took_it(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    leases = Leases(redis_client, keys, lease_ms=60_000)
    await leases.take([("o1", A), ("o2", A)])
    # o2's lease ran out and another turn holds it now: freeing with the old token leaves it.
    await redis_client.set(keys.lease("o2"), C)
    assert await leases.free([("o1", A), ("o2", A), ("o3", A)]) == 1
    # Free, and for a while it still names the turn that held it.
    assert await redis_client.get(keys.lease("o1")) == b"~" + A.encode()
    assert 0 < await redis_client.pttl(keys.lease("o1")) <= 120_000
    assert await redis_client.get(keys.lease("o2")) == C.encode()
    assert await leases.take([("o1", B)]) == [Taken.TAKEN]


async def test_taking_a_lease_tells_whether_this_process_ran_the_order_s_last_turn(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    here = Leases(redis_client, keys, lease_ms=60_000)
    there = Leases(redis_client, keys, lease_ms=60_000)
    assert await here.take([("o1", A), ("o2", A), ("o3", A)]) == [Taken.TAKEN] * 3
    await here.free([("o1", A), ("o2", A)])
    # o1: freed by this process; o3: its earlier turn's freeing is still on its way.
    assert await here.take([("o1", A2), ("o3", A2)]) == [Taken.OURS, Taken.OURS]
    assert await redis_client.get(keys.lease("o3")) == A2.encode()
    # The old turn's late freeing leaves the new turn's lease alone.
    assert await here.free([("o3", A)]) == 0
    assert await there.take([("o3", B)]) == [Taken.BUSY]
    # Another process ran o2 since: taking it back tells nothing of the state.
    assert await there.take([("o2", B)]) == [Taken.TAKEN]
    await there.free([("o2", B)])
    assert await here.take([("o2", A2)]) == [Taken.TAKEN]
    # A lease gone (it ran out, or Redis lost it) tells nothing either.
    await redis_client.delete(keys.lease("o1"))
    assert await here.take([("o1", A)]) == [Taken.TAKEN]


async def test_a_lease_runs_out_by_itself(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    keys = runtime_keys(redis_prefix)
    assert await Leases(redis_client, keys, lease_ms=1).take([("o1", A)]) == [Taken.TAKEN]
    # Expiry is Redis's own clock: wait for it by asking, not by sleeping a guess.
    for _ in range(100_000):
        if not await redis_client.exists(keys.lease("o1")):
            break
    assert await Leases(redis_client, keys, lease_ms=60_000).take([("o1", B)]) == [Taken.TAKEN]


async def test_a_lease_is_renewed_only_while_the_turn_that_took_it_still_holds_it(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    leases = Leases(redis_client, keys, lease_ms=60_000)
    assert await leases.take([("held", A), ("taken", A)]) == [Taken.TAKEN, Taken.TAKEN]
    assert await Leases(redis_client, keys, lease_ms=1).take([("expired", A)]) == [Taken.TAKEN]
    for _ in range(100_000):  # Redis's own clock: asked, not slept on
        if not await redis_client.exists(keys.lease("expired")):
            break
    # Time passed for "held"; "taken" ran out and another turn holds it now.
    await redis_client.pexpire(keys.lease("held"), 5_000)
    await redis_client.set(keys.lease("taken"), C, px=5_000)

    renewed = await leases.renew([("held", A), ("taken", A), ("expired", A), ("never", A)])

    assert renewed == [True, False, False, False]
    assert 5_000 < await redis_client.pttl(keys.lease("held")) <= 60_000
    assert await redis_client.get(keys.lease("held")) == A.encode()
    assert await redis_client.get(keys.lease("taken")) == C.encode()
    assert 0 < await redis_client.pttl(keys.lease("taken")) <= 5_000
    # A lease that ran out is not brought back: another turn may have come and gone.
    assert not await redis_client.exists(keys.lease("expired"))
    assert not await redis_client.exists(keys.lease("never"))
    assert await leases.renew([]) == []


async def test_a_renewed_lease_still_keeps_other_turns_off_and_is_freed_by_its_turn(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    one, other = (Leases(redis_client, keys, lease_ms=60_000) for _ in range(2))
    await one.take([("o1", A)])
    assert await other.renew([("o1", B)]) == [False]
    assert await one.renew([("o1", A)]) == [True]
    assert await other.take([("o1", B)]) == [Taken.BUSY]
    assert await one.free([("o1", A)]) == 1
    assert await one.renew([("o1", A)]) == [False]


async def test_tokens_of_another_width_are_refused(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    leases = Leases(redis_client, runtime_keys(redis_prefix), lease_ms=60_000)
    with pytest.raises(ValueError, match="16 characters"):
        await leases.take([("o1", "short")])
    with pytest.raises(ValueError, match="16 characters"):
        await leases.renew([("o1", "short")])
    assert await leases.take([]) == []
    assert await leases.free([]) == 0


async def test_a_batch_across_stream_partitions_is_answered_in_its_own_order(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    # Three partitions: on a cluster, three slots; the batch is one script call each.
    keys = RuntimeKeys(redis_prefix, tagged=True, partitions=3)
    one, other = (Leases(redis_client, keys, lease_ms=60_000) for _ in range(2))
    orders = [f"o{n}" for n in range(12)]
    assert {keys.partition(o) for o in orders} == {0, 1, 2}
    assert await one.take([(o, A) for o in orders[::2]]) == [Taken.TAKEN] * 6
    # Every other order is held: the answers come back in the batch's order.
    assert await other.take([(o, B) for o in orders]) == [
        Taken.BUSY if n % 2 == 0 else Taken.TAKEN for n in range(12)
    ]
    assert await one.renew([(o, A) for o in orders]) == [n % 2 == 0 for n in range(12)]
    assert await one.free([(o, A) for o in orders]) == 6
    assert await redis_client.get(keys.lease("o0")) != A.encode()
