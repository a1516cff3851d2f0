"""A local stand-in for Shopify's GraphQL Admin API, answering in its documented JSON.

It runs in the test's own event loop on 127.0.0.1 and a free port::

    async with ShopifyAdminServer() as shop:
        shop.add_order(820982911946154508, [(487817672276298554, "SKU2006-001", 1)])

It checks the ``X-Shopify-Access-Token`` header, tells the operations it knows by their
names (``OrderFulfillment``, ``FulfillmentCreate``), keeps each order's fulfillment order
and what is left to fulfil on it, and refuses a fulfillment of more than that in the
mutation's ``userErrors``. ``throttle_next`` answers the next calls with Shopify's
``THROTTLED`` error and the shop's cost budget, as Shopify does (HTTP 200);
``hold_creates`` records the next fulfillments and holds their answers until ``release``
is set (an answer lost when the caller dies). Stock: ``stock`` gives the shop's
``available`` per inventory item and location, which ``InventorySet``
(``inventorySetQuantities``) sets, checking ``changeFromQuantity`` and the idempotency
key, and ``InventoryLevels`` reads.

``WooCommerceServer`` is the same for WooCommerce's REST API: order notes and status,
products found by sku and their stock set in batches.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

TOKEN = "shpat_test_token"
_OPERATION = re.compile(r"\b(?:query|mutation)\s+(\w+)")


class _LocalServer:
    """An aiohttp app on 127.0.0.1 and a free port, for the test's own event loop."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.cleanup()


@dataclass
class ShopOrder:
    lines: list[tuple[int, str, int]]  # (line item id, sku, quantity)
    fulfilled: dict[int, int] = field(default_factory=dict)


@dataclass
class Fulfillment:
    id: str
    order_id: int
    items: dict[int, int]  # line item id -> quantity
    tracking: dict[str, str]
    notify_customer: bool
    message: str | None
    events: list[dict[str, str]] = field(default_factory=list)
    retracked: int = (
        0  # tracking numbers changed since it was made  # {"id", "status", "happenedAt"}
    )


