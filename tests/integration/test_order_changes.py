"""Shopify's ``orders/updated`` on a running daemon: a new address and new lines are
applied while the order waits for stock (what it held given back, the new lines reserved,
the pick list made from them); once its pick list is out, the order is held saying what
changed; an update that changes nothing shippable, or of an order orderd never received,
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import eventually, request, shopify_body, shopify_headers

MakeDaemon = Callable[..., Any]
ORDER = 820982911946154508


def updated(body: bytes, **changes: Any) -> bytes:
    """The order's ``orders/updated`` body: as paid, with ``changes``."""
    data = json.loads(body)
    data.update(changes)
    return json.dumps(data).encode()


async def state_of(pg: Any) -> tuple[str, str | None]:
    row = await pg.fetchrow("SELECT state, state_reason FROM orders WHERE name = '#1001'")
    return (row["state"], row["state_reason"]) if row else ("", None)


async def test_a_changed_address_and_lines_are_applied_while_the_order_waits_for_stock(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 1})  # two ordered, one on the shelf
    daemon = make_daemon()
    paid = shopify_body()
    assert request(f"{daemon.url}/webhooks/shopify", paid, shopify_headers(paid))[0] == 202

    async def waiting() -> bool:
        return (await state_of(pg))[0] == "backordered"

    await eventually(waiting, what="the order to wait for stock")

    # The customer takes one of the two and moves house, on Shopify.
    data = json.loads(paid)
    data["line_items"][1]["quantity"] = 1
    data["shipping_address"]["address1"] = "9 Other Street"
    change = json.dumps(data).encode()
    answer = request(
        f"{daemon.url}/webhooks/shopify", change, shopify_headers(change, "orders/updated")
    )
    assert answer[0] == 202

    async def requested() -> bool:
        return (await state_of(pg))[0] == "fulfillment_requested"

    await eventually(requested, what="the changed order to go to the warehouse")
    lines = await pg.fetch(
        "SELECT sku, quantity, reserved FROM order_lines WHERE requires_shipping ORDER BY sku"
    )
    assert [tuple(r) for r in lines] == [("SKU2006-001", 1, 1), ("SKU2006-020", 1, 1)]
    shipment_lines = await pg.fetch("SELECT sku, quantity FROM shipment_lines ORDER BY sku")
    assert [tuple(r) for r in shipment_lines] == [("SKU2006-001", 1), ("SKU2006-020", 1)]
    document = json.loads(await pg.fetchval("SELECT document::text FROM order_documents"))
    assert document["shipping_address"]["line1"] == "9 Other Street"
    events = await pg.fetch("SELECT type, data::text FROM order_events ORDER BY seq")
    assert "lines_changed" in [e["type"] for e in events]

    # The same change delivered again, and Shopify's update for a tag: nothing moves.
    again = updated(change, tags="vip")
    headers = shopify_headers(again, "orders/updated")
    assert request(f"{daemon.url}/webhooks/shopify", again, headers)[0] == 202

    # After the pick list, a new address holds the order for a person.
    data["shipping_address"]["address1"] = "1 Third Street"
    late = json.dumps(data).encode()
    answer = request(
        f"{daemon.url}/webhooks/shopify", late, shopify_headers(late, "orders/updated")
    )
    assert answer[0] == 202

    async def held() -> bool:
        return (await state_of(pg))[0] == "needs_attention"

    await eventually(held, what="the order to be held")
    shipment = await pg.fetchval("SELECT id FROM shipments")
    assert (await state_of(pg))[1] == (
        f"the shipping address changed on shopify after the pick list was sent ({shipment})"
    )
    held_lines = await pg.fetch("SELECT sku, quantity FROM shipment_lines ORDER BY sku")
    assert [tuple(r) for r in held_lines] == [("SKU2006-001", 1), ("SKU2006-020", 1)]


async def test_an_update_of_an_order_orderd_never_received_is_acknowledged_and_ignored(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon()
    body = shopify_body(financial_status="pending")
    status, answer = request(
        f"{daemon.url}/webhooks/shopify", body, shopify_headers(body, "orders/updated")
    )
    assert status == 200
    assert answer == {"status": "ignored", "reason": "not an order orderd received"}
    assert await pg.fetchval("SELECT count(*) FROM orders") == 0
