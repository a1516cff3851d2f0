"""Telling an outage of a server from a failure of the work that met it.

A message whose turn failed because Redis or PostgreSQL was away, restarting or refusing
connections did nothing wrong: it is tried again once the server is back, as often as it
takes, and never dead-lettered for it.
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors

_REDIS_AWAY = (
    redis_errors.ConnectionError,  # refused, reset, LOADING (BusyLoadingError)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica being promoted
    # A Redis Cluster failing over: a shard without its master, slots moving, or no node
    # answering at all (the cluster client's own error, which is not a RedisError).
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.ClusterError,
    redis_errors.SlotNotCoveredError,
    redis_errors.RedisClusterException,
)
_POSTGRES_AWAY = (
    asyncpg.PostgresConnectionError,  # class 08: cannot connect, connection lost
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.InterfaceError,  # the connection closed under the statement
    asyncpg.InternalClientError,  # the protocol left mid-message by a dropped connection
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


_AWAY = (OSError, TimeoutError, *_REDIS_AWAY, *_POSTGRES_AWAY)


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says a server was unreachable, not that the work was wrong."""
    if isinstance(exc, _AWAY):
        return True
    # A wrapper raised from one (``raise ... from exc``) says what its cause says.
    return exc.__cause__ is not None and is_outage(exc.__cause__)
