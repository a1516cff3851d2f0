"""Fixtures of the fault tests: each test has servers of its own to break."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresServer, RedisServer
from tests.faults.world import RedisOfItsOwn, Run, World
from tests.redis_cluster import Cluster

MakeWorld = Callable[[RedisOfItsOwn, bool], World]


@pytest.fixture
def make_world(
    postgres_server: PostgresServer,
    pg_schema_name: str,
    redis_prefix: str,
    run_orderd: Run,
    make_daemon: Callable[..., Any],
    tmp_path: Path,
) -> Iterator[MakeWorld]:
    """A world on a Redis (or Redis Cluster) of the test's own and a private PostgreSQL;
    every daemon started in it is killed before the servers go."""
    made: list[World] = []

    def make(redis: RedisOfItsOwn, cluster: bool) -> World:
        world = World(
            redis=redis,
            postgres=postgres_server,
            schema=pg_schema_name,
            prefix=redis_prefix,
            run_orderd=run_orderd,
            make_daemon=make_daemon,
            directory=tmp_path,
            cluster=cluster,
        )
        made.append(world)
        return world

    try:
        yield make
    finally:
        for world in made:
            world.stop_all()


@pytest.fixture
def world(redis_server: RedisServer, make_world: MakeWorld) -> World:
    """A private Redis and PostgreSQL, and orderd pointed at them."""
    return make_world(redis_server, False)


@pytest.fixture
def cluster_world(redis_cluster_own: Cluster, make_world: MakeWorld) -> World:
    """A Redis Cluster (3 masters, a replica each) and a PostgreSQL of the test's own, and
    orderd told it is on a cluster."""
    return make_world(redis_cluster_own, True)
