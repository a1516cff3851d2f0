"""A batch of turns is made into its statement before the transaction, a part at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from actors.order.behaviour import Snapshot
from actors.order.events import AttentionNeeded
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
    assert "INSERT INTO order_events" in query
    assert "order_lines" not in query  # neither turn received an order
    assert query.endswith("SELECT id FROM w0 UNION ALL SELECT id FROM w1")
    assert any("ord_new" in str(a) for a in args)
    assert any("ord_known" in str(a) for a in args)


async def test_no_turns_save_nothing() -> None:
    prepared = await orders.prepare_turns([])
    assert await prepared.save(conn=None) == []
