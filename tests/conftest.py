"""Fixtures shared by every test layer.

Integration fixtures talk to the real Redis and PostgreSQL named by ORDERD_REDIS__URL
and ORDERD_POSTGRES__DSN (``make test`` sets both). Each test gets its own Redis key
prefix and its own PostgreSQL schema, and both are removed afterwards. A migrated schema
is a copy of one migrated once per test process (see :class:`MigratedSchema`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from adapters.postgres import schema as pg_schema
from adapters.postgres.pool import connection, create_pool
from adapters.redis.client import RedisClient
from adapters.redis.keys import RuntimeKeys
from adapters.stock.allocator import Allocator
from adapters.stock.model import AllocationPolicy, WarehouseConfig
from daemon.resources import open_resources
from daemon.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ORDERD = Path(sys.executable).with_name("orderd")

_DEFAULTS = Settings()
REDIS_URL = os.environ.get("ORDERD_REDIS__URL", _DEFAULTS.redis.url)
POSTGRES_DSN = os.environ.get("ORDERD_POSTGRES__DSN", _DEFAULTS.postgres.dsn)
# ORDERD_TEST_REDIS_CLUSTER=1 (``make test``'s second run): the tests that take their Redis
# from these fixtures run against a local Redis Cluster of 3 masters, each with a replica,
# one per test process, started here; orderd is told ``[redis] cluster = true``.
ON_CLUSTER = os.environ.get("ORDERD_TEST_REDIS_CLUSTER") == "1"

# The browser tests' fixtures: ``browser``, ``page`` and ``screenshot``; a local Redis
# Cluster's: ``redis_cluster`` and ``redis_cluster_own``.
pytest_plugins = ("tests.browser", "tests.redis_cluster")


@pytest.fixture
def unique_name() -> str:
    """A short name no other test uses: a schema name or a key prefix part."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pg_schema_name(unique_name: str) -> AsyncIterator[str]:
    """An empty PostgreSQL schema name for this test; the schema is dropped afterwards."""
    yield unique_name
    async with connection(POSTGRES_DSN, "public") as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')


class MigratedSchema:
    """What the migrations make, dumped once as SQL and replayed under each test's own
    schema name. The copy has every table, column, sequence, default, index, constraint,
    trigger, function and row that migrating makes, the same ledger (so it is current and
    migrating it is a no-op) and an instance identity of its own; replaying skips what
    migrating builds only to change or drop it later."""

    def __init__(self, name: str, script: str) -> None:
        self.name = name  # the template schema the script was dumped from
        self.script = script

    @classmethod
    def capture(cls, dsn: str, name: str) -> MigratedSchema:
        """Migrate a template schema ``name``, dump it, and drop it: only the script is kept."""
        return cls(name, asyncio.run(_dump_migrated(dsn, name)))

    async def copy_to(self, conn: Any, schema: str) -> None:
        """Create ``schema`` as migrating it would, in one transaction (one script of
        many statements), leaving ``conn`` with its connection-time settings."""
        await conn.execute(self.script.replace(self.name, f'"{schema}"'))


