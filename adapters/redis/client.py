"""Connecting to Redis (one server, or a Redis Cluster through redis-py's cluster client),
with a failure to connect turned into one clear line."""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors.errors import OrderdError

# Either client: every call orderd makes has the same form on both.
RedisClient: TypeAlias = Redis | RedisCluster

# What a call to Redis raises when Redis did not carry it out: an error reply, or no
# answer at all (the cluster client's own error, when no node answers, is not a RedisError).
FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


class RedisUnavailable(OrderdError):
    """Redis cannot be reached."""


def redact_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


async def connect_redis(url: str, timeout_s: float = 5.0, *, cluster: bool = False) -> RedisClient:
    """A client for ``url`` that has answered a PING; with ``cluster``, a Redis Cluster
    client that found the cluster's nodes from the one ``url`` names."""
    client: RedisClient
    if cluster:
        client = RedisCluster.from_url(url, socket_connect_timeout=timeout_s)
    else:
        client = Redis.from_url(url, socket_connect_timeout=timeout_s)
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError, RedisError,
            RedisClusterException) as exc:  # fmt: skip
        await client.aclose()
        what = "the Redis Cluster" if cluster else "Redis"
        raise RedisUnavailable(
            f"cannot reach {what} at {redact_url(url)}: {exc}; start it or fix redis.url"
        ) from None
    return client
