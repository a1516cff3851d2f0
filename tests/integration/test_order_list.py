"""``orderd order list``: orders by state, held, and stuck behind messages not applied."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from actors.order.messages import CancelRequested
from adapters.postgres import mailbox

Run = Callable[..., subprocess.CompletedProcess[str]]


async def _order(pg: Any, order_id: str, state: str, reason: str | None = None) -> None:
    await pg.execute(
        """
        INSERT INTO orders (id, source, external_id, name, state, state_reason, last_seq)
        VALUES ($1, 'generic', $1, '#' || $1, $2, $3, 1)
        """,
        order_id,
        state,
        reason,
    )
    await pg.execute("INSERT INTO order_seq (order_id, last) VALUES ($1, 1)", order_id)


async def test_orders_are_listed_by_state_held_and_stuck(pg: Any, run_orderd: Run) -> None:
    await _order(pg, "ord_a", "fulfillment_requested")
    await _order(pg, "ord_b", "needs_attention", "address: unknown country 'XX'")
    async with pg.transaction():
        # A message for ord_a not applied for an hour, and one for an order never created.
        await mailbox.post(
            pg,
            [
                CancelRequested(order_id="ord_a", reason="t", requested_by="t"),
                CancelRequested(order_id="ord_c", reason="t", requested_by="t"),
            ],
        )
    await pg.execute("UPDATE mailbox SET created_at = now() - interval '1 hour'")

    every = run_orderd("order", "list", "--json")
    assert every.returncode == 0, every.stderr
    assert {o["id"] for o in json.loads(every.stdout)} == {"ord_a", "ord_b", "ord_c"}

    held = run_orderd("order", "list", "--held")
    assert held.returncode == 0
    assert held.stdout.splitlines() == [
        "ord_b #ord_b  needs_attention: address: unknown country 'XX'"
    ]

    stuck = json.loads(run_orderd("order", "list", "--stuck", "--json").stdout)
    assert sorted((o["id"], o["state"], o["unapplied"]) for o in stuck) == [
        ("ord_a", "fulfillment_requested", 1),
        ("ord_c", None, 1),
    ]
    # A bound longer than an hour finds nothing stuck.
    longer = run_orderd(
        "order", "list", "--stuck", env={"ORDERD_RUNTIME__MAX_PENDING_AGE_S": "7200"}
    )
    assert longer.stdout.strip().startswith("no orders found (looked in database ")

    by_state = json.loads(
        run_orderd("order", "list", "--state", "needs_attention", "--json").stdout
    )
    assert [o["id"] for o in by_state] == ["ord_b"]
    wrong = run_orderd("order", "list", "--state", "lost")
    assert wrong.returncode == 2
    assert "--state: no such state 'lost'" in wrong.stderr
