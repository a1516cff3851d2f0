"""Saving and loading order turns in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from actors.order.behaviour import evolve
from actors.order.events import (
    AttentionNeeded,
    BackorderFilled,
    Holding,
    OrderReceived,
    StockAllocated,
)
from actors.order.types import Customer, Line, NormalizedOrder
from actors.ports.turns import ConcurrentTurn, Loaded, Turn
from adapters.postgres import orders

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ORDER = NormalizedOrder(
    id="ord_x",
    platform="shopify",
    external_id="42",
    name="#42",
    currency="EUR",
    customer=Customer(email="c@example.com"),
    lines=(Line(sku="A", quantity=1),),
)


async def save_first_turn(pg: Any, order_id: str, events: list[Any]) -> None:
    """Save an order's first turn: ``events`` applied to no state."""
    snapshot = None
    for event in events:
        snapshot = evolve(snapshot, event, order_id)
    assert snapshot is not None
    turn = Turn(
        order_id=order_id, loaded=Loaded(None, 0, 0), snapshot=snapshot, events=events, seq=1
    )
    await orders.save_turn(pg, turn)


async def test_an_order_known_before_its_data_gets_it_when_received(pg: Any) -> None:
    held = AttentionNeeded(at=NOW, reason="message 1 dead-lettered")
    first = evolve(None, held, "ord_x")
    await orders.save_turn(
        pg, Turn(order_id="ord_x", loaded=Loaded(None, 0, 0), snapshot=first,
                        events=[held], seq=1)
    )  # fmt: skip
    loaded = await orders.load(pg, "ord_x")
    assert loaded.snapshot is not None
    assert loaded.snapshot.order is None
    assert await pg.fetchval("SELECT count(*) FROM order_documents") == 0
    received = OrderReceived(at=NOW, order=ORDER)
    second = evolve(loaded.snapshot, received, "ord_x")
    await orders.save_turn(
        pg, Turn(order_id="ord_x", loaded=loaded, snapshot=second, events=[received],
                        seq=2)
    )  # fmt: skip
    again = await orders.load(pg, "ord_x")
    assert again.snapshot is not None
    assert again.snapshot.order == ORDER
    assert (again.version, again.last_seq) == (2, 2)
    row = await pg.fetchrow("SELECT name, external_id, source FROM orders WHERE id = 'ord_x'")
    assert tuple(row) == ("#42", "42", "shopify")


async def test_a_turn_saved_against_a_stale_version_is_refused(pg: Any) -> None:
    received = OrderReceived(at=NOW, order=ORDER)
    snapshot = evolve(None, received, "ord_x")
    fresh = Loaded(None, 0, 0)
    await orders.save_turn(
        pg, Turn(order_id="ord_x", loaded=fresh, snapshot=snapshot, events=[received],
                        seq=1)
    )  # fmt: skip
    with pytest.raises(ConcurrentTurn):
        await orders.save_turn(
            pg, Turn(order_id="ord_x", loaded=fresh, snapshot=snapshot, events=[], seq=1)
        )
    assert await pg.fetchval("SELECT count(*) FROM order_events") == 1


async def test_a_received_order_s_lines_are_written_with_what_they_hold(pg: Any) -> None:
    order = NormalizedOrder(
        id="ord_y",
        platform="shopify",
        external_id="43",
        currency="EUR",
        customer=Customer(email="c@example.com"),
        lines=(
            Line(sku="A", quantity=2),
            Line(sku="GIFT", quantity=1, requires_shipping=False),
            Line(sku="A", quantity=3),
            Line(sku="B", quantity=1),
        ),
    )
    events: list[Any] = [
        OrderReceived(at=NOW, order=order),
        StockAllocated(
            at=NOW,
            status="partially_reserved",
            holdings=(Holding("main", "A", 4, 1), Holding("main", "B", 0, 1)),
            policy="ship_available",
        ),
    ]
    await save_first_turn(pg, "ord_y", events)
    rows = await pg.fetch(
        "SELECT sku, reserved, shipped FROM order_lines WHERE order_id = 'ord_y' ORDER BY line_no"
    )
    # Four units of A held: the first line takes its two, the third line the other two.
    assert [tuple(r) for r in rows] == [("A", 2, 0), ("GIFT", 0, 0), ("A", 2, 0), ("B", 0, 0)]
    events_saved = await pg.fetch("SELECT seq FROM order_events WHERE order_id = 'ord_y'")
    assert sorted(r["seq"] for r in events_saved) == [1, 2]


async def test_a_later_turn_writes_the_lines_it_changed_and_leaves_the_others(pg: Any) -> None:
    order = NormalizedOrder(
        id="ord_z",
        platform="shopify",
        external_id="44",
        currency="EUR",
        customer=Customer(email="c@example.com"),
        lines=(Line(sku="A", quantity=2), Line(sku="B", quantity=1)),
    )
    first: list[Any] = [
        OrderReceived(at=NOW, order=order),
        StockAllocated(
            at=NOW,
            status="partially_reserved",
            holdings=(Holding("main", "A", 2, 0), Holding("main", "B", 0, 1)),
            policy="ship_available",
        ),
    ]
    await save_first_turn(pg, "ord_z", first)
    # A line changed behind the order's back stays as it is: only B's units move.
    await pg.execute("UPDATE order_lines SET shipped = 9 WHERE order_id = 'ord_z' AND sku = 'A'")
    loaded = await orders.load(pg, "ord_z")
    filled = BackorderFilled(at=NOW, warehouse="main", lines=(("B", 1),))
    after = evolve(loaded.snapshot, filled, "ord_z")
    await orders.save_turn(
        pg, Turn(order_id="ord_z", loaded=loaded, snapshot=after, events=[filled], seq=2)
    )
    rows = await pg.fetch(
        "SELECT sku, reserved, shipped FROM order_lines WHERE order_id = 'ord_z' ORDER BY line_no"
    )
    assert [tuple(r) for r in rows] == [("A", 2, 9), ("B", 1, 0)]


async def test_a_nul_in_an_event_is_dropped_and_the_log_stays_readable(pg: Any) -> None:
    # A NUL (from a carrier's text, say) and a backslash followed by "u0000", which stays.
    # Text the order's state holds too cannot have one (jsonb refuses it): this is for the
    # events' own, as a carrier's status or its other rates.
    event = AttentionNeeded(at=NOW, reason="carrier said a\x00b \\u0000 \\\x00c")
    text = orders._events_json([event])
    await pg.execute("INSERT INTO orders (id, state) VALUES ('ord_x', 'received')")
    await pg.execute(
        "INSERT INTO order_event_turns (order_id, seq, upto, events) "
        "VALUES ('ord_x', 1, 1, $1::json)",
        text,
    )
    reason = await pg.fetchval("SELECT data->>'reason' FROM order_events")
    assert reason == "carrier said ab \\u0000 \\c"
