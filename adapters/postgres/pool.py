"""Connections to PostgreSQL, with every way of failing to connect turned into one clear line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from adapters.errors import DatabaseUnavailable


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _server_settings(schema: str, backend_flush_after: str = "") -> dict[str, str]:
    # Every object orderd creates or reads lives in the configured schema.
    settings = {"search_path": schema, "application_name": "orderd"}
    if backend_flush_after:
        settings["backend_flush_after"] = backend_flush_after
    return settings


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        why = f"{exc}; create it (createdb) or fix postgres.dsn"
    elif isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        why = f"{exc}; check the user and password in postgres.dsn"
    elif isinstance(exc, TimeoutError):
        why = "timed out; is the server up and the address right?"
    else:
        why = f"{exc or type(exc).__name__}; start PostgreSQL or fix postgres.dsn"
    return DatabaseUnavailable(f"cannot reach PostgreSQL at {redact_dsn(dsn)}: {why}")


_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def connect(dsn: str, schema: str, timeout_s: float = 5.0) -> asyncpg.Connection:
    """One connection with ``search_path`` set to ``schema``."""
    try:
        return await asyncio.wait_for(
            asyncpg.connect(dsn, server_settings=_server_settings(schema), timeout=timeout_s),
            timeout_s + 1,
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout_s: float = 5.0,
    backend_flush_after: str = "",
) -> asyncpg.Pool:
    """A pool whose connections all use ``schema`` (and ``backend_flush_after``, unless
    empty: see PostgresSettings)."""
    try:
        pool: asyncpg.Pool = await asyncio.wait_for(
            asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout_s,
                server_settings=_server_settings(schema, backend_flush_after),
                connection_class=_PooledConnection,
            ),
            timeout_s + 1,
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    return pool


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """orderd leaves no session state behind (no LISTEN, session locks or cursors), so a
    connection going back to the pool skips the reset round trip; an open transaction is
    still rolled back by the pool."""

    def get_reset_query(self) -> str:
        return ""


@asynccontextmanager
async def connection(dsn: str, schema: str, timeout_s: float = 5.0) -> AsyncIterator[Any]:
    """``async with connection(...) as conn``: a single connection, closed afterwards."""
    conn = await connect(dsn, schema, timeout_s)
    try:
        yield conn
    finally:
        await conn.close()
