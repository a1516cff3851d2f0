"""Order leases against real Redis: taken where free, freed only by the turn that took them."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from adapters.redis.keys import RuntimeKeys
from adapters.redis.leases import Leases

A, B, C = "a" * 16, "b" * 16, "c" * 16


async def test_a_lease_is_taken_only_where_free(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = RuntimeKeys(redis_prefix)
    one, other = (Leases(redis_client, keys, lease_ms=60_000) for _ in range(2))
    assert await one.take([("o1", A), ("o2", A)]) == [True, True]
    # Another process: o1 and o2 are taken, o3 is free.
    assert await other.take([("o1", B), ("o3", B), ("o2", B)]) == [False, True, False]
    assert await redis_client.get(keys.lease("o1")) == A.encode()
    assert 0 < await redis_client.pttl(keys.lease("o1")) <= 60_000


async def test_a_lease_is_freed_only_with_the_token_that_took_it(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = RuntimeKeys(redis_prefix)
    leases = Leases(redis_client, keys, lease_ms=60_000)
    await leases.take([("o1", A), ("o2", A)])
    # o2's lease ran out and another turn holds it now: freeing with the old token leaves it.
    await redis_client.set(keys.lease("o2"), C)
    assert await leases.free([("o1", A), ("o2", A), ("o3", A)]) == 1
    assert await redis_client.get(keys.lease("o1")) is None
    assert await redis_client.get(keys.lease("o2")) == C.encode()
    assert await leases.take([("o1", B)]) == [True]


async def test_a_lease_runs_out_by_itself(redis_client: aioredis.Redis, redis_prefix: str) -> None:
    keys = RuntimeKeys(redis_prefix)
    assert await Leases(redis_client, keys, lease_ms=1).take([("o1", A)]) == [True]
    # Expiry is Redis's own clock: wait for it by asking, not by sleeping a guess.
    for _ in range(100_000):
        if not await redis_client.exists(keys.lease("o1")):
            break
    assert await Leases(redis_client, keys, lease_ms=60_000).take([("o1", B)]) == [True]


async def test_tokens_of_another_width_are_refused(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    leases = Leases(redis_client, RuntimeKeys(redis_prefix), lease_ms=60_000)
    with pytest.raises(ValueError, match="16 characters"):
        await leases.take([("o1", "short")])
    assert await leases.take([]) == []
    assert await leases.free([]) == 0
