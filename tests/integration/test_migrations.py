from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from actors.order.behaviour import evolve
from actors.order.events import AttentionNeeded
from actors.ports.turns import Loaded, Turn
from adapters.errors import SchemaVersionError
from adapters.postgres import orders, schema
from adapters.postgres.pool import connection
from tests.conftest import POSTGRES_DSN

TABLES = {
    "schema_migrations",
    "unstreamed",
    "fulfillment_requests",
    "platform_calls",
    "platform_stock",
    "marketing_opt_outs",
    "stock_days",
    "stock_days_done",
    "sandbox_shipments",
    "products",
    "webhook_inbox",
    "orders",
    "order_lines",
    "order_events",
    "order_event_turns",
    "order_documents",
    "notification_payloads",
    "fulfillment_bodies",
    "shipments",
    "shipment_lines",
    "stock_ledger",
    "notifications",
    "feedback",
    "reminders",
    "dead_letters",
    "orderd_instance",
    "backorder_queue",
    "order_seq",
    "mailbox",
}


async def migrated_up_to(conn: Any, schema_name: str, count: int) -> None:
    """The schema as the first ``count`` migrations left it, to test the next one on."""
    await conn.execute(f'CREATE SCHEMA "{schema_name}"')
    for migration in schema.available()[:count]:
        await conn.execute(migration.sql)


async def tables(conn: Any, schema_name: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema_name
    )
    return {row["table_name"] for row in rows}


async def test_migrate_creates_the_schema_once(pg_schema_name: str) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        assert await schema.current_version(conn) == 0
        applied = await schema.migrate(conn, pg_schema_name)
        assert [m.version for m in applied] == list(range(1, schema.latest_version() + 1))
        assert await tables(conn, pg_schema_name) == TABLES
        assert await schema.migrate(conn, pg_schema_name) == []
        await schema.require_current(conn, pg_schema_name)


async def test_two_processes_migrating_together_apply_each_migration_once(
    pg_schema_name: str,
) -> None:
    async with (
        connection(POSTGRES_DSN, pg_schema_name) as first,
        connection(POSTGRES_DSN, pg_schema_name) as second,
    ):
        results = await asyncio.gather(
            schema.migrate(first, pg_schema_name), schema.migrate(second, pg_schema_name)
        )
        assert sorted(len(applied) for applied in results) == [0, schema.latest_version()]
        count = await first.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == schema.latest_version()


async def test_an_unmigrated_schema_is_refused(pg_schema_name: str) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        with pytest.raises(SchemaVersionError, match="run `orderd migrate`"):
            await schema.require_current(conn, pg_schema_name)


async def test_a_schema_from_a_newer_orderd_is_refused(pg: Any, pg_schema_name: str) -> None:
    await pg.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
    )
    with pytest.raises(SchemaVersionError, match="upgrade orderd"):
        await schema.require_current(pg, pg_schema_name)
    with pytest.raises(SchemaVersionError, match="upgrade orderd"):
        await schema.migrate(pg, pg_schema_name)


async def test_an_edited_migration_is_detected(pg: Any, pg_schema_name: str) -> None:
    await pg.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(SchemaVersionError, match="was changed after it was applied"):
        await schema.migrate(pg, pg_schema_name)


async def test_the_order_event_log_is_append_only(pg: Any) -> None:
    await pg.execute("INSERT INTO orders (id, source, external_id) VALUES ('o1', 'shopify', '1')")
    await pg.execute(
        "INSERT INTO order_event_turns (order_id, seq, upto, events) VALUES ('o1', 1, 1, "
        """'[{"type": "received", "at": "2027-01-08T09:00:00Z"}]')"""
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pg.execute("""UPDATE order_event_turns SET events = '[{"type": "rewritten"}]'""")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pg.execute("DELETE FROM order_event_turns")
    # The log's view of one event per row cannot be written either.
    with pytest.raises(asyncpg.PostgresError):
        await pg.execute("UPDATE order_events SET type = 'rewritten'")
    with pytest.raises(asyncpg.PostgresError):
        await pg.execute("DELETE FROM order_events")
    assert await pg.fetchval("SELECT type FROM order_events") == "received"


async def test_events_saved_one_row_each_are_read_as_before_after_migration_12(
    pg_schema_name: str,
) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 11)
        await conn.execute(
            "INSERT INTO orders (id, source, external_id, document) "
            "VALUES ('o1', 'shopify', '1', '{}')"
        )
        await conn.execute(
            """
            INSERT INTO order_events (order_id, seq, type, at, data) VALUES
                ('o1', 1, 'received', '2027-01-08T09:00:00Z',
                 '{"type": "received", "at": "2027-01-08T09:00:00Z", "order": {}}'),
                ('o1', 2, 'needs_attention', '2027-01-08T09:00:01Z', '{"reason": "r"}')
            """
        )
        await conn.execute(schema.available()[11].sql)  # the next one
        rows = await conn.fetch("SELECT seq, type, at, data FROM order_events ORDER BY seq")
        assert [(r["seq"], r["type"]) for r in rows] == [(1, "received"), (2, "needs_attention")]
        assert rows[1]["at"] == datetime(2027, 1, 8, 9, 0, 1, tzinfo=UTC)
        # An event kept its data, and gained its type and time where it lacked them.
        assert json.loads(rows[0]["data"]) == {
            "type": "received", "at": "2027-01-08T09:00:00Z", "order": {},
        }  # fmt: skip
        assert json.loads(rows[1]["data"])["reason"] == "r"
        assert await conn.fetchval("SELECT count(*) FROM order_event_turns") == 2


