"""Numbered plain-SQL migrations, applied once each, in order, under an advisory lock.

Files are ``migrations/NNNN_name.sql``. ``schema_migrations`` records each applied
version with a checksum, so an edited migration or a database from a newer orderd is
reported instead of silently mixed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from adapters.errors import SchemaVersionError

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with this orderd, by version."""
    found = []
    for entry in resources.files("adapters.postgres").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n without gaps: {versions}")
    return found


def latest_version() -> int:
    return len(available())


async def current_version(conn: Any) -> int:
    """The highest applied version in the connection's schema (0 for an empty schema)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return version


async def require_current(conn: Any, schema: str) -> None:
    """Raise :class:`SchemaVersionError` unless the schema is exactly at the latest version."""
    version = await current_version(conn)
    latest = latest_version()
    if version < latest:
        raise SchemaVersionError(
            f"database schema {schema!r} is at version {version}, this orderd needs {latest}: "
            "run `orderd migrate`"
        )
    if version > latest:
        raise SchemaVersionError(
            f"database schema {schema!r} is at version {version}, newer than this orderd "
            f"knows ({latest}): upgrade orderd"
        )


async def migrate(conn: Any, schema: str) -> list[Migration]:
    """Apply every pending migration in one transaction; return those applied.

    Two processes starting together serialise on an advisory lock keyed by the schema,
    and the second finds nothing left to do.
    """
    shipped = available()
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('orderd.migrate:' || $1))", schema
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(_LEDGER)
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        newest_known = shipped[-1].version if shipped else 0
        if applied and max(applied) > newest_known:
            raise SchemaVersionError(
                f"database schema {schema!r} is at version {max(applied)}, newer than this "
                f"orderd knows ({newest_known}): upgrade orderd"
            )
        pending = []
        for migration in shipped:
            recorded = applied.get(migration.version)
            if recorded is None:
                pending.append(migration)
            elif recorded != migration.checksum:
                raise SchemaVersionError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    f"was applied to schema {schema!r}; restore the original file"
                )
        for migration in pending:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    return pending
