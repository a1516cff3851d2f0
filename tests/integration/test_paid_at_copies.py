"""Shipments and ratings carry their order's ``paid_at`` (migration 22): the report counts
them by it without joining the orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from actors.order.behaviour import evolve
from actors.order.events import FulfillmentRequested, OrderReceived
from actors.order.types import Customer, Line, NormalizedOrder
from actors.ports.turns import Loaded, Turn
from actors.shipping.carriers import Parcel
from adapters.postgres import orders, schema
from adapters.postgres.pool import connection
from tests.conftest import POSTGRES_DSN
from tests.integration.test_migrations import migrated_up_to

PAID = datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC)
NOW = PAID + timedelta(hours=1)
ORDER = NormalizedOrder(
    id="ord_p",
    platform="generic",
    external_id="7",
    name="#7",
    currency="EUR",
    customer=Customer(email="c@example.com"),
    lines=(Line(sku="A", quantity=1),),
    paid_at=PAID,
)


async def received_and_requested(pg: Any) -> None:
    """The order saved as its turns save it: received, then its pick list requested."""
    received = OrderReceived(at=NOW, order=ORDER)
    first = evolve(None, received, "ord_p")
    await orders.save_turn(
        pg, Turn(order_id="ord_p", loaded=Loaded(None, 0, 0), snapshot=first,
                 events=[received], seq=1)
    )  # fmt: skip
    loaded = await orders.load(pg, "ord_p")
    assert loaded.snapshot is not None
    requested = FulfillmentRequested(
        at=NOW, shipment_id="ord_p-1", warehouse="main", lines=(("A", 1),),
        service_level="standard", promised_by=date(2026, 11, 30), pick_list=(),
        parcel=Parcel(weight_g=100, length_cm=10, width_cm=10, height_cm=10),
    )  # fmt: skip
    second = evolve(loaded.snapshot, requested, "ord_p")
    await orders.save_turn(
        pg, Turn(order_id="ord_p", loaded=loaded, snapshot=second, events=[requested], seq=2)
    )


async def copies(pg: Any) -> list[Any]:
    rows = await pg.fetch(
        "SELECT paid_at FROM shipments WHERE order_id = 'ord_p' "
        "UNION ALL SELECT paid_at FROM feedback WHERE order_id = 'ord_p'"
    )
    return [r["paid_at"] for r in rows]


async def test_a_shipment_and_a_rating_get_their_order_s_paid_at_when_written(pg: Any) -> None:
    await received_and_requested(pg)
    assert await copies(pg) == [PAID]
    await pg.execute(
        "INSERT INTO feedback (order_id, score, token_id, at) VALUES ('ord_p', 5, 't', $1)", NOW
    )
    assert await copies(pg) == [PAID, PAID]
    # A writer that brings its own value gets the order's all the same.
    await pg.execute(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, paid_at)
        VALUES ('ord_p-2', 'ord_p', 2, 'main', $1)
        """,
        NOW,
    )
    assert await copies(pg) == [PAID, PAID, PAID]


async def test_the_copies_follow_an_order_s_paid_at_set_again(pg: Any) -> None:
    await received_and_requested(pg)
    await pg.execute(
        "INSERT INTO feedback (order_id, score, token_id, at) VALUES ('ord_p', 4, 't', $1)", NOW
    )
    later = PAID + timedelta(minutes=5)
    await pg.execute("UPDATE orders SET paid_at = $1 WHERE id = 'ord_p'", later)
    assert await copies(pg) == [later, later]
    # A turn names paid_at in its update and leaves it as it was: so do the copies.
    await pg.execute("UPDATE orders SET paid_at = paid_at, state = 'picked' WHERE id = 'ord_p'")
    assert await copies(pg) == [later, later]


async def test_migration_22_copies_paid_at_onto_existing_shipments_and_ratings(
    pg_schema_name: str,
) -> None:
    async with connection(POSTGRES_DSN, pg_schema_name) as conn:
        await migrated_up_to(conn, pg_schema_name, 21)
        await conn.execute(
            """
            INSERT INTO orders (id, source, external_id, state, paid_at)
            VALUES ('ord_1', 'generic', '1', 'delivered', $1),
                   ('ord_2', 'generic', '2', 'needs_attention', NULL)
            """,
            PAID,
        )
        await conn.execute(
            """
            INSERT INTO shipments (id, order_id, seq, warehouse)
            VALUES ('ord_1-1', 'ord_1', 1, 'main'), ('ord_1-2', 'ord_1', 2, 'east'),
                   ('ord_2-1', 'ord_2', 1, 'main');
            INSERT INTO feedback (order_id, score, token_id) VALUES ('ord_1', 5, 't');
            """
        )
        [migration] = [m for m in schema.available() if m.version == 22]
        await conn.execute(migration.sql)
        shipped = await conn.fetch("SELECT id, paid_at FROM shipments ORDER BY id")
        assert [tuple(r) for r in shipped] == [
            ("ord_1-1", PAID), ("ord_1-2", PAID), ("ord_2-1", None)
        ]  # fmt: skip
        assert await conn.fetchval("SELECT paid_at FROM feedback") == PAID
        # Found by it: the index the report's windows read.
        assert await conn.fetchval("SELECT to_regclass('shipments_paid_at') IS NOT NULL")