async def _dump_migrated(dsn: str, name: str) -> str:
    async with connection(dsn, name) as conn:
        try:
            await pg_schema.migrate(conn, name)
            return await asyncio.to_thread(_pg_dump, dsn, name)
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _pg_dump(dsn: str, schema: str) -> str:
    """Schema ``schema``, definitions and rows, as SQL that names every object ``schema.x``."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    binary = shutil.which("pg_dump") or (str(installed[-1]) if installed else None)
    if binary is None:
        raise RuntimeError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    done = subprocess.run(
        [
            binary, "--no-owner", "--column-inserts", f"--schema={schema}",
            # Each database is an orderd instance of its own: a copy makes its identity.
            f"--exclude-table-data={schema}.orderd_instance", f"--dbname={dsn}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pg_dump of the migrated template failed: {done.stderr.strip()}")
    # \restrict and \unrestrict are psql's commands, not SQL.
    script = re.sub(r"^\\(un)?restrict\b.*$", "", done.stdout, flags=re.MULTILINE)
    # The dump sets search_path (to '') and more for the session: RESET ALL undoes that.
    return f"{script}\nINSERT INTO {schema}.orderd_instance DEFAULT VALUES;\nRESET ALL;\n"


@pytest.fixture(scope="session")
def migrated_schema() -> MigratedSchema:
    """The migrated schema, captured once per test process. Its template is named after
    the xdist worker, and made unique: other test runs may share the server."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return MigratedSchema.capture(POSTGRES_DSN, f"orderd_template_{worker}_{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def pg(pg_schema_name: str, migrated_schema: MigratedSchema) -> AsyncIterator[Any]:
    """A connection to a freshly migrated schema of this test's own (a copy: the tests of
    migrating itself migrate ``pg_schema_name``)."""
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_schema.copy_to(conn, pg_schema_name)
        yield conn


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis the tests share: the configured server, or this process's cluster."""
    if not ON_CLUSTER:
        return REDIS_URL
    url: str = request.getfixturevalue("redis_cluster").url
    return url


def runtime_keys(prefix: str) -> RuntimeKeys:
    """The runtime's key names as orderd lays them out on the Redis the tests share."""
    return RuntimeKeys(prefix, tagged=ON_CLUSTER)


def redis_for(url: str) -> RedisClient:
    """A client of ``url``: the cluster's client when the tests run on a cluster."""
    if ON_CLUSTER:
        return RedisCluster.from_url(url)
    return aioredis.Redis.from_url(url)


@pytest.fixture
async def redis_prefix(unique_name: str, redis_url: str) -> AsyncIterator[str]:
    """This test's Redis key prefix; every key under it is deleted afterwards."""
    prefix = f"orderd-{unique_name}:"
    yield prefix
    client = redis_for(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(redis_prefix: str, redis_url: str) -> AsyncIterator[RedisClient]:
    """A client of the shared Redis (keys under this test's prefix are cleaned up)."""
    client = redis_for(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def test_env(pg_schema_name: str, redis_prefix: str, redis_url: str) -> dict[str, str]:
    """Environment overrides that point orderd at this test's schema and key prefix."""
    return {
        "ORDERD_REDIS__URL": redis_url,
        "ORDERD_REDIS__PREFIX": redis_prefix,
        "ORDERD_REDIS__CLUSTER": "true" if ON_CLUSTER else "false",
        "ORDERD_POSTGRES__DSN": POSTGRES_DSN,
        "ORDERD_POSTGRES__SCHEMA": pg_schema_name,
    }


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    """Built-in defaults, pointed at this test's schema and key prefix."""
    return load_settings(None, test_env)


SetStock = Callable[..., Awaitable[None]]


@pytest.fixture
def set_stock(test_env: dict[str, str]) -> SetStock:
    """Set stock on hand as ``orderd stock set`` does (or adjust it, ``mode="delta"``;
    filled backorders are told), in this process: for tests whose subject is not the
    command itself, without a process each."""

    async def set_levels(
        levels: Mapping[str, int],
        warehouse: str | None = None,
        config: Path | None = None,
        *,
        mode: str = "set",
        movement_id: str | None = None,
        reason: str = "stock set",
    ) -> None:
        settings = load_settings(config, test_env)
        code = warehouse or min(settings.warehouses, key=lambda w: (w.priority, w.code)).code
        async with open_resources(settings, pool_size=1) as res:
            await res.allocator.start()
            for sku, units in levels.items():
                done = await res.allocator.adjust(
                    sku, units, movement_id=movement_id or f"test-{uuid.uuid4().hex}",
                    mode="set" if mode == "set" else "delta", reason=reason, warehouse=code,
                )  # fmt: skip
                await res.mail.tell_filled(done)

    return set_levels


@pytest.fixture
def run_orderd(
    test_env: dict[str, str], tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed ``orderd`` console script as an operator would, in this test's world."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {key: value for key, value in os.environ.items() if not key.startswith("ORDERD_")}
        environ.update(test_env)
        environ.update(env or {})
        return subprocess.run(
            [str(ORDERD), *args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts or "faults" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _config_file_is_not_inherited() -> Iterator[None]:
    # A developer's own ORDERD_CONFIG must not leak into tests that expect the defaults.
    saved = os.environ.pop("ORDERD_CONFIG", None)
    yield
    if saved is not None:
        os.environ["ORDERD_CONFIG"] = saved


class RedisServer:
    """A redis-server of the test's own, on a free port: tests that flush, restart or
    empty Redis use one, never the shared server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)  # bounded wait for a process we just started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def add_products(conn: Any, *skus: str) -> None:
    """Catalog rows for ``skus``, as an import would make them."""
    await conn.executemany(
        "INSERT INTO products (sku, name, weight_g, bin, unit_cost) VALUES ($1, $1, 100, 'A-1', 1)",
        [(sku,) for sku in skus],
    )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_allocator(
    pg: Any, pg_schema_name: str, redis_prefix: str, redis_client: aioredis.Redis, clock: Clock
) -> AsyncIterator[Callable[..., Awaitable[Allocator]]]:
    """Build started allocators over this test's schema and key prefix (the shared Redis
    unless a client is given); all are drained and closed afterwards."""
    made: list[tuple[Allocator, Any]] = []

    async def make(
        *,
        redis: aioredis.Redis | None = None,
        warehouses: Sequence[WarehouseConfig] = (WarehouseConfig("main"),),
        policy: AllocationPolicy | None = None,
        prefix: str | None = None,
    ) -> Allocator:
        pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=4)
        allocator = Allocator(
            redis or redis_client,
            pool,
            prefix=prefix or redis_prefix,
            warehouses=warehouses,
            policy=policy,
            clock=clock,
        )
        made.append((allocator, pool))
        await allocator.start()
        return allocator

    yield make
    for allocator, pool in made:
        await allocator.drain()
        await pool.close()


@pytest.fixture
def make_daemon(test_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start real ``orderd run`` processes for this test's schema and prefix; all are
    stopped (killed if they do not stop) afterwards."""
    from tests.integration.daemon_harness import Daemon, daemon_env

    started: list[Any] = []

    def make(name: str = "d1", start: bool = True, **extra: str) -> Daemon:
        places = {
            "ORDERD_LABELS__DIR": str(tmp_path / "labels"),
            "ORDERD_WMS__SPOOL_DIR": str(tmp_path / "spool"),
        }
        env = daemon_env(test_env, **{**places, **extra})
        daemon = Daemon(env, tmp_path / f"{name}.log", name)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        daemon.kill()


class PostgresServer:
    """A PostgreSQL cluster of the test's own, for tests that stop the database."""

    def __init__(self) -> None:
        self.port = _free_port()
        # Outside pytest's private tmp dirs: the server may run as another user.
        self.directory = Path(tempfile.mkdtemp(prefix="orderd-pg-"))
        self.directory.chmod(0o755)
        self.data = self.directory / "data"
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        bindir = _pg_bindir()
        self.pg_ctl = str(bindir / "pg_ctl")
        self.initdb = str(bindir / "initdb")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.user is not None else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        self.data.mkdir(mode=0o700)
        if self.user is not None:
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        self._as_owner(self.initdb, "-D", str(self.data), "--auth=trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "server.log")
        self._as_owner(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (pg_ctl's shutdown ``mode``: smart, fast or immediate)."""
        if (self.data / "postmaster.pid").exists():
            self._as_owner(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) are not installed")
    return candidates[-1]


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.create()
    server.start()
    try:
        yield server
    finally:
        server.remove()
