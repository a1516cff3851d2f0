"""Write-back through a kill -9: a flood of orders ships while the daemon is killed with
calls carried out on the platform and their answers not yet back; after the restart every
parcel is one fulfillment on Shopify, or one note on WooCommerce, with its tracking
number, and nothing twice. The store's stock counts, pushed as they change, end equal to
orderd's, in far fewer calls than there were movements."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.postgres.stock import implied_stock
from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    PAYLOADS,
    eventually,
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
ORDERS = 30
FIRST_ID = 820982911946154508
LOCATION = 62011
ITEMS = {"SKU2006-001": 39072856, "SKU2006-020": 457924702}  # Shopify inventory items


async def available(pg: Any, sku: str) -> int:
    """Units of ``sku`` available to sell, from the durable record (on hand less held)."""
    [row] = [r for r in await implied_stock(pg, "main") if r.sku == sku]
    return row.on_hand - row.reserved


async def test_every_parcel_is_one_fulfillment_on_the_shop_across_a_kill(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock, tmp_path: Path
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    await set_stock({"SKU2006-001": 100, "SKU2006-020": 100})
    paid_at = datetime.now(UTC).isoformat()
    bodies = [
        shopify_body(FIRST_ID + n, f"#{1001 + n}", processed_at=paid_at) for n in range(ORDERS)
    ]
    async with ShopifyAdminServer() as shop:
        for n, body in enumerate(bodies):
            shop.add_order(FIRST_ID + n, payload_lines(body))
        shop.stock(LOCATION, {ITEMS[sku]: 0 for sku in ITEMS})
        shop.throttle_next = 2
        shop.hold_creates = 5  # made on the shop; the answers never reach the first process
        config = tmp_path / "orderd.toml"
        config.write_text(
            f"""
            [webhooks.shopify.locations]
            main = "{LOCATION}"
            [webhooks.shopify.inventory_items]
            {" ".join(f'"{sku}" = "{item}"' + chr(10) for sku, item in ITEMS.items())}
            """
        )
        # Claims last 3 x 2 s + 5 s: a killed sender's run out soon.
        env = {
            **shop.env(timeout_s="2", push_stock="true"),
            "ORDERD_CONFIG": str(config),
            "ORDERD_WEBHOOKS__STOCK_EVERY_S": "1",
        }
        first = make_daemon("d1", **env)
        for body in bodies:
            assert request(f"{first.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202

        async def held() -> bool:
            # Killed once the warehouse has every pick list: a claim of the warehouse's
            # dispatcher runs out only after a minute, longer than this test waits.
            waiting: int = await pg.fetchval(
                "SELECT count(*) FROM fulfillment_requests WHERE status <> 'sent'"
            )
            return shop.held >= 1 and waiting == 0

        await eventually(held, within_s=30, what="a fulfillment made and its answer held")
        first.kill()  # SIGKILL: calls on their way are neither recorded nor finished
        shop.release.set()
        sending = await pg.fetchval("SELECT count(*) FROM platform_calls WHERE status = 'sending'")
        assert sending >= 1

        # Its claims run out; the next process delivers them again, and finds what the
        # shop recorded.
        make_daemon("d2", **env)

        async def all_told() -> bool:
            sent: int = await pg.fetchval(
                "SELECT count(*) FROM platform_calls WHERE status = 'sent'"
            )
            return sent == ORDERS

        await eventually(all_told, within_s=45, what="every parcel told to Shopify")

        # Every order, from the durable record: shipped, and one fulfillment on the shop
        # with its parcel's tracking number and every shippable item.
        rows = await pg.fetch(
            """
            SELECT o.external_id, o.state, s.tracking_number, c.result, c.attempts
            FROM orders o JOIN shipments s ON s.order_id = o.id
            JOIN platform_calls c ON c.key = 'shopify:parcel_shipped:' || s.id
            """
        )
        assert len(rows) == ORDERS
        by_order: dict[int, list[Any]] = {}
        for fulfillment in shop.fulfillments:
            by_order.setdefault(fulfillment.order_id, []).append(fulfillment)
        assert sorted(by_order) == [FIRST_ID + n for n in range(ORDERS)]
        for row in rows:
            [made] = by_order[int(row["external_id"])]
            assert row["state"] == "shipped"
            assert made.tracking["number"] == row["tracking_number"]
            assert made.id == row["result"]
            assert made.items == {487817672276298554: 1, 976318377106520349: 2}
        # The calls cut off by the kill went again: their fulfillments were found, not made.
        again = [r for r in rows if r["attempts"] >= 2]
        assert again
        creates = sum(1 for operation, answer in shop.calls if operation == "FulfillmentCreate")
        assert creates == ORDERS

        # The shop's counts end equal to orderd's (every order shipped: on hand less what
        # left), each figure pushed once per pass however many orders moved it.
        async def counted() -> bool:
            units = {sku: await available(pg, sku) for sku in ITEMS}
            return all(shop.level(item, LOCATION) == units[sku] for sku, item in ITEMS.items())

        await eventually(counted, within_s=30, what="the shop's stock counts to be orderd's")
        assert [await available(pg, sku) for sku in ITEMS] == [100 - ORDERS, 100 - 2 * ORDERS]
        movements = await pg.fetchval("SELECT count(*) FROM stock_ledger")
        assert len(shop.inventory_sets) < movements / 4


async def test_every_parcel_is_one_note_on_the_store_across_a_kill(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "woo-single-1", "Bar3")
    await set_stock({"woo-single-1": 200, "Bar3": 200})
    template = json.loads((PAYLOADS / "woocommerce_order_processing.json").read_text())
    bodies = [
        json.dumps({**template, "id": 727 + n, "number": str(727 + n)}).encode()
        for n in range(ORDERS)
    ]
    async with WooCommerceServer() as store:
        for n in range(ORDERS):
            store.orders[727 + n] = WooOrder()
        store.add_product(3101, "woo-single-1", stock=0)
        store.add_product(3202, "Bar3", stock=0, parent=3200)
        store.fail_next = [503, 503]
        store.hold_notes = 5  # added on the store; the answers never reach the first process
        env = {
            **store.env(timeout_s="2", push_stock="true"),
            "ORDERD_WEBHOOKS__STOCK_EVERY_S": "1",
        }
        first = make_daemon("d1", **env)
        for body in bodies:
            headers = woocommerce_headers(body)
            assert request(f"{first.url}/webhooks/woocommerce", body, headers)[0] == 202

        async def held() -> bool:
            waiting: int = await pg.fetchval(
                "SELECT count(*) FROM fulfillment_requests WHERE status <> 'sent'"
            )
            return store.held >= 1 and waiting == 0

        await eventually(held, within_s=30, what="a note added and its answer held")
        first.kill()
        store.release.set()
        assert await pg.fetchval("SELECT count(*) FROM platform_calls WHERE status = 'sending'")
        make_daemon("d2", **env)

        async def all_told() -> bool:
            sent: int = await pg.fetchval(
                "SELECT count(*) FROM platform_calls WHERE status = 'sent'"
            )
            return sent == ORDERS

        await eventually(all_told, within_s=45, what="every parcel told to WooCommerce")
        rows = await pg.fetch(
            """
            SELECT o.external_id, o.state, s.tracking_number, c.result
            FROM orders o JOIN shipments s ON s.order_id = o.id
            JOIN platform_calls c ON c.key = 'woocommerce:parcel_shipped:' || s.id
            """
        )
        assert len(rows) == ORDERS
        for row in rows:
            order = store.orders[int(row["external_id"])]
            [note] = order.notes  # one note per parcel, whatever was repeated
            assert row["state"] == "shipped"
            assert row["tracking_number"] in note["note"]
            assert row["result"] == f"note {note['id']}"
            assert order.status == "completed"

        async def counted() -> bool:
            units = {sku: await available(pg, sku) for sku in ("woo-single-1", "Bar3")}
            return all(store.stock_of(sku) == figure for sku, figure in units.items())

        await eventually(counted, within_s=30, what="the store's stock counts to be orderd's")
        movements = await pg.fetchval("SELECT count(*) FROM stock_ledger")
        assert sum(len(update) for update in store.stock_updates) < movements / 4
