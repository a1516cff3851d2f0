"""The daemon's PostgreSQL sessions: their schema and how they write out what they write."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.postgres.pool import connection, create_pool
from daemon.resources import open_resources
from daemon.settings import Settings
from tests.conftest import POSTGRES_DSN


async def test_the_daemon_s_sessions_use_its_schema_and_write_out_every_256_kb(
    pg: Any, pg_schema_name: str, settings: Settings
) -> None:
    async with open_resources(settings) as resources, resources.pool.acquire() as conn:
        assert await conn.fetchval("SHOW backend_flush_after") == "256kB"
        assert await conn.fetchval("SELECT current_schema()") == pg_schema_name


async def test_an_empty_setting_leaves_the_server_s_own(pg: Any, settings: Settings) -> None:
    async with connection(POSTGRES_DSN, "public") as plain:
        servers_own = await plain.fetchval("SHOW backend_flush_after")
    postgres = msgspec.structs.replace(settings.postgres, backend_flush_after="")
    settings = msgspec.structs.replace(settings, postgres=postgres)
    async with open_resources(settings) as resources, resources.pool.acquire() as conn:
        assert await conn.fetchval("SHOW backend_flush_after") == servers_own


async def test_a_pool_takes_the_size_it_is_given() -> None:
    pool = await create_pool(
        POSTGRES_DSN, "public", min_size=1, max_size=1, backend_flush_after="1MB"
    )
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW backend_flush_after") == "1MB"
    finally:
        await pool.close()
