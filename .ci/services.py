"""Make sure a Redis >= 7 and a PostgreSQL >= 15 are reachable, then write where they are.

The Makefile runs this before ``make test`` and ``make demo``::

    .venv/bin/python .ci/services.py --env-file .run/services.env

The servers named in the settings (``daemon.settings.load_settings``) are used when they
answer and are new enough. Otherwise a local server is started from the installed binaries
in ``.run/`` under the repository root (or one an earlier run left there is reused). On
Debian, as root, a missing server package is installed with apt-get.

The env file gets exactly ``ORDERD_REDIS__URL=...`` and ``ORDERD_POSTGRES__DSN=...``.
Exit status: 0 when both are usable, 2 with one line on stderr saying why not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import asyncpg
import redis

from adapters.errors import ConfigError
from daemon.settings import load_settings, redact_dsn

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
REDIS_DIR = RUN / "redis"
REDIS_PIDFILE = REDIS_DIR / "redis.pid"
REDIS_LOG = REDIS_DIR / "redis.log"
REDIS_PORTFILE = RUN / "redis.port"
PG_DATA = RUN / "pg"
PG_SOCK = RUN / "pg-sock"
PG_LOG = RUN / "pg.log"

MIN_REDIS = 7
MIN_PG = 15
DEFAULT_DATABASE = "orderd"
PROBE_TIMEOUT_S = 2.0
START_TIMEOUT_S = 30.0
PG_LIB = Path("/usr/lib/postgresql")

T = TypeVar("T")

# Every way a PostgreSQL connection attempt fails: refused, timed out, bad DSN, auth.
PG_CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class Stop(Exception):
    """A reason to give up: printed as one line, exit status 2."""


class Unusable(Exception):
    """A server that does not answer or is too old, or a binary that is missing or too old."""


@dataclass(frozen=True)
class PgTools:
    """An initdb/pg_ctl pair and the PostgreSQL version they belong to."""

    initdb: Path
    pg_ctl: Path
    version: str

    @property
    def major(self) -> int:
        """The major version, e.g. 15."""
        return version_tuple(self.version)[0]


# --- small helpers ---------------------------------------------------------------------


def say(line: str) -> None:
    """One progress line on stderr; stdout stays clean for whoever runs us."""
    print(line, file=sys.stderr)


def rel(path: Path) -> str:
    """``path`` relative to the repository root, for messages."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; anything unparsable sorts as the oldest."""
    match = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else (0,)


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, so messages stay on one line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def last_line(text: str) -> str:
    """The last non-blank line: where tools put the actual error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def describe(exc: BaseException) -> str:
    """A short, one-line reason from a connection error."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    return first_line(str(exc)) or type(exc).__name__


