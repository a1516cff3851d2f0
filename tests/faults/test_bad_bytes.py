"""Bad bytes at a running daemon's webhooks: a JSON ``\\u0000`` escape, bytes that are not
UTF-8, a body not labelled JSON. Each ends in a clear answer, and an order answered 202 is
stored and carried through; nothing refused is stored, nothing logs a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.carriers.webhooks import sign_easypost
from tests.carrier_servers import EasyPostServer
from tests.conftest import add_products
from tests.integration.daemon_harness import (
    ADMIN_TOKEN,
    PAYLOADS,
    SECRET,
    eventually,
    generic_body,
    generic_headers,
    request,
    shopify_body,
    shopify_headers,
    woocommerce_headers,
)
from tests.integration.test_tracking_webhooks import SECRET as TRACKING_SECRET
from tests.integration.test_tracking_webhooks import easypost_news, reaches, shipped

MakeDaemon = Callable[..., Any]
NUL = "\u0000"
# What a platform sends as a JSON body; the charset is spelled out by some.
JSON_UTF8 = "application/json; charset=utf-8"


async def stored(pg: Any) -> tuple[int, int]:
    inbox = await pg.fetchval("SELECT count(*) FROM webhook_inbox")
    messages = await pg.fetchval("SELECT count(*) FROM mailbox")
    return inbox, messages


def no_traceback_in(daemon: Any) -> bool:
    return "Traceback" not in daemon.log_path.read_text()


def _shopify_with_nul() -> tuple[str, bytes, dict[str, str], dict[str, int]]:
    data = json.loads(shopify_body())
    data["note"] = f"Leave the parcel{NUL} at the back door"
    data["customer"]["first_name"] = f"Jo{NUL}hn"
    data["shipping_address"]["address1"] = f"123 Shipping{NUL} Street"
    data["line_items"][0]["name"] = f"Aviator{NUL} sunglasses"
    body = json.dumps(data).encode()
    headers = {**shopify_headers(body), "Content-Type": JSON_UTF8}
    return "/webhooks/shopify", body, headers, {"SKU2006-001": 1, "SKU2006-020": 2}


def _woocommerce_with_nul() -> tuple[str, bytes, dict[str, str], dict[str, int]]:
    data = json.loads((PAYLOADS / "woocommerce_order_processing.json").read_text())
    data["customer_note"] = f"Please ring{NUL} twice"
    data["billing"]["first_name"] = f"Jo{NUL}hn"
    data["shipping"]["address_1"] = f"969{NUL} Market"
    body = json.dumps(data).encode()
    headers = {**woocommerce_headers(body), "Content-Type": JSON_UTF8}
    return "/webhooks/woocommerce", body, headers, {"woo-single-1": 2, "Bar3": 1}


def _generic_with_nul() -> tuple[str, bytes, dict[str, str], dict[str, int]]:
    data = json.loads(generic_body("N-1", [("MUG-1", 2)]))
    data["note"] = f"Leave{NUL} at the door"
    data["customer"]["first_name"] = f"Jo{NUL}hn"
    data["shipping_address"]["line1"] = f"Damrak{NUL} 1"
    body = json.dumps(data).encode()
    return "/webhooks/orders", body, generic_headers(body), {"MUG-1": 2}


@pytest.mark.parametrize("make", [_shopify_with_nul, _woocommerce_with_nul, _generic_with_nul])
async def test_nul_characters_are_dropped_and_the_order_is_stored_and_reserved(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, make: Any
) -> None:
    path, body, headers, wanted = make()
    assert b"\\u0000" in body
    await add_products(pg, *wanted)
    for sku in wanted:
        assert run_orderd("stock", "set", sku, "5").returncode == 0
    daemon = make_daemon()
    status, answer = request(f"{daemon.url}{path}", body, headers)
    assert (status, answer["status"]) == (202, "accepted")
    order_id = answer["order_id"]

    async def requested() -> bool:
        state = await pg.fetchval("SELECT state FROM orders WHERE id = $1", order_id)
        return bool(state == "fulfillment_requested")

    await eventually(requested, what="the order to be reserved and sent to the warehouse")
    lines = await pg.fetch(
        "SELECT sku, reserved FROM order_lines WHERE order_id = $1 AND requires_shipping",
        order_id,
    )
    assert {line["sku"]: line["reserved"] for line in lines} == wanted
    for sku, quantity in wanted.items():
        level = json.loads(run_orderd("stock", "show", sku, "--json").stdout)
        assert (level["reserved"], level["available"]) == (quantity, 5 - quantity)
    document = await pg.fetchval(
        "SELECT document::text FROM order_documents WHERE order_id = $1", order_id
    )
    assert "\\u0000" not in document
    assert json.loads(document)["customer"]["first_name"] == "John"
    # The delivery itself is kept exactly as it came.
    kept = await pg.fetchval("SELECT body FROM webhook_inbox WHERE order_id = $1", order_id)
    assert kept == body
    assert no_traceback_in(daemon)


def _all_routes_env() -> dict[str, str]:
    return {
        "ORDERD_WMS__SECRET": SECRET,
        "ORDERD_CARRIERS__EASYPOST__ENABLED": "true",
        "ORDERD_CARRIERS__EASYPOST__API_KEY": "EZTK_test_key",
        "ORDERD_CARRIERS__EASYPOST__BASE_URL": "http://127.0.0.1:9/v2",
        "ORDERD_CARRIERS__EASYPOST__WEBHOOK_SECRET": SECRET,
        "ORDERD_CARRIERS__SHIPPO__ENABLED": "true",
        "ORDERD_CARRIERS__SHIPPO__API_KEY": "shippo_test_key",
        "ORDERD_CARRIERS__SHIPPO__BASE_URL": "http://127.0.0.1:9",
        "ORDERD_CARRIERS__SHIPPO__WEBHOOK_SECRET": SECRET,
    }


# Each JSON route, a body it would take, and the headers that sign it.
Signed = Callable[[bytes], tuple[str, dict[str, str]]]
ROUTES: dict[str, tuple[bytes, Signed]] = {
    "shopify": (shopify_body(), lambda b: ("/webhooks/shopify", shopify_headers(b))),
    "shopify, another topic": (
        shopify_body(),
        lambda b: ("/webhooks/shopify", shopify_headers(b, topic="products/update")),
    ),
    "woocommerce": (
        (PAYLOADS / "woocommerce_order_processing.json").read_bytes(),
        lambda b: ("/webhooks/woocommerce", woocommerce_headers(b)),
    ),
    "generic": (
        generic_body("U-1", [("MUG-1", 1)]),
        lambda b: ("/webhooks/orders", generic_headers(b)),
    ),
    "wms": (
        json.dumps(
            {
                "event": "picked",
                "order_id": "ord_aaaaaaaaaaaaaaaaaaaa",
                "shipment_id": "ord_aaaaaaaaaaaaaaaaaaaa-1",
            }
        ).encode(),
        lambda b: ("/webhooks/wms", generic_headers(b)),
    ),
    "easypost": (
        easypost_news("9400000000000000000000", "in_transit", datetime.now(UTC), "evt_u1"),
        lambda b: (
            "/webhooks/carriers/easypost",
            {"Content-Type": "application/json", "X-Hmac-Signature": sign_easypost(b, SECRET)},
        ),
    ),
    "shippo": (
        json.dumps({"event": "track_updated", "test": True, "data": {}}).encode(),
        lambda b: (
            f"/webhooks/carriers/shippo?token={SECRET}",
            {"Content-Type": "application/json"},
        ),
    ),
}


def _not_utf8(body: bytes) -> bytes:
    """``body`` with a byte that no UTF-8 text holds, inside its first string."""
    start = body.index(b'"') + 1
    return body[:start] + b"\xff" + body[start:]


async def test_a_signed_body_that_is_not_utf8_is_refused_everywhere_and_stores_nothing(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon(**_all_routes_env())
    answers = {}
    for route, (good, sign) in ROUTES.items():
        body = _not_utf8(good)
        path, headers = sign(body)
        answers[route] = request(f"{daemon.url}{path}", body, headers)
    assert answers == {route: (400, {"error": "body: not valid UTF-8"}) for route in ROUTES}
    assert await stored(pg) == (0, 0)
    assert no_traceback_in(daemon)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/xml",
     "application/json; charset=iso-8859-1"],
)  # fmt: skip
async def test_a_body_not_sent_as_json_is_answered_415_and_stores_nothing(
    make_daemon: MakeDaemon, pg: Any, content_type: str
) -> None:
    daemon = make_daemon(**_all_routes_env())
    answers = {}
    for route, (body, sign) in ROUTES.items():
        path, headers = sign(body)
        answers[route] = request(
            f"{daemon.url}{path}", body, {**headers, "Content-Type": content_type}
        )
    expected = (415, {"error": "Content-Type: must be application/json (UTF-8)"})
    assert answers == {route: expected for route in ROUTES}
    assert await stored(pg) == (0, 0)
    # The same delivery labelled as JSON is taken.
    body, sign = ROUTES["generic"]
    path, headers = sign(body)
    assert request(f"{daemon.url}{path}", body, {**headers, "Content-Type": JSON_UTF8})[0] == 202
    assert no_traceback_in(daemon)


async def test_a_delivery_header_that_is_not_utf8_is_refused_and_stores_nothing(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon()
    body = shopify_body()
    # http.client sends a header's characters as Latin-1: this one arrives as byte 0xff.
    headers = shopify_headers(body, webhook_id="w-\xff")
    status, answer = request(f"{daemon.url}/webhooks/shopify", body, headers)
    assert (status, answer) == (400, {"error": "X-Shopify-Webhook-Id: not valid UTF-8"})
    assert await stored(pg) == (0, 0)
    assert no_traceback_in(daemon)


async def test_tracking_news_with_nul_characters_reaches_the_order(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any
) -> None:
    async with EasyPostServer() as server:
        daemon, tracking = await shipped(make_daemon, pg, run_orderd, server, "easypost")
        at = datetime.now(UTC) + timedelta(hours=1)
        news = json.loads(easypost_news(tracking, "in_transit", at, f"evt_{NUL}nul"))
        scan = news["result"]["tracking_details"][0]
        scan["message"] = f"Arrived at{NUL} facility"
        scan["tracking_location"]["city"] = f"HOUS{NUL}TON"
        body = json.dumps(news).encode()
        headers = {
            "Content-Type": JSON_UTF8,
            "X-Hmac-Signature": sign_easypost(body, TRACKING_SECRET),
        }
        status, answer = request(f"{daemon.url}/webhooks/carriers/easypost", body, headers)
        assert (status, answer["status"]) == (202, "accepted")
        await reaches(pg, "in_transit")
    tracked = await pg.fetchval("SELECT data FROM order_events WHERE type = 'tracked'")
    assert "\\u0000" not in tracked
    assert json.loads(tracked)["detail"] == "Arrived at facility"
    assert await pg.fetchval("SELECT delivery_id FROM webhook_inbox WHERE source = 'easypost'") == (
        "evt_nul"
    )
    assert no_traceback_in(daemon)


async def test_an_adjustment_that_is_not_utf8_or_holds_nul_is_refused(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    await add_products(pg, "MUG-1")
    daemon = make_daemon()
    url = f"{daemon.url}/api/v1/stock/MUG-1/adjust"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    not_utf8 = b'{"delta": 4, "reason": "receipt \xff"}'
    status, answer = request(url, not_utf8, auth)
    assert (status, answer) == (400, {"error": "body: not valid UTF-8"})
    for field in ("reason", "movement_id"):
        adjust = {"delta": 4, "reason": "receipt", "movement_id": "po-1", field: f"po{NUL}-2"}
        status, answer = request(url, json.dumps(adjust).encode(), auth)
        assert status == 400
        assert field in answer["error"]
    assert await pg.fetchval("SELECT count(*) FROM stock_ledger") == 0
    assert no_traceback_in(daemon)
