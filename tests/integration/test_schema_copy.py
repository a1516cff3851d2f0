"""The ``pg`` fixture's schema is a copy of a migrated one: nothing may tell the two apart."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.postgres import schema
from adapters.postgres.pool import connection
from tests.conftest import POSTGRES_DSN, MigratedSchema

Run = Callable[..., subprocess.CompletedProcess[str]]

# Everything the code can see of a schema, one query per kind of object. Names print
# unqualified where the connection's search_path finds them; the rest is normalised.
CATALOG = {
    "schema": """
        SELECT pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace WHERE oid = $1
    """,
    "relations": """
        SELECT relname, relkind::text, relpersistence, relreplident, reloptions::text, relacl::text,
               pg_get_userbyid(relowner), reltoastrelid <> 0 AS toasted
        FROM pg_class WHERE relnamespace = $1 ORDER BY relname
    """,
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attcompression, a.attstorage,
               a.attidentity, a.attgenerated, a.attcollation, a.attstattarget,
               pg_get_serial_sequence(c.oid::regclass::text, a.attname)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid),
               condeferrable, condeferred, convalidated
        FROM pg_constraint WHERE connamespace = $1 ORDER BY 1, 2
    """,
    "indexes": """
        SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relnamespace = $1 ORDER BY c.relname
    """,
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = $1 AND NOT t.tgisinternal ORDER BY c.relname, t.tgname
    """,
    "functions": """
        SELECT proname, prokind, proacl::text,
               CASE WHEN prokind IN ('f', 'p') THEN pg_get_functiondef(oid) END
        FROM pg_proc WHERE pronamespace = $1 ORDER BY proname
    """,
    "sequences": """
        SELECT c.relname, q.seqtypid::regtype::text, q.seqstart, q.seqincrement, q.seqmax,
               q.seqmin, q.seqcache, q.seqcycle, pg_sequence_last_value(c.oid)
        FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid
        WHERE c.relnamespace = $1 ORDER BY c.relname
    """,
    "types": """
        SELECT typname, typtype FROM pg_type WHERE typnamespace = $1 ORDER BY typname
    """,
    "comments": """
        SELECT c.relname, d.objsubid, d.description
        FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass
                                             AND d.objoid = c.oid
        WHERE c.relnamespace = $1 ORDER BY 1, 2
    """,
}


async def describe(conn: Any, schema_name: str) -> dict[str, list[tuple[Any, ...]]]:
    """The catalog's account of ``schema_name`` (its name left out) and each table's row
    count."""
    oid = await conn.fetchval("SELECT $1::regnamespace::oid", f'"{schema_name}"')
    described: dict[str, list[tuple[Any, ...]]] = {}
    for kind, query in CATALOG.items():
        rows = await conn.fetch(query, oid)
        described[kind] = [tuple(_unnamed(value, schema_name) for value in row) for row in rows]
    tables = [row[0] for row in described["relations"] if row[1] == "r"]
    described["rows"] = [
        (table, await conn.fetchval(f'SELECT count(*) FROM "{schema_name}"."{table}"'))
        for table in tables
    ]
    return described


def _unnamed(value: Any, schema_name: str) -> Any:
    if not isinstance(value, str):
        return value
    return value.replace(f'"{schema_name}".', "<schema>.").replace(f"{schema_name}.", "<schema>.")


@pytest.fixture
async def migrated(unique_name: str) -> AsyncIterator[Any]:
    """A connection to a schema that ``migrate`` made, dropped afterwards."""
    name = f"{unique_name}_migrated"
    async with connection(POSTGRES_DSN, name) as conn:
        try:
            await schema.migrate(conn, name)
            yield conn
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_a_copy_has_everything_migrating_makes(
    migrated: Any, pg: Any, pg_schema_name: str
) -> None:
    original = await describe(migrated, await migrated.fetchval("SELECT current_schema()"))
    copy = await describe(pg, pg_schema_name)
    assert copy == original
    assert {"relations", "columns", "constraints", "indexes", "triggers", "functions"} <= {
        kind for kind, rows in copy.items() if rows
    }


async def test_a_copy_is_current_and_migrating_it_applies_nothing(
    pg: Any, pg_schema_name: str
) -> None:
    ledger = await pg.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    shipped = [(m.version, m.name, m.checksum) for m in schema.available()]
    assert [tuple(row) for row in ledger] == shipped
    await schema.require_current(pg, pg_schema_name)
    assert await schema.migrate(pg, pg_schema_name) == []


def test_orderd_migrate_finds_a_copy_up_to_date(pg: Any, run_orderd: Run) -> None:
    done = run_orderd("migrate")
    assert done.returncode == 0, done.stderr
    assert f"is up to date at version {schema.latest_version()}" in done.stdout


async def test_a_copy_keeps_the_connection_in_its_schema_and_counts_from_one(
    pg: Any, pg_schema_name: str
) -> None:
    assert await pg.fetchval("SELECT current_schema()") == pg_schema_name
    assert await pg.fetchval("SELECT current_setting('application_name')") == "orderd"
    first = await pg.fetchval(
        "INSERT INTO webhook_inbox (source, topic, body) "
        "VALUES ('generic', 'orders/paid', '{}') RETURNING id"
    )
    assert first == 1


async def test_each_copy_is_an_orderd_instance_of_its_own(
    pg: Any, migrated_schema: MigratedSchema
) -> None:
    other = f"test_{uuid.uuid4().hex[:12]}"
    async with connection(POSTGRES_DSN, other) as conn:
        try:
            await migrated_schema.copy_to(conn, other)
            theirs = await conn.fetchval("SELECT id FROM orderd_instance")
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
    assert await pg.fetchval("SELECT count(*) FROM orderd_instance") == 1
    assert await pg.fetchval("SELECT id FROM orderd_instance") != theirs