async def test_a_turn_after_migration_12_numbers_its_events_after_the_moved_ones(
    pg_schema_name: str,
) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 11)
        await conn.execute("INSERT INTO orders (id, version, last_seq) VALUES ('o1', 1, 1)")
        await conn.execute(
            """
            INSERT INTO order_events (order_id, seq, type, at, data) VALUES
                ('o1', 1, 'needs_attention', '2027-01-08T09:00:00Z', '{"reason": "a"}'),
                ('o1', 2, 'needs_attention', '2027-01-08T09:00:01Z', '{"reason": "b"}')
            """
        )
        for migration in schema.available()[11:]:
            await conn.execute(migration.sql)
        first = AttentionNeeded(at=datetime(2027, 1, 8, 9, 0, tzinfo=UTC), reason="a")
        before = evolve(None, first, "o1")
        held = AttentionNeeded(at=datetime(2027, 1, 9, 9, 0, tzinfo=UTC), reason="c")
        turn = Turn(
            order_id="o1", loaded=Loaded(before, 1, 1), snapshot=evolve(before, held, "o1"),
            events=[held, held], seq=2,
        )  # fmt: skip
        await orders.save_turn(conn, turn)
        rows = await conn.fetch("SELECT seq, data->>'reason' AS r FROM order_events ORDER BY seq")
        assert [(r["seq"], r["r"]) for r in rows] == [(1, "a"), (2, "b"), (3, "c"), (4, "c")]
        turns = await conn.fetch("SELECT seq, upto FROM order_event_turns ORDER BY seq")
        assert [tuple(t) for t in turns] == [(1, 1), (2, 2), (3, 4)]


async def test_documents_leave_the_orders_rows_with_migration_13(pg_schema_name: str) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 12)
        await conn.execute(
            """
            INSERT INTO orders (id, source, external_id, document)
            VALUES ('o1', 'shopify', '1', '{"name": "#1"}'), ('o2', NULL, NULL, NULL)
            """
        )
        await conn.execute(schema.available()[12].sql)  # the next one
        rows = await conn.fetch("SELECT order_id, document::text FROM order_documents")
        assert [tuple(r) for r in rows] == [("o1", '{"name": "#1"}')]
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'orders'",
            pg_schema_name,
        )
        assert "document" not in {c["column_name"] for c in columns}


async def test_states_stored_in_full_as_jsonb_load_after_migration_14(
    pg_schema_name: str,
) -> None:
    """0014 keeps each state as text; one written with every field (as before it) loads as
    it did, and the next save writes it without its default fields."""
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 13)
        held = AttentionNeeded(at=datetime(2026, 12, 1, tzinfo=UTC), reason="look")
        snapshot = evolve(None, held, "o1")
        full = {
            "order_id": "o1", "state": snapshot.state.value, "order": None, "holdings": [],
            "policy": None, "reason": snapshot.reason, "shipments": [], "follow_ups": [],
            "holds": [{"kind": "order"}],
        }  # fmt: skip
        await conn.execute(
            "INSERT INTO orders (id, state, actor_state, last_seq, version) "
            "VALUES ('o1', $1, $2, 1, 1)",
            snapshot.state.value,
            json.dumps(full),
        )
        await conn.execute(schema.available()[13].sql)  # the next one
        loaded = await orders.load(conn, "o1")
        assert loaded.snapshot == snapshot
        again = evolve(snapshot, held, "o1")
        await orders.save_turn(
            conn, Turn(order_id="o1", loaded=loaded, snapshot=again, events=[held], seq=2)
        )
        stored = await conn.fetchval("SELECT actor_state::text FROM orders WHERE id = 'o1'")
        assert set(json.loads(stored)) == {"order_id", "state", "reason", "holds"}
        assert ": " not in stored  # the text as orderd wrote it, not jsonb's
        assert (await orders.load(conn, "o1")).snapshot == again
        kinds = await conn.fetch(
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND column_name IN ('actor_state', 'document')",
            pg_schema_name,
        )
        assert {(k["table_name"], k["data_type"]) for k in kinds} == {
            ("orders", "json"),
            ("order_documents", "json"),
        }


