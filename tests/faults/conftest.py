"""Fixtures of the fault tests: each test has servers of its own to break."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresServer, RedisServer
from tests.faults.world import Run, World


@pytest.fixture
def world(
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    pg_schema_name: str,
    redis_prefix: str,
    run_orderd: Run,
    make_daemon: Callable[..., Any],
    tmp_path: Path,
) -> Iterator[World]:
    """A private Redis and PostgreSQL, and orderd pointed at them; every daemon started
    in it is killed before the servers go."""
    made = World(
        redis=redis_server,
        postgres=postgres_server,
        schema=pg_schema_name,
        prefix=redis_prefix,
        run_orderd=run_orderd,
        make_daemon=make_daemon,
        directory=tmp_path,
    )
    try:
        yield made
    finally:
        made.stop_all()
