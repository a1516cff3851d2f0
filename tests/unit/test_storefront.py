"""What the platforms are told of a parcel: its lines, as the order and the shop hold them."""

from __future__ import annotations

from typing import Any

import pytest

from actors.order.types import Customer, Line, NormalizedOrder
from actors.storefront import ParcelShipped, PlatformError, ShippedLine, shipped_lines
from adapters.platforms.shopify_admin import _line_items, _restored_in
from adapters.platforms.woocommerce_api import _note_text


def an_order(*lines: Line) -> NormalizedOrder:
    return NormalizedOrder(
        id="ord_1", platform="shopify", external_id="1001", currency="EUR",
        customer=Customer(), lines=lines,
    )  # fmt: skip


def test_a_parcel_s_units_are_spread_over_the_order_s_lines_of_each_sku() -> None:
    order = an_order(
        Line(sku="A", quantity=1, external_line_id="11"),
        Line(sku="GIFT", quantity=1, requires_shipping=False, external_line_id="12"),
        Line(sku="A", quantity=2, external_line_id="13"),
        Line(sku="B", quantity=1, external_line_id="14"),
    )
    assert shipped_lines(order, (("A", 3), ("B", 1))) == (
        ShippedLine("A", "11", 1), ShippedLine("A", "13", 2), ShippedLine("B", "14", 1),
    )  # fmt: skip
    # Units no line of the order accounts for go by sku alone.
    assert shipped_lines(order, (("C", 1),)) == (ShippedLine("C", None, 1),)


def parcel(*lines: ShippedLine) -> ParcelShipped:
    return ParcelShipped(
        platform="shopify", order_id="ord_1", external_order_id="1001", shipment_id="ord_1-2",
        parcel=2, parcels=2, lines=lines, tracking_number="1Z9", carrier="UPS",
        tracking_url="https://track/1Z9",
    )  # fmt: skip


def shop_order(*items: tuple[str, str, int], status: str = "OPEN") -> dict[str, Any]:
    """A Shopify order's fulfillment order: (line item id, sku, remaining)."""
    return {
        "fulfillments": [],
        "fulfillmentOrders": {"nodes": [{
            "id": "gid://shopify/FulfillmentOrder/9", "status": status,
            "lineItems": {"nodes": [
                {"id": f"gid://shopify/FulfillmentOrderLineItem/{line}", "remainingQuantity": n,
                 "lineItem": {"id": f"gid://shopify/LineItem/{line}", "sku": sku}}
                for line, sku, n in items
            ]},
        }]},
    }  # fmt: skip


def test_a_parcel_is_fulfilled_from_what_each_line_item_has_left() -> None:
    # The first parcel took one A of line 11 already; this one's A goes to line 13.
    order = shop_order(("11", "A", 0), ("13", "A", 2), ("14", "B", 1))
    chosen = _line_items(order, parcel(ShippedLine("A", "13", 2), ShippedLine("B", None, 1)))
    assert chosen == [{
        "fulfillmentOrderId": "gid://shopify/FulfillmentOrder/9",
        "fulfillmentOrderLineItems": [
            {"id": "gid://shopify/FulfillmentOrderLineItem/13", "quantity": 2},
            {"id": "gid://shopify/FulfillmentOrderLineItem/14", "quantity": 1},
        ],
    }]  # fmt: skip


@pytest.mark.parametrize(
    "order",
    [
        shop_order(("13", "A", 1)),  # fewer left than the parcel holds
        shop_order(("13", "A", 2), status="CLOSED"),  # fulfilled elsewhere already
    ],
)
def test_a_parcel_the_shop_cannot_fulfil_is_refused_for_good(order: dict[str, Any]) -> None:
    with pytest.raises(PlatformError, match="no open fulfillment order") as refused:
        _line_items(order, parcel(ShippedLine("A", "13", 2)))
    assert refused.value.temporary is False


def test_a_throttled_call_waits_until_the_budget_holds_its_cost() -> None:
    extensions = {"cost": {"requestedQueryCost": 502, "throttleStatus": {
        "maximumAvailable": 2000.0, "currentlyAvailable": 2, "restoreRate": 100.0}}}  # fmt: skip
    assert _restored_in(extensions) == 5.0
    assert _restored_in(None) == 2.0  # no budget given: a short wait


def test_a_woocommerce_note_names_the_parcel_the_carrier_and_the_tracking() -> None:
    assert _note_text(parcel()) == (
        "Parcel 2 of 2 has shipped with UPS, tracking number 1Z9: https://track/1Z9."
    )
