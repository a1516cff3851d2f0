"""Write-back to the platforms on a running daemon: each parcel that leaves becomes one
fulfillment on Shopify, with its tracking, across a throttled answer; on WooCommerce, a
note to the customer with the tracking, and the order completed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    PAYLOADS,
    eventually,
    get,
    request,
    shopify_body,
    shopify_headers,
    woocommerce_headers,
)
from tests.platform_servers import (
    ShopifyAdminServer,
    WooCommerceServer,
    WooOrder,
    payload_lines,
)

MakeDaemon = Callable[..., Any]
ORDER = 820982911946154508


async def test_a_shipped_parcel_becomes_one_fulfillment_with_its_tracking_despite_a_throttle(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5})
    # Paid now, so that the promised date lies ahead and the cheapest rate meets it.
    body = shopify_body(processed_at=datetime.now(UTC).isoformat())
    async with ShopifyAdminServer() as shop:
        shop.add_order(ORDER, payload_lines(body))
        shop.throttle_next = 1  # the shop's budget is spent: Shopify asks to wait
        daemon = make_daemon(**shop.env())
        assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202

        async def told() -> bool:
            status: str | None = await pg.fetchval("SELECT status FROM platform_calls")
            return status == "sent"

        await eventually(told, within_s=30, what="Shopify to be told of the parcel")

        [fulfillment] = shop.fulfillments
        shipment = await pg.fetchrow("SELECT id, tracking_number, carrier_account FROM shipments")
        assert fulfillment.tracking["number"] == shipment["tracking_number"]
        assert fulfillment.tracking["company"] == shipment["carrier_account"]
        assert fulfillment.tracking["url"].endswith(shipment["tracking_number"])
        # Every shippable line item, whole; the gift card is not in a parcel.
        assert fulfillment.items == {487817672276298554: 1, 976318377106520349: 2}
        assert fulfillment.notify_customer is False  # orderd sends its own confirmation
        assert fulfillment.message is None  # one parcel: no "parcel 1 of 2"
        call = await pg.fetchrow("SELECT key, result, attempts, last_error FROM platform_calls")
        assert call["key"] == f"shopify:parcel_shipped:{shipment['id']}"
        assert call["result"] == fulfillment.id
        assert call["attempts"] == 2  # throttled once, then made
        assert call["last_error"] is None
        assert [answer for _, answer in shop.calls] == ["THROTTLED", "ok", "ok"]
        assert [operation for operation, _ in shop.calls][1:] == [
            "OrderFulfillment", "FulfillmentCreate",
        ]  # fmt: skip


async def test_a_woocommerce_order_gets_a_tracking_note_and_is_completed_once_shipped(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "woo-single-1", "Bar3")
    await set_stock({"woo-single-1": 5, "Bar3": 5})
    async with WooCommerceServer() as store:
        store.orders[727] = WooOrder()
        store.fail_next = [503]  # the store is down at first: tried again
        post_woocommerce_order(make_daemon(**store.env()))

        async def told() -> bool:
            status: str | None = await pg.fetchval("SELECT status FROM platform_calls")
            return status == "sent"

        await eventually(told, within_s=30, what="WooCommerce to be told of the parcel")
        shipment = await pg.fetchrow("SELECT tracking_number, carrier_account FROM shipments")
        [note] = store.orders[727].notes
        assert note["customer_note"] is True
        assert shipment["tracking_number"] in note["note"]
        assert shipment["carrier_account"] in note["note"]
        assert note["note"].startswith("Your order has shipped with ")
        assert store.orders[727].status == "completed"
        call = await pg.fetchrow("SELECT key, result, attempts FROM platform_calls")
        assert call["key"].startswith("woocommerce:parcel_shipped:")
        assert call["result"] == f"note {note['id']}"
        assert call["attempts"] == 2  # the 503, then done
        assert store.requests[1:] == [
            ("GET", "/wp-json/wc/v3/orders/727/notes"),
            ("POST", "/wp-json/wc/v3/orders/727/notes"),
            ("PUT", "/wp-json/wc/v3/orders/727"),
        ]


async def test_a_call_the_platform_refuses_is_recorded_and_shown_with_the_order(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock, run_orderd: Any
) -> None:
    await add_products(pg, "woo-single-1", "Bar3")
    await set_stock({"woo-single-1": 5, "Bar3": 5})
    async with WooCommerceServer() as store:  # the store does not know order 727
        post_woocommerce_order(make_daemon(**store.env()))

        async def refused() -> bool:
            status: str | None = await pg.fetchval("SELECT status FROM platform_calls")
            return status == "failed"

        await eventually(refused, within_s=30, what="the refusal to be recorded")
        # Refused for good: tried once, not again.
        assert store.requests == [("GET", "/wp-json/wc/v3/orders/727/notes")]
        shown = run_orderd("order", "show", "727")
        assert shown.returncode == 0, shown.stderr
        assert "told the platform woocommerce:parcel_shipped:" in shown.stdout
        assert ": failed (WooCommerce refused the call (HTTP 404): Invalid ID.)" in shown.stdout
        view = json.loads(run_orderd("order", "show", "727", "--json").stdout)
        [call] = view["platform_calls"]
        assert (call["status"], call["attempts"]) == ("failed", 1)
        assert view["state"] == "shipped"  # the order itself is not held up by it


# A day passes in a second: the sandbox carrier delivers within seconds.
FAST = {"ORDERD_CLOCK__SCALE": "86400"}


async def test_an_arrival_becomes_a_delivered_event_on_shopify_and_a_staff_note_on_woocommerce(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020", "woo-single-1", "Bar3")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5, "woo-single-1": 5, "Bar3": 5})
    async with ShopifyAdminServer() as shop, WooCommerceServer() as store:
        store.orders[727] = WooOrder()
        daemon = make_daemon(**{**FAST, **shop.env(), **store.env()})
        now = get(f"{daemon.url}/healthz")[1]["time"]  # the daemon's own, scaled, time
        body = shopify_body(processed_at=now)
        shop.add_order(ORDER, payload_lines(body))
        assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
        post_woocommerce_order(daemon)

        async def told() -> bool:
            sent: int = await pg.fetchval(
                "SELECT count(*) FROM platform_calls WHERE status = 'sent'"
            )
            return sent == 4

        await eventually(told, within_s=45, what="both platforms told of both arrivals")
        delivered = {
            r["platform"]: r
            for r in await pg.fetch(
                """
                SELECT c.platform, c.result, s.tracking_number, s.delivered_at
                FROM platform_calls c JOIN shipments s ON s.order_id = c.order_id
                WHERE c.kind = 'parcel_delivered'
                """
            )
        }
        [fulfillment] = shop.fulfillments
        [event] = fulfillment.events
        assert event["status"] == "DELIVERED"
        assert event["id"] == delivered["shopify"]["result"]
        assert datetime.fromisoformat(event["happenedAt"]) == delivered["shopify"]["delivered_at"]
        shipped_note, arrived_note = reversed(store.orders[727].notes)
        assert arrived_note["customer_note"] is False  # for the staff: the customer knows
        woo = delivered["woocommerce"]
        assert arrived_note["note"] == (
            f"Parcel {woo['tracking_number']} delivered on {woo['delivered_at'].date()}."
        )
        assert shipped_note["customer_note"] is True


async def test_a_corrected_tracking_number_reaches_the_customer_and_both_platforms(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock, run_orderd: Any
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020", "woo-single-1", "Bar3")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5, "woo-single-1": 5, "Bar3": 5})
    body = shopify_body(processed_at=datetime.now(UTC).isoformat())
    async with ShopifyAdminServer() as shop, WooCommerceServer() as store:
        store.orders[727] = WooOrder()
        shop.add_order(ORDER, payload_lines(body))
        daemon = make_daemon(**{**shop.env(), **store.env()})
        assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
        post_woocommerce_order(daemon)

        async def sent(count: int) -> bool:
            done: int = await pg.fetchval(
                "SELECT count(*) FROM platform_calls WHERE status = 'sent'"
            )
            return done == count

        await eventually(lambda: sent(2), within_s=30, what="both parcels told")
        # The warehouse labelled the Shopify parcel again by hand: same carrier, new number.
        done = run_orderd(
            "order", "set-tracking", "#1001", "--number", "SB-NEW-1",
            "--url", "https://track.example.com/SB-NEW-1",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "travels under SB-NEW-1 now (was SB" in done.stdout
        woo = run_orderd("order", "set-tracking", "727", "--number", "SB-NEW-2")
        assert woo.returncode == 0, woo.stderr
        await eventually(lambda: sent(4), within_s=30, what="both corrections told")

        [fulfillment] = shop.fulfillments  # the same fulfillment, with the new number
        assert fulfillment.retracked == 1
        assert fulfillment.tracking["number"] == "SB-NEW-1"
        assert fulfillment.tracking["url"] == "https://track.example.com/SB-NEW-1"
        assert fulfillment.tracking["company"] == await pg.fetchval(
            "SELECT carrier_account FROM shipments s JOIN orders o ON o.id = s.order_id "
            "WHERE o.name = '#1001'"
        )
        newest = store.orders[727].notes[0]
        assert newest["customer_note"] is True
        assert newest["note"].startswith("Your parcel now travels under tracking number SB-NEW-2")
        numbers = await pg.fetch("SELECT tracking_number FROM shipments ORDER BY tracking_number")
        assert [r["tracking_number"] for r in numbers] == ["SB-NEW-1", "SB-NEW-2"]
        # The customer's confirmation goes again, with the new number.
        confirmations = await pg.fetchval(
            "SELECT count(*) FROM notifications WHERE kind = 'shipping_confirmation'"
        )
        assert confirmations == 4
        # Again with the same number: nothing to do.
        same = run_orderd("order", "set-tracking", "727", "--number", "SB-NEW-2")
        assert same.returncode == 0
        assert "already" in same.stdout
        refused = run_orderd("order", "set-tracking", "727", "--number", "has space")
        assert refused.returncode != 0
        assert "no spaces" in refused.stderr


def post_woocommerce_order(daemon: Any) -> None:
    """WooCommerce's order 727, paid, as its webhook brings it."""
    body = (PAYLOADS / "woocommerce_order_processing.json").read_bytes()
    headers = woocommerce_headers(body)
    assert request(f"{daemon.url}/webhooks/woocommerce", body, headers)[0] == 202
