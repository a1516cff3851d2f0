"""A batch of turns is made into its statement before the transaction, a part at a time."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from actors.order.behaviour import Snapshot
from actors.order.events import AttentionNeeded, ShipmentPicked
from actors.order.shipment import Shipment, ShipmentStatus
from actors.order.states import OrderState
from actors.ports.turns import Loaded, Turn
from adapters.postgres import orders

AT = datetime(2026, 11, 26, 12, tzinfo=UTC)


def held(order_id: str, version: int) -> Turn:
    snapshot = Snapshot(order_id=order_id, state=OrderState.NEEDS_ATTENTION)
    return Turn(
        order_id=order_id,
        loaded=Loaded(snapshot if version else None, version, version),
        snapshot=snapshot,
        events=(AttentionNeeded(at=AT, reason="looked at"),),
        seq=version + 1,
    )


async def test_other_tasks_run_between_the_parts_of_a_batch() -> None:
    steps = 0

    async def webhooks() -> None:
        nonlocal steps
        while True:
            steps += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(webhooks())
    await asyncio.sleep(0)
    before = steps
    await orders.prepare_turns([held(f"ord_{n}", n % 2) for n in range(40)])
    during = steps - before
    other.cancel()
    assert during >= 4  # one step of the loop or more between each pair of parts


async def test_the_statement_inserts_new_orders_and_updates_known_ones() -> None:
    prepared = await orders.prepare_turns([held("ord_new", 0), held("ord_known", 3)])
    query, args = prepared.statement()
    assert "INSERT INTO orders" in query
    assert "UPDATE orders" in query
    assert "INSERT INTO order_event_turns" in query
    assert "order_lines" not in query  # neither turn received an order
    assert query.endswith("SELECT id FROM w0 UNION ALL SELECT id FROM w1")
    assert any("ord_new" in str(a) for a in args)
    assert any("ord_known" in str(a) for a in args)


async def test_no_turns_save_nothing() -> None:
    prepared = await orders.prepare_turns([])
    assert await prepared.save(conn=None) == []


def with_shipments(
    order_id: str, version: int, before: tuple[Shipment, ...], after: tuple[Shipment, ...]
) -> Turn:
    was = Snapshot(order_id=order_id, state=OrderState.FULFILLMENT_REQUESTED, shipments=before)
    now = Snapshot(order_id=order_id, state=OrderState.FULFILLMENT_REQUESTED, shipments=after)
    return Turn(
        order_id=order_id,
        loaded=Loaded(was if version else None, version, version),
        snapshot=now,
        events=(ShipmentPicked(at=AT, shipment_id=after[0].id),),
        seq=version + 1,
    )


def shipment(number: int, status: ShipmentStatus = "requested") -> Shipment:
    return Shipment(
        id=f"ord_s-{number}", seq=number, warehouse="main", lines=(("A", 1),),
        status=status, service_level="standard",
    )  # fmt: skip


async def test_only_the_shipments_a_turn_changed_are_written() -> None:
    # Shipment 1 was picked; shipment 2 stayed as it was; shipment 3 is new.
    turn = with_shipments(
        "ord_s", 2, (shipment(1), shipment(2)), (shipment(1, "picked"), shipment(2), shipment(3))
    )
    query, args = (await orders.prepare_turns([turn])).statement()
    assert "UPDATE shipments" in query
    assert "INSERT INTO shipments" in query
    assert "ON CONFLICT (id) DO UPDATE" in query  # only on the insert of the new one
    # Each JSON parameter's rows: a shipment's row has 38 values, a line's four (as has
    # the turn's events' row, named by the order).
    rows = [r for a in args if isinstance(a, str) and a.startswith("[[") for r in json.loads(a)]
    assert sorted(r[0] for r in rows if len(r) == 38) == ["ord_s-1", "ord_s-3"]
    lines = [r[0] for r in rows if len(r) == 4 and r[0] != "ord_s"]
    assert lines == ["ord_s-3"]  # only the new one's line
    assert ["ord_s-1"] in args  # the update finds its row by the key
    assert "INSERT INTO shipment_lines" in query


async def test_a_turn_that_changed_no_shipment_writes_none() -> None:
    turn = with_shipments("ord_s", 2, (shipment(1, "picked"),), (shipment(1, "picked"),))
    query, _ = (await orders.prepare_turns([turn])).statement()
    assert "shipments" not in query
    assert "shipment_lines" not in query