def run(
    cmd: Sequence[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run ``cmd`` and return its stdout; a failure becomes :class:`Stop` naming ``what``."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, cwd=cwd, env=env, check=False
        )
    except OSError as exc:
        raise Stop(f"{what}: cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        why = last_line(proc.stderr) or last_line(proc.stdout) or f"exit {proc.returncode}"
        raise Stop(f"{what} failed: {why}")
    return proc.stdout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(probe: Callable[[], T], what: str, log: Path) -> T:
    """Call ``probe`` until it stops raising :class:`Unusable`, for at most START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            return probe()
        except Unusable as exc:
            if time.monotonic() >= deadline:
                raise Stop(
                    f"{what} did not answer within {START_TIMEOUT_S:.0f} s ({exc}); see {rel(log)}"
                ) from None
        time.sleep(0.2)


# --- installing binaries ---------------------------------------------------------------


def can_apt() -> bool:
    """apt-get is only ours to run as root on Debian."""
    return (
        os.geteuid() == 0
        and Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
    )


def apt_install(package: str, service: str) -> None:
    """``apt-get update`` then install ``package`` without recommends."""
    say(f"{service}: installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}  # never stop at a prompt
    run(["apt-get", "update"], "apt-get update", env=env)
    run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        f"apt-get install {package}",
        env=env,
    )


def find_or_install(
    find: Callable[[], T], package: str, service: str, stop: Callable[[str], str]
) -> T:
    """``find()``; if that fails, install ``package`` with apt-get where allowed and retry.

    ``stop`` turns the reason the binary is unusable into the one-line message to exit with.
    """
    try:
        return find()
    except Unusable as missing:
        if not can_apt():
            raise Stop(stop(str(missing))) from None
    apt_install(package, service)
    try:
        return find()
    except Unusable as still:
        raise Stop(stop(str(still))) from None


# --- Redis -----------------------------------------------------------------------------


def redis_info(url: str) -> dict[str, Any]:
    """PING the server at ``url`` and return its INFO server section; >= 7 required."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
        )
    except ValueError as exc:
        raise Unusable(describe(exc)) from None
    try:
        client.ping()
        info = client.info("server")
    except (redis.RedisError, OSError) as exc:
        raise Unusable(describe(exc)) from None
    finally:
        client.close()
    if not isinstance(info, dict):
        raise Unusable("unexpected reply to INFO")
    version = str(info.get("redis_version", "unknown"))
    if version_tuple(version) < (MIN_REDIS,):
        raise Unusable(f"Redis {version} is older than {MIN_REDIS}")
    return info


def local_redis_url(port: int, configured: str) -> str:
    """The local server's URL, keeping the configured database number."""
    db = urlsplit(configured).path.strip("/")
    return f"redis://127.0.0.1:{port}/{db if db.isdigit() else 0}"


def find_redis_server() -> Path:
    """``redis-server`` on PATH, if it is new enough."""
    found = shutil.which("redis-server")
    if found is None:
        raise Unusable("no redis-server found on PATH")
    output = run([found, "--version"], "redis-server --version")
    match = re.search(r"v=(\S+)", output)
    version = match.group(1) if match else "unknown"
    if version_tuple(version) < (MIN_REDIS,):
        raise Unusable(f"{found} is version {version}, older than {MIN_REDIS}")
    return Path(found)


def running_local_redis(configured: str) -> tuple[int, str] | None:
    """Port and version of the server an earlier run left in .run/redis, if it answers."""
    try:
        pid = int(REDIS_PIDFILE.read_text().strip())
        port = int(REDIS_PORTFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        info = redis_info(local_redis_url(port, configured))
    except Unusable:
        return None
    # A different server may have taken the port since; only reuse our own.
    if info.get("process_id") != pid:
        return None
    return port, str(info["redis_version"])


def start_local_redis(binary: Path, configured: str) -> tuple[int, str]:
    """Start a daemonized, non-persistent redis-server in .run/redis; return port and version."""
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    run(
        [
            str(binary),
            "--daemonize", "yes",
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(REDIS_DIR),
            "--pidfile", str(REDIS_PIDFILE),
            "--logfile", str(REDIS_LOG),
        ],
        "redis-server",
    )  # fmt: skip
    REDIS_PORTFILE.write_text(f"{port}\n")
    url = local_redis_url(port, configured)
    info = wait_until(lambda: redis_info(url), "local redis-server", REDIS_LOG)
    return port, str(info["redis_version"])


def ensure_redis(configured: str) -> str:
    """The Redis URL to use: the configured one if usable, else a local server's."""
    try:
        info = redis_info(configured)
    except Unusable as exc:
        why = str(exc)
    else:
        say(f"redis: using configured {redact_dsn(configured)} ({info['redis_version']})")
        return configured
    reused = running_local_redis(configured)
    if reused is not None:
        port, version = reused
        verb = "reusing"
    else:
        binary = find_or_install(
            find_redis_server,
            "redis-server",
            "redis",
            lambda missing: (
                f"Redis >= {MIN_REDIS} is not reachable at {redact_dsn(configured)} ({why}) "
                f"and {missing}: install Redis {MIN_REDIS} or newer (Debian: apt-get install "
                "redis-server) or set ORDERD_REDIS__URL to a running server"
            ),
        )
        port, version = start_local_redis(binary, configured)
        verb = "started"
    say(
        f"redis: {verb} local {version} on 127.0.0.1:{port} ({rel(REDIS_DIR)}); "
        f"configured {redact_dsn(configured)}: {why}"
    )
    return local_redis_url(port, configured)


# --- PostgreSQL: probing ---------------------------------------------------------------


def database_name(dsn: str) -> str:
    """The database a DSN names (path, else ``?dbname=``), else ``orderd``."""
    parts = urlsplit(dsn)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        name = parse_qs(parts.query).get("dbname", [DEFAULT_DATABASE])[0]
    return name


def quote_ident(name: str) -> str:
    """A SQL identifier in double quotes, safe for any name."""
    return '"' + name.replace('"', '""') + '"'


async def server_version(dsn: str, database: str | None = None) -> str:
    """Connect and return the server's version; raise :class:`Unusable` below 15."""
    conn = await asyncpg.connect(dsn, database=database, timeout=PROBE_TIMEOUT_S)
    try:
        number = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
        version = str(await conn.fetchval("SELECT current_setting('server_version')"))
    finally:
        await conn.close()
    version = version.split()[0]
    if number < MIN_PG * 10000:
        raise Unusable(f"PostgreSQL {version} is older than {MIN_PG}")
    return version


async def create_database(dsn: str, name: str) -> None:
    """CREATE DATABASE ``name`` on the DSN's server, via its ``postgres`` database."""
    conn = await asyncpg.connect(dsn, database="postgres", timeout=PROBE_TIMEOUT_S)
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    except asyncpg.DuplicateDatabaseError:
        pass  # someone else made it meanwhile; that is all we wanted
    finally:
        await conn.close()


async def probe_postgres_async(dsn: str) -> tuple[str, bool]:
    """Version of the server at ``dsn``, creating its database if missing; and if we did."""
    try:
        return await server_version(dsn), False
    except asyncpg.InvalidCatalogNameError:
        pass
    # The server answers but the database is missing: check the server is new enough
    # before creating anything on it.
    await server_version(dsn, database="postgres")
    await create_database(dsn, database_name(dsn))
    return await server_version(dsn), True


def probe_postgres(dsn: str) -> tuple[str, bool]:
    """:func:`probe_postgres_async` with every connection failure as :class:`Unusable`."""
    try:
        return asyncio.run(asyncio.wait_for(probe_postgres_async(dsn), 4 * PROBE_TIMEOUT_S))
    except PG_CONNECT_ERRORS as exc:
        raise Unusable(describe(exc)) from None


# --- PostgreSQL: a local cluster -------------------------------------------------------


def pg_tool_version(initdb: Path) -> str:
    """``initdb --version`` -> ``"15.20"``."""
    output = run([str(initdb), "--version"], f"{initdb} --version")
    match = re.search(r"\(PostgreSQL\)\s+(\S+)", output)
    return match.group(1) if match else "unknown"


def pg_tool_candidates() -> list[tuple[Path, Path]]:
    """initdb/pg_ctl pairs: the ones on PATH, then /usr/lib/postgresql/*/bin, highest first."""
    pairs: list[tuple[Path, Path]] = []
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        pairs.append((Path(initdb), Path(pg_ctl)))
    # Debian keeps them out of PATH, one directory per major version.
    bindirs = sorted(PG_LIB.glob("*/bin"), key=lambda d: version_tuple(d.parent.name), reverse=True)
    for bindir in bindirs:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            pairs.append((bindir / "initdb", bindir / "pg_ctl"))
    return pairs


def find_pg_tools() -> PgTools:
    """The first initdb/pg_ctl pair of PostgreSQL 15 or newer."""
    too_old: list[str] = []
    for initdb, pg_ctl in pg_tool_candidates():
        version = pg_tool_version(initdb)
        if version_tuple(version) >= (MIN_PG,):
            return PgTools(initdb, pg_ctl, version)
        too_old.append(f"{initdb} is {version}")
    if too_old:
        raise Unusable(f"initdb found is older than {MIN_PG} ({'; '.join(too_old)})")
    raise Unusable("no initdb/pg_ctl found")


def postgres_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None for ourselves, ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise Stop(
            "running as root, and initdb/postgres refuse to run as root, but there is no "
            "'postgres' system user to run them as: create one (adduser --system --group "
            "postgres) or run this as an ordinary user"
        ) from None


def as_user(user: pwd.struct_passwd | None) -> list[str]:
    """Command prefix running a tool as ``user`` (none needed for ourselves)."""
    if user is None:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Stop("running as root and runuser is missing: install util-linux")
    return [runuser, "-u", user.pw_name, "--"]


def prepare_pg_dirs(user: pwd.struct_passwd | None) -> None:
    """Create .run/pg, .run/pg-sock and .run/pg.log, owned by whoever runs PostgreSQL."""
    RUN.mkdir(parents=True, exist_ok=True)
    for directory in (PG_DATA, PG_SOCK):
        directory.mkdir(mode=0o700, exist_ok=True)
    if user is None:
        return
    # .run/ stays root's; the postgres user only needs to pass through it.
    RUN.chmod(RUN.stat().st_mode | 0o011)
    PG_LOG.touch()
    for path in (PG_DATA, PG_SOCK, PG_LOG):
        os.chown(path, user.pw_uid, user.pw_gid)
    # The repository's parents must let that user through too, or initdb fails obscurely.
    probe = subprocess.run(
        [*as_user(user), "test", "-w", str(PG_DATA)], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise Stop(
            f"user {user.pw_name} cannot write {PG_DATA}: let it through the parent "
            f"directories of {ROOT} (chmod o+x) or set ORDERD_POSTGRES__DSN to a running server"
        )


def init_cluster(tools: PgTools, prefix: list[str]) -> None:
    """initdb .run/pg unless it already holds a cluster of the same major version."""
    marker = PG_DATA / "PG_VERSION"
    if marker.exists():
        major = marker.read_text().strip()
        if major != str(tools.major):
            raise Stop(
                f"{rel(PG_DATA)} holds a PostgreSQL {major} cluster but the binaries found are "
                f"{tools.version}: stop it and remove {rel(RUN)}"
            )
        return
    cmd = [str(tools.initdb), "-D", str(PG_DATA), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
    run([*prefix, *cmd], "initdb", cwd=RUN)


def running_cluster_port(tools: PgTools, prefix: list[str]) -> int | None:
    """The port of the cluster already running from .run/pg, if one is."""
    status = subprocess.run(
        [*prefix, str(tools.pg_ctl), "-D", str(PG_DATA), "status"],
        capture_output=True,
        cwd=RUN,
        check=False,
    )
    if status.returncode != 0:
        return None
    # postmaster.pid: pid, data directory, start time, port, ...
    try:
        return int((PG_DATA / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def start_cluster(tools: PgTools, prefix: list[str]) -> int:
    """pg_ctl start on a free port, TCP on 127.0.0.1 only, socket in .run/pg-sock."""
    port = free_port()
    options = f"-p {port} -k {shlex.quote(str(PG_SOCK))} -c listen_addresses=127.0.0.1"
    cmd = [str(tools.pg_ctl), "-D", str(PG_DATA), "-l", str(PG_LOG), "-w", "-o", options]
    run([*prefix, *cmd, "start"], f"pg_ctl start (see {rel(PG_LOG)})", cwd=RUN)
    return port


def local_postgres(configured: str, why: str) -> tuple[str, str, str]:
    """Start (or reuse) the cluster in .run/pg; return its DSN, version and what we did."""
    tools = find_or_install(
        find_pg_tools,
        "postgresql",
        "postgres",
        lambda missing: (
            f"PostgreSQL >= {MIN_PG} is not reachable at {redact_dsn(configured)} ({why}) "
            f"and {missing}: install PostgreSQL {MIN_PG} or newer (Debian: apt-get install "
            "postgresql) or set ORDERD_POSTGRES__DSN to a running server"
        ),
    )
    user = postgres_user()
    prefix = as_user(user)
    prepare_pg_dirs(user)
    init_cluster(tools, prefix)
    port = running_cluster_port(tools, prefix)
    verb = "reusing"
    if port is None:
        port = start_cluster(tools, prefix)
        verb = "started"
    name = quote(database_name(configured), safe="")
    dsn = f"postgresql://postgres@127.0.0.1:{port}/{name}"
    version, _ = wait_until(lambda: probe_postgres(dsn), "local PostgreSQL", PG_LOG)
    return dsn, version, f"{verb} local {version} on 127.0.0.1:{port} ({rel(PG_DATA)})"


def ensure_postgres(configured: str) -> str:
    """The DSN to use: the configured one if usable, else a local cluster's."""
    try:
        version, created = probe_postgres(configured)
    except Unusable as exc:
        why = str(exc)
    else:
        extra = f", created database {database_name(configured)}" if created else ""
        say(f"postgres: using configured {redact_dsn(configured)} ({version}{extra})")
        return configured
    dsn, version, what = local_postgres(configured, why)
    say(f"postgres: {what}; configured {redact_dsn(configured)}: {why}")
    return dsn


# --- main ------------------------------------------------------------------------------


def write_env(path: Path, redis_url: str, postgres_dsn: str) -> None:
    """Write the two settings, atomically and readable only by us (the DSN may hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"ORDERD_REDIS__URL={redis_url}\nORDERD_POSTGRES__DSN={postgres_dsn}\n"
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """``--env-file PATH`` (default .run/services.env under the repository root)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--stop", action="store_true", help="stop the local servers an earlier run started"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=RUN / "services.env",
        help="where to write ORDERD_REDIS__URL and ORDERD_POSTGRES__DSN",
    )
    return parser.parse_args(argv)


def stop_local() -> None:
    """Stop the Redis and PostgreSQL this script started under .run/, if they run."""
    try:
        pid = int(REDIS_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid and pid_alive(pid):
        os.kill(pid, 15)
        say(f"redis: stopped local server (pid {pid})")
    if (PG_DATA / "PG_VERSION").exists():
        tools = find_pg_tools()
        prefix = as_user(postgres_user())
        if running_cluster_port(tools, prefix) is not None:
            run(
                [*prefix, str(tools.pg_ctl), "-D", str(PG_DATA), "-m", "fast", "stop"],
                "pg_ctl stop",
                cwd=RUN,
            )
            say(f"postgres: stopped local server ({rel(PG_DATA)})")


def main(argv: Sequence[str] | None = None) -> int:
    """Check or start both services and write the env file; 0 or 2."""
    args = parse_args(argv)
    if args.stop:
        try:
            stop_local()
        except (Stop, Unusable, OSError) as exc:
            print(f"orderd: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"orderd: {exc}", file=sys.stderr)
        return 2
    try:
        redis_url = ensure_redis(settings.redis.url)
        postgres_dsn = ensure_postgres(settings.postgres.dsn)
        write_env(args.env_file, redis_url, postgres_dsn)
    except Stop as exc:
        print(f"orderd: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"orderd: services: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