class ShopifyAdminServer(_LocalServer):
    def __init__(self, version: str = "2026-10") -> None:
        self.version = version
        self.orders: dict[int, ShopOrder] = {}
        self.fulfillments: list[Fulfillment] = []
        self.calls: list[tuple[str, str]] = []  # (operation, how it was answered)
        self.throttle_next = 0
        self.hold_creates = 0
        self.held = 0  # answers held so far
        self.release = asyncio.Event()
        # Stock: available per (inventory item, location), and each set applied, in order.
        self.available: dict[tuple[str, str], int] = {}
        self.inventory_sets: list[dict[tuple[str, str], int]] = []
        self._idempotent: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        app = web.Application()
        app.router.add_post(f"/admin/api/{version}/graphql.json", self._graphql)
        super().__init__(app)

    def env(self, **extra: str) -> dict[str, str]:
        """What a daemon needs to write back to this shop (the sandbox warehouse packing
        at once), with ``extra`` settings of ``[webhooks.shopify]``."""
        return {
            "ORDERD_WMS__SANDBOX_DELAY_S": "0",
            "ORDERD_WEBHOOKS__SHOPIFY__WRITE_BACK": "true",
            "ORDERD_WEBHOOKS__SHOPIFY__ADMIN_URL": self.url,
            "ORDERD_WEBHOOKS__SHOPIFY__ACCESS_TOKEN": TOKEN,
            "ORDERD_WEBHOOKS__SHOPIFY__API_VERSION": self.version,
            **{f"ORDERD_WEBHOOKS__SHOPIFY__{k.upper()}": v for k, v in extra.items()},
        }

    def add_order(self, order_id: int, lines: list[tuple[int, str, int]]) -> None:
        self.orders[order_id] = ShopOrder(lines)

    def stock(self, location: int, items: dict[int, int]) -> None:
        """Stock inventory items (id -> available) at a location, as the shop has them."""
        for item, units in items.items():
            self.available[_gid("InventoryItem", item), _gid("Location", location)] = units

    def level(self, item: int, location: int) -> int:
        return self.available[_gid("InventoryItem", item), _gid("Location", location)]

    async def _graphql(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Shopify-Access-Token") != TOKEN:
            self.calls.append(("?", "401"))
            return web.json_response(
                {"errors": "[API] Invalid API key or access token (unrecognized login or "
                 "wrong password)"}, status=401,
            )  # fmt: skip
        body = await request.json()
        found = _OPERATION.search(body.get("query", ""))
        operation = found.group(1) if found else "?"
        variables = body.get("variables") or {}
        if self.throttle_next:
            self.throttle_next -= 1
            self.calls.append((operation, "THROTTLED"))
            return web.json_response(
                {
                    "errors": [{"message": "Throttled", "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": {"cost": {
                        "requestedQueryCost": 52, "actualQueryCost": None,
                        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 2,
                                           "restoreRate": 100.0}}},
                }
            )  # fmt: skip
        data: dict[str, Any]
        if operation == "OrderFulfillment":
            data = {"order": self._order(variables["id"])}
        elif operation == "InventorySet":
            data = {"inventorySetQuantities": self._set_quantities(variables)}
        elif operation == "InventoryLevels":
            data = {"nodes": [self._item_levels(item) for item in variables["ids"]]}
        elif operation == "FulfillmentTrackingInfoUpdate":
            data = {"fulfillmentTrackingInfoUpdate": self._retrack(variables)}
        elif operation == "FulfillmentEvents":
            data = {"order": self._order_events(variables["id"])}
        elif operation == "FulfillmentEventCreate":
            data = {"fulfillmentEventCreate": self._event(variables["event"])}
        elif operation == "FulfillmentCreate":
            created = self._create(variables)
            data = {"fulfillmentCreate": created}
            if self.hold_creates and created["fulfillment"] is not None:
                self.hold_creates -= 1
                self.held += 1
                await self.release.wait()  # recorded; the answer waits
        else:
            self.calls.append((operation, "unknown"))
            return web.json_response(
                {"errors": [{"message": f"Field '{operation}' doesn't exist",
                             "extensions": {"code": "undefinedField"}}]}
            )  # fmt: skip
        self.calls.append((operation, "ok"))
        return web.json_response(
            {
                "data": data,
                "extensions": {"cost": {
                    "requestedQueryCost": 12, "actualQueryCost": 10,
                    "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990,
                                       "restoreRate": 100.0}}},
            }
        )  # fmt: skip

    def _order(self, gid: str) -> dict[str, Any] | None:
        order_id = int(gid.rsplit("/", 1)[1])
        order = self.orders.get(order_id)
        if order is None:
            return None
        items: list[dict[str, Any]] = [
            {
                "id": f"gid://shopify/FulfillmentOrderLineItem/{line_id}",
                "remainingQuantity": quantity - order.fulfilled.get(line_id, 0),
                "lineItem": {"id": f"gid://shopify/LineItem/{line_id}", "sku": sku},
            }
            for line_id, sku, quantity in order.lines
        ]
        open_units = sum(item["remainingQuantity"] for item in items)
        return {
            "id": gid,
            "fulfillments": [
                {"id": f.id, "trackingInfo": [{"number": f.tracking.get("number")}]}
                for f in self.fulfillments
                if f.order_id == order_id
            ],
            "fulfillmentOrders": {
                "nodes": [
                    {
                        "id": f"gid://shopify/FulfillmentOrder/{order_id}",
                        "status": "OPEN" if open_units else "CLOSED",
                        "lineItems": {"nodes": items},
                    }
                ]
            },
        }

    def _create(self, variables: dict[str, Any]) -> dict[str, Any]:
        fulfillment = variables["fulfillment"]
        wanted: dict[int, int] = {}
        order_id = None
        for group in fulfillment["lineItemsByFulfillmentOrder"]:
            order_id = int(group["fulfillmentOrderId"].rsplit("/", 1)[1])
            for item in group.get("fulfillmentOrderLineItems") or []:
                line_id = int(item["id"].rsplit("/", 1)[1])
                wanted[line_id] = wanted.get(line_id, 0) + int(item["quantity"])
        order = self.orders.get(order_id) if order_id is not None else None
        if order is None or order_id is None:
            return _user_error(["fulfillment"], "Fulfillment order does not exist.")
        quantities = {line_id: quantity for line_id, _, quantity in order.lines}
        for line_id, units in wanted.items():
            left = quantities.get(line_id, 0) - order.fulfilled.get(line_id, 0)
            if units < 1 or units > left:
                return _user_error(
                    ["fulfillment", "lineItemsByFulfillmentOrder"],
                    "Invalid fulfillment order line item quantity requested.",
                )
        for line_id, units in wanted.items():
            order.fulfilled[line_id] = order.fulfilled.get(line_id, 0) + units
        made = Fulfillment(
            id=f"gid://shopify/Fulfillment/{next(self._ids)}",
            order_id=order_id,
            items=wanted,
            tracking=dict(fulfillment.get("trackingInfo") or {}),
            notify_customer=bool(fulfillment.get("notifyCustomer")),
            message=variables.get("message"),
        )
        self.fulfillments.append(made)
        return {"fulfillment": {"id": made.id, "status": "SUCCESS"}, "userErrors": []}

    def _order_events(self, gid: str) -> dict[str, Any] | None:
        order_id = int(gid.rsplit("/", 1)[1])
        if order_id not in self.orders:
            return None
        return {
            "id": gid,
            "fulfillments": [
                {
                    "id": f.id,
                    "trackingInfo": [{"number": f.tracking.get("number")}],
                    "events": {"nodes": [{"id": e["id"], "status": e["status"]} for e in f.events]},
                }
                for f in self.fulfillments
                if f.order_id == order_id
            ],
        }

    def _retrack(self, variables: dict[str, Any]) -> dict[str, Any]:
        found = next((f for f in self.fulfillments if f.id == variables["fulfillmentId"]), None)
        if found is None:
            refusal = {"field": ["fulfillmentId"], "message": "Fulfillment does not exist."}
            return {"fulfillment": None, "userErrors": [refusal]}
        found.tracking = dict(variables["trackingInfoInput"])
        found.retracked += 1
        return {"fulfillment": {"id": found.id}, "userErrors": []}

    def _event(self, event: dict[str, Any]) -> dict[str, Any]:
        found = next((f for f in self.fulfillments if f.id == event["fulfillmentId"]), None)
        if found is None:
            return {"fulfillmentEvent": None, "userErrors": [
                {"field": ["fulfillmentEvent", "fulfillmentId"],
                 "message": "Fulfillment does not exist."}]}  # fmt: skip
        made = {
            "id": f"gid://shopify/FulfillmentEvent/{next(self._ids)}",
            "status": event["status"],
            "happenedAt": event.get("happenedAt") or "",
        }
        found.events.append(made)
        return {"fulfillmentEvent": {"id": made["id"], "status": made["status"]}, "userErrors": []}

    def _set_quantities(self, variables: dict[str, Any]) -> dict[str, Any]:
        """``inventorySetQuantities`` as 2026-04 has it: ``changeFromQuantity`` given for
        every figure, checked where not null; one refusal applies nothing; a repeated
        idempotency key gets the first answer and changes nothing."""
        key = variables["key"]
        if key in self._idempotent:
            return self._idempotent[key]
        wanted: dict[tuple[str, str], int] = {}
        errors = []
        for index, quantity in enumerate(variables["input"]["quantities"]):
            level = (quantity["inventoryItemId"], quantity["locationId"])
            where = ["input", "quantities", str(index)]
            if "changeFromQuantity" not in quantity:
                errors.append(
                    {
                        "code": "INVALID_INPUT",
                        "field": [*where, "changeFromQuantity"],
                        "message": "changeFromQuantity must be given",
                    }
                )
            elif level not in self.available:
                errors.append(
                    {
                        "code": "ITEM_NOT_STOCKED_AT_LOCATION",
                        "field": [*where, "locationId"],
                        "message": "The item is not stocked at the location.",
                    }
                )
            elif quantity["changeFromQuantity"] not in (None, self.available[level]):
                errors.append(
                    {
                        "code": "CHANGE_FROM_QUANTITY_STALE",
                        "field": [*where, "changeFromQuantity"],
                        "message": "The changeFromQuantity is stale.",
                    }
                )
            wanted[level] = int(quantity["quantity"])
        if errors:
            answer: dict[str, Any] = {"inventoryAdjustmentGroup": None, "userErrors": errors}
        else:
            self.available.update(wanted)
            self.inventory_sets.append(wanted)
            group = f"gid://shopify/InventoryAdjustmentGroup/{next(self._ids)}"
            answer = {"inventoryAdjustmentGroup": {"id": group}, "userErrors": []}
        self._idempotent[key] = answer
        return answer

    def _item_levels(self, item: str) -> dict[str, Any] | None:
        levels = [
            {"location": {"id": location},
             "quantities": [{"name": "available", "quantity": units}]}
            for (held, location), units in self.available.items()
            if held == item
        ]  # fmt: skip
        return {"id": item, "inventoryLevels": {"nodes": levels}} if levels else None


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _user_error(where: list[str], message: str) -> dict[str, Any]:
    return {"fulfillment": None, "userErrors": [{"field": where, "message": message}]}


def payload_lines(payload: bytes) -> list[tuple[int, str, int]]:
    """The shippable line items of a Shopify order webhook, as the shop holds them."""
    data = json.loads(payload)
    return [
        (line["id"], line["sku"], line["quantity"])
        for line in data["line_items"]
        if line.get("requires_shipping", True)
    ]


CONSUMER_KEY = "ck_test_key"
CONSUMER_SECRET = "cs_test_secret"


@dataclass
class WooOrder:
    status: str = "processing"
    notes: list[dict[str, Any]] = field(default_factory=list)


class WooCommerceServer(_LocalServer):
    """A local stand-in for WooCommerce's REST API (v3): order notes and order status,
    behind HTTP Basic authentication by the consumer key and secret, answering errors in
    its ``{"code", "message", "data": {"status"}}`` shape. ``fail_next`` answers the next
    calls with that HTTP status (a 503 while the store is down); ``hold_notes`` adds the
    next notes and holds their answers until ``release`` is set."""

    def __init__(self) -> None:
        self.orders: dict[int, WooOrder] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.fail_next: list[int] = []
        self.hold_notes = 0
        self.held = 0
        self.release = asyncio.Event()
        self._notes = itertools.count(281)
        # Products by id: {"sku", "type", "parent_id", "stock_quantity", "manage_stock"}.
        self.products: dict[int, dict[str, Any]] = {}
        self.stock_updates: list[dict[int, int]] = []  # each batch applied: id -> quantity
        self.retry_after: str | None = None  # sent with the failures of fail_next
        app = web.Application()
        app.router.add_route("*", "/wp-json/wc/v3/orders/{id}/notes", self._notes_route)
        app.router.add_put("/wp-json/wc/v3/orders/{id}", self._order_route)
        app.router.add_get("/wp-json/wc/v3/products", self._products_route)
        app.router.add_post("/wp-json/wc/v3/products/batch", self._batch_route)
        app.router.add_post("/wp-json/wc/v3/products/{parent}/variations/batch", self._batch_route)
        super().__init__(app)

    def add_product(
        self, product_id: int, sku: str, stock: int | None = None, parent: int = 0
    ) -> None:
        self.products[product_id] = {
            "id": product_id, "sku": sku, "type": "variation" if parent else "simple",
            "parent_id": parent, "stock_quantity": stock, "manage_stock": stock is not None,
        }  # fmt: skip

    async def _products_route(self, request: web.Request) -> web.Response:
        refused = self._refusal(request, order=False)
        if refused is not None:
            return refused
        sku = request.query.get("sku")
        # Variations are found by sku too, as products whose parent_id names the product.
        return web.json_response([p for p in self.products.values() if p["sku"] == sku])

    async def _batch_route(self, request: web.Request) -> web.Response:
        refused = self._refusal(request, order=False)
        if refused is not None:
            return refused
        parent = int(request.match_info.get("parent", 0))
        answered: list[dict[str, Any]] = []
        applied: dict[int, int] = {}
        for update in (await request.json()).get("update", []):
            product = self.products.get(int(update["id"]))
            if product is None or product["parent_id"] != parent:
                answered.append({"id": update["id"], "error": {
                    "code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID.",
                    "data": {"status": 400}}})  # fmt: skip
                continue
            product["manage_stock"] = bool(update.get("manage_stock", product["manage_stock"]))
            product["stock_quantity"] = int(update["stock_quantity"])
            applied[product["id"]] = product["stock_quantity"]
            answered.append(dict(product))
        if applied:
            self.stock_updates.append(applied)
        return web.json_response({"update": answered})

    def stock_of(self, sku: str) -> int | None:
        found: int | None = next(
            p["stock_quantity"] for p in self.products.values() if p["sku"] == sku
        )
        return found

    def env(self, **extra: str) -> dict[str, str]:
        """What a daemon needs to write back to this store (the sandbox warehouse packing
        at once), with ``extra`` settings of ``[webhooks.woocommerce]``."""
        return {
            "ORDERD_WMS__SANDBOX_DELAY_S": "0",
            "ORDERD_WEBHOOKS__WOOCOMMERCE__WRITE_BACK": "true",
            "ORDERD_WEBHOOKS__WOOCOMMERCE__STORE_URL": self.url,
            "ORDERD_WEBHOOKS__WOOCOMMERCE__CONSUMER_KEY": CONSUMER_KEY,
            "ORDERD_WEBHOOKS__WOOCOMMERCE__CONSUMER_SECRET": CONSUMER_SECRET,
            **{f"ORDERD_WEBHOOKS__WOOCOMMERCE__{k.upper()}": v for k, v in extra.items()},
        }

    def _refusal(self, request: web.Request, order: bool = True) -> web.Response | None:
        self.requests.append((request.method, request.path))
        pair = base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {pair}":
            denied = "Sorry, you cannot list resources."
            return _woo_error("woocommerce_rest_cannot_view", denied, 401)
        if self.fail_next:
            status = self.fail_next.pop(0)
            failed = _woo_error("internal_server_error", "The store is down.", status)
            if self.retry_after is not None:
                failed.headers["Retry-After"] = self.retry_after
            return failed
        if order and int(request.match_info["id"]) not in self.orders:
            return _woo_error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
        return None

    async def _notes_route(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        order = self.orders[int(request.match_info["id"])]
        if request.method == "GET":
            return web.json_response(order.notes)
        body = await request.json()
        note = {
            "id": next(self._notes), "author": "orderd", "date_created": "2026-12-05T10:00:00",
            "note": body["note"], "customer_note": bool(body.get("customer_note")),
        }  # fmt: skip
        order.notes.insert(0, note)  # newest first, as WooCommerce lists them
        if self.hold_notes:
            self.hold_notes -= 1
            self.held += 1
            await self.release.wait()  # added; the answer waits
        return web.json_response(note, status=201)

    async def _order_route(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        order_id = int(request.match_info["id"])
        body = await request.json()
        self.orders[order_id].status = body.get("status", self.orders[order_id].status)
        return web.json_response({"id": order_id, "status": self.orders[order_id].status})


def _woo_error(code: str, message: str, status: int) -> web.Response:
    body = {"code": code, "message": message, "data": {"status": status}}
    return web.json_response(body, status=status)
