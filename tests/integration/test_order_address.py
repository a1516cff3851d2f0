"""``orderd order set-address`` on a running daemon: an order held for its address goes to
the warehouse once it is corrected; an address that would not do changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import eventually, generic_headers, request

MakeDaemon = Callable[..., Any]


def body_without_city(ref: str) -> bytes:
    return json.dumps(
        {
            "id": ref, "name": f"#{ref}", "status": "paid", "paid_at": "2026-11-26T09:00:00Z",
            "currency": "EUR", "customer": {"email": "c@example.com"},
            "shipping_address": {"name": "C", "line1": "Damrak 1", "city": "",
                                 "postal_code": "1012 LG", "country": "NL"},
            "lines": [{"sku": "MUG-1", "quantity": 1}],
        }
    ).encode()  # fmt: skip


async def test_an_order_held_for_its_address_goes_on_once_it_is_corrected(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "MUG-1")
    await set_stock({"MUG-1": 5})
    daemon = make_daemon()
    body = body_without_city("A-1")
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

    async def held() -> bool:
        state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = '#A-1'")
        return state == "needs_attention"

    await eventually(held, what="the order to be held for its address")
    assert await pg.fetchval("SELECT state_reason FROM orders WHERE name = '#A-1'") == (
        "cannot ship: address: city is missing"
    )

    # An address that still would not do is refused, and nothing is stored.
    bad = run_orderd("order", "set-address", "#A-1", "--postal-code", "1012")
    assert bad.returncode == 2
    assert "city is missing" in bad.stderr
    assert "does not look like" in bad.stderr
    assert await pg.fetchval("SELECT count(*) FROM mailbox") == 1  # the paid order only

    fixed = run_orderd("order", "set-address", "#A-1", "--city", "Amsterdam")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip().endswith(
        "the address is corrected; it is fulfillment_requested now"
    )
    shown = json.loads(run_orderd("order", "show", "#A-1", "--json").stdout)
    assert shown["state"] == "fulfillment_requested"
    assert shown["holds"] == []
    # The order's document holds the address the pick list went out with.
    document = json.loads(
        await pg.fetchval(
            "SELECT d.document::text FROM order_documents d JOIN orders o ON o.id = d.order_id "
            "WHERE o.name = '#A-1'"
        )
    )
    assert document["shipping_address"]["city"] == "Amsterdam"
    events = await pg.fetch(
        "SELECT e.type FROM order_events e JOIN orders o ON o.id = e.order_id "
        "WHERE o.name = '#A-1' ORDER BY e.seq"
    )
    assert [e["type"] for e in events][-3:] == [
        "address_changed", "hold_released", "fulfillment_requested",
    ]  # fmt: skip

    # Its pick list is at the warehouse now: the address stays, and the command says why.
    late = run_orderd("order", "set-address", "#A-1", "--line1", "Damrak 2")
    assert late.returncode == 2
    assert "went to the warehouse with the address on it" in late.stderr
