"""Opening what the commands need (PostgreSQL, Redis, the allocator) from the settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.mail import Mail
from actors.ports.observe import UNOBSERVED, Observer
from adapters.postgres import schema
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.pool import connection, create_pool
from adapters.redis.client import RedisClient, connect_redis
from adapters.redis.streams import order_stream, partition_streams
from adapters.stock.allocator import Allocator
from adapters.stock.model import AllocationPolicy, WarehouseConfig
from daemon.settings import Settings


def allocation_policy(settings: Settings) -> AllocationPolicy:
    # The settings section and the allocator's policy have the same fields.
    return AllocationPolicy(**msgspec.structs.asdict(settings.allocation))


def database(settings: Settings) -> Any:
    """``async with database(settings) as conn``: one connection in the configured schema."""
    pg = settings.postgres
    return connection(pg.dsn, pg.schema, pg.connect_timeout_s)


@dataclass(frozen=True)
class Resources:
    settings: Settings
    pool: Any
    redis: RedisClient
    allocator: Allocator
    mail: Mail


@asynccontextmanager
async def open_resources(
    settings: Settings, *, pool_size: int | None = None, observer: Observer = UNOBSERVED
) -> AsyncIterator[Resources]:
    """PostgreSQL (schema checked), Redis (answering) and an allocator over both."""
    pg = settings.postgres
    size = pool_size or pg.pool_max_size
    pool = await create_pool(
        pg.dsn,
        pg.schema,
        min_size=min(pg.pool_min_size, size),
        max_size=size,
        timeout_s=pg.connect_timeout_s,
        backend_flush_after=pg.backend_flush_after,
    )
    try:
        async with pool.acquire() as conn:
            await schema.require_current(conn, pg.schema)
        redis = await connect_redis(settings.redis.url, cluster=settings.redis.cluster)
        try:
            allocator = Allocator(
                redis,
                pool,
                prefix=settings.redis.prefix,
                warehouses=[WarehouseConfig(w.code, w.priority) for w in settings.warehouses],
                policy=allocation_policy(settings),
                observer=observer,
            )
            keys = settings.redis.runtime_keys()
            mail = Mail(PostgresMailbox(pool), order_stream(partition_streams(redis, keys), keys))
            yield Resources(settings, pool, redis, allocator, mail)
            await allocator.drain()
            await mail.drain()
        finally:
            await redis.aclose()
    finally:
        try:
            # A connection to a server gone away can keep a graceful close waiting.
            await asyncio.wait_for(pool.close(), _CLOSE_S)
        except TimeoutError:
            pool.terminate()


_CLOSE_S = 5.0