async def test_outbox_contents_move_to_rows_of_their_own_with_migration_15(
    pg_schema_name: str,
) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 14)
        await conn.execute(
            """
            INSERT INTO orders (id) VALUES ('o1');
            INSERT INTO notifications (idempotency_key, order_id, kind, channel, recipient,
                                       payload)
            VALUES ('k1', 'o1', 'shipping_confirmation', 'email', 'a@example.com',
                    '{"kind": "shipping_confirmation", "n": 1}'),
                   ('k2', 'o1', 'delivered', 'email', 'a@example.com', '{"n": 2}');
            INSERT INTO fulfillment_requests (shipment_id, kind, order_id, warehouse, adapter,
                                              body, next_attempt_at)
            VALUES ('s1', 'request', 'o1', 'main', 'sandbox', '{"shipment_id": "s1"}', now()),
                   ('s1', 'cancel', 'o1', 'main', 'sandbox', '{"shipment_id": "s1"}', now()),
                   ('s2', 'request', 'o1', 'main', 'sandbox', '{"shipment_id": "s2"}', now());
            """
        )
        await conn.execute(schema.available()[14].sql)  # the next one
        payloads = await conn.fetch(
            "SELECT n.idempotency_key, p.payload::jsonb AS payload "
            "FROM notification_payloads p JOIN notifications n USING (id) ORDER BY 1"
        )
        assert [(r["idempotency_key"], json.loads(r["payload"])) for r in payloads] == [
            ("k1", {"kind": "shipping_confirmation", "n": 1}),
            ("k2", {"n": 2}),
        ]
        bodies = await conn.fetch("SELECT shipment_id, body::jsonb AS body FROM fulfillment_bodies")
        assert sorted((r["shipment_id"], json.loads(r["body"])) for r in bodies) == [
            ("s1", {"shipment_id": "s1"}),
            ("s2", {"shipment_id": "s2"}),
        ]
        dropped = await conn.fetch(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = $1 "
            "AND column_name IN ('payload', 'body') AND table_name IN "
            "('notifications', 'fulfillment_requests')",
            pg_schema_name,
        )
        assert dropped == []


async def test_stock_movements_happen_once_per_key(pg: Any) -> None:
    insert = (
        "INSERT INTO stock_ledger (movement_key, warehouse, kind, op_id, lines) "
        """VALUES ('main/sku:A/receipt-1', 'main', 'adjust', 'receipt-1', '[["A", 5, 0, 0]]')"""
    )
    await pg.execute(insert)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pg.execute(insert)


async def test_order_states_outside_the_contract_are_refused(pg: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pg.execute(
            "INSERT INTO orders (id, source, external_id, state) "
            "VALUES ('o2', 'shopify', '2', 'lost')"
        )


async def test_messages_not_yet_streamed_become_batches_when_upgrading_to_6(
    pg_schema_name: str,
) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 5)
        await conn.execute(
            """
            INSERT INTO mailbox (order_id, seq, type, body, streamed)
            SELECT 'o' || n, 1, 'cancel_requested', '{}', n % 3 = 0
            FROM generate_series(1, 1200) AS n
            """
        )
        await conn.execute(schema.available()[5].sql)  # the next one
        batches = await conn.fetch("SELECT message_ids FROM unstreamed ORDER BY id")
        noted = [i for row in batches for i in row["message_ids"]]
        waiting = await conn.fetch(
            "SELECT id FROM mailbox WHERE right(order_id, -1)::int % 3 <> 0 ORDER BY id"
        )
        assert noted == [r["id"] for r in waiting]  # 800 messages, in order
        assert [len(row["message_ids"]) for row in batches] == [500, 300]


async def test_long_rows_are_compressed_with_lz4_where_the_server_has_it(pg: Any) -> None:
    try:
        await pg.execute("SET default_toast_compression = lz4")
    except asyncpg.PostgresError:
        pytest.skip("this PostgreSQL was built without lz4")
    # The session's default is pglz: the columns' own setting must win.
    await pg.execute("SET default_toast_compression = pglz")
    document = '{"note": "' + "parcel " * 2000 + '"}'  # long enough to be compressed
    await pg.execute(
        "INSERT INTO orders (id, source, external_id, actor_state) "
        "VALUES ('o1', 'shopify', '1', $1::jsonb)",
        document,
    )
    await pg.execute(
        "INSERT INTO order_documents (order_id, document) VALUES ('o1', $1::jsonb)", document
    )
    await pg.execute(
        "INSERT INTO order_event_turns (order_id, seq, upto, events) "
        "VALUES ('o1', 1, 1, json_build_array($1::json))",
        document,
    )
    await pg.execute(
        "INSERT INTO webhook_inbox (source, topic, delivery_id, body) VALUES ('s', 't', 'd', $1)",
        document.encode(),
    )
    row = await pg.fetchrow(
        """
        SELECT (SELECT pg_column_compression(document) FROM order_documents) AS document,
               pg_column_compression(o.actor_state) AS actor_state,
               (SELECT pg_column_compression(events) FROM order_event_turns) AS events,
               (SELECT pg_column_compression(body) FROM webhook_inbox) AS body
        FROM orders o
        """
    )
    assert dict(row) == dict.fromkeys(("document", "actor_state", "events", "body"), "lz4")
