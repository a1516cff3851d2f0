"""Connecting to Redis, with a failure to connect turned into one clear line."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors.errors import OrderdError

# What a call to Redis raises when Redis did not carry it out: an error reply, or no
# answer at all.
FAILURES: tuple[type[Exception], ...] = (RedisError, OSError)


class RedisUnavailable(OrderdError):
    """Redis cannot be reached."""


def redact_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


async def connect_redis(url: str, timeout_s: float = 5.0) -> Redis:
    """A client for ``url`` that has answered a PING."""
    client: Redis = Redis.from_url(url, socket_connect_timeout=timeout_s)
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError, RedisError) as exc:
        await client.aclose()
        raise RedisUnavailable(
            f"cannot reach Redis at {redact_url(url)}: {exc}; start Redis or fix redis.url"
        ) from None
    return client
