"""Webhooks into a running ``orderd run``: answers, what is stored, and what is not."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import POSTGRES_DSN, SetStock, add_products
from tests.integration.daemon_harness import (
    ADMIN_TOKEN,
    PAYLOADS,
    eventually,
    generic_body,
    generic_headers,
    get,
    request,
    shopify_body,
    shopify_headers,
    woocommerce_headers,
)

MakeDaemon = Callable[..., Any]


async def stored(pg: Any) -> tuple[int, int]:
    inbox = await pg.fetchval("SELECT count(*) FROM webhook_inbox")
    messages = await pg.fetchval("SELECT count(*) FROM mailbox")
    return inbox, messages


async def order_state(pg: Any, name: str) -> str | None:
    state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = $1", name)
    return state


async def test_a_signed_shopify_paid_order_is_accepted_and_reserved(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5})
    daemon = make_daemon()
    body = shopify_body()
    status, answer = request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))
    assert status == 202
    assert answer["status"] == "accepted"

    # Reserved in full, the order goes on to the warehouse at once.
    async def reserved() -> bool:
        return await order_state(pg, "#1001") == "fulfillment_requested"

    await eventually(reserved, what="the order to be reserved")
    shown = run_orderd("order", "show", "#1001", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["state"] == "fulfillment_requested"
    assert view["external_id"] == "820982911946154508"
    assert [(line["sku"], line["reserved"]) for line in view["lines"]] == [
        ("SKU2006-001", 1),
        ("SKU2006-020", 2),
        ("LINE-315789986012684393", 0),
    ]
    assert [event["type"] for event in view["events"]] == [
        "received",
        "stock_allocated",
        "fulfillment_requested",
    ]
    stock = json.loads(run_orderd("stock", "show", "SKU2006-020", "--json").stdout)
    assert (stock["reserved"], stock["available"]) == (2, 3)


async def test_a_repeated_delivery_and_a_repeated_order_are_taken_once(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    daemon = make_daemon()
    body = shopify_body()
    headers = shopify_headers(body, webhook_id="delivery-1")
    assert request(f"{daemon.url}/webhooks/shopify", body, headers)[0] == 202
    again = request(f"{daemon.url}/webhooks/shopify", body, headers)
    assert again == (200, {"status": "duplicate", "reason": "this delivery was already received"})
    create = shopify_headers(body, topic="orders/create")
    assert request(f"{daemon.url}/webhooks/shopify", body, create)[1]["status"] == "duplicate"

    async def backordered() -> bool:
        return await order_state(pg, "#1001") == "backordered"

    await eventually(backordered, what="the order to be backordered")
    assert await pg.fetchval("SELECT count(*) FROM mailbox") == 1
    assert await pg.fetchval("SELECT count(*) FROM orders") == 1


async def test_an_unpaid_order_is_acknowledged_and_ignored(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon()
    body = shopify_body(financial_status="pending")
    status, answer = request(
        f"{daemon.url}/webhooks/shopify", body, shopify_headers(body, topic="orders/create")
    )
    assert status == 200
    assert answer["status"] == "ignored"
    assert await stored(pg) == (1, 0)


def _forged(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, shopify_headers(body, secret="not-the-secret")


def _unsigned(body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = shopify_headers(body)
    del headers["X-Shopify-Hmac-Sha256"]
    return body, headers


def _truncated(body: bytes) -> tuple[bytes, dict[str, str]]:
    cut = body[: len(body) // 2]
    return cut, shopify_headers(cut)


def _wrong_types(body: bytes) -> tuple[bytes, dict[str, str]]:
    data = json.loads(body)
    data["line_items"] = "three mugs"
    spoiled = json.dumps(data).encode()
    return spoiled, shopify_headers(spoiled)


def _huge(body: bytes) -> tuple[bytes, dict[str, str]]:
    padded = body[:-1] + b', "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    return padded, shopify_headers(padded)


@pytest.mark.parametrize(
    ("spoil", "status", "reason"),
    [
        (_forged, 401, "X-Shopify-Hmac-Sha256"),
        (_unsigned, 401, "X-Shopify-Hmac-Sha256"),
        (_truncated, 400, "not valid JSON"),
        (_wrong_types, 400, "line_items"),
        (_huge, 413, ""),
    ],
)
async def test_bad_shopify_deliveries_are_refused_and_store_nothing(
    make_daemon: MakeDaemon, pg: Any, spoil: Any, status: int, reason: str
) -> None:
    daemon = make_daemon()
    body, headers = spoil(shopify_body())
    answer = request(f"{daemon.url}/webhooks/shopify", body, headers)
    assert answer[0] == status
    assert isinstance(answer[1], dict)
    assert reason in answer[1]["error"]
    assert "Traceback" not in json.dumps(answer[1])
    assert await stored(pg) == (0, 0)


async def test_an_unknown_topic_is_acknowledged_and_changes_nothing_for_orders(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon()
    body = shopify_body()
    status, answer = request(
        f"{daemon.url}/webhooks/shopify", body, shopify_headers(body, topic="products/update")
    )
    assert status == 200
    assert answer["status"] == "ignored"
    assert (await stored(pg))[1] == 0


async def test_woocommerce_and_generic_orders_are_accepted(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    await add_products(pg, "MUG-1")
    daemon = make_daemon()
    woo = (PAYLOADS / "woocommerce_order_processing.json").read_bytes()
    status, _ = request(f"{daemon.url}/webhooks/woocommerce", woo, woocommerce_headers(woo))
    assert status == 202
    ping = b"webhook_id=7"
    assert request(f"{daemon.url}/webhooks/woocommerce", ping, {})[0] == 200
    body = generic_body("G-1", [("MUG-1", 1)])
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202
    bad = generic_body("G-2", [("MUG-1", 1)])
    assert (
        request(f"{daemon.url}/webhooks/orders", bad, {"X-Orderd-Signature": "sha256=00"})[0] == 401
    )

    async def both() -> bool:
        taken: int = await pg.fetchval("SELECT count(*) FROM orders WHERE last_seq = 1")
        return taken == 2

    await eventually(both, what="both orders to be taken")


async def test_a_disabled_platform_is_not_found(make_daemon: MakeDaemon, pg: Any) -> None:
    daemon = make_daemon(ORDERD_WEBHOOKS__WOOCOMMERCE__ENABLED="false")
    woo = (PAYLOADS / "woocommerce_order_processing.json").read_bytes()
    assert request(f"{daemon.url}/webhooks/woocommerce", woo, woocommerce_headers(woo))[0] == 404
    assert await stored(pg) == (0, 0)


async def test_health_readiness_metrics_and_the_admin_api(make_daemon: MakeDaemon, pg: Any) -> None:
    await add_products(pg, "MUG-1")
    daemon = make_daemon()
    status, health = get(f"{daemon.url}/healthz")
    assert (status, health["status"]) == (200, "ok")
    assert datetime.fromisoformat(health["time"]).tzinfo is not None
    status, ready = get(f"{daemon.url}/readyz")
    assert status == 200
    assert ready["checks"] == {"redis": "ok", "postgres": "ok", "consumers": "ok"}
    status, text = get(f"{daemon.url}/metrics")
    assert status == 200
    assert "orderd_stream_pending" in text
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert get(f"{daemon.url}/api/v1/stock/MUG-1")[0] == 401
    assert get(f"{daemon.url}/api/v1/stock/MUG-1", {"Authorization": "Bearer nope"})[0] == 401
    adjust = json.dumps({"delta": 4, "reason": "receipt", "movement_id": "po-1"}).encode()
    status, done = request(f"{daemon.url}/api/v1/stock/MUG-1/adjust", adjust, auth)
    assert status == 200
    assert done["on_hand"] == 4
    assert request(f"{daemon.url}/api/v1/stock/MUG-1/adjust", adjust, auth)[0] == 409
    assert request(f"{daemon.url}/api/v1/stock/MUG-1/adjust", b"{", auth)[0] == 400
    status, level = get(f"{daemon.url}/api/v1/stock/MUG-1", auth)
    assert (status, level["available"]) == (200, 4)
    assert get(f"{daemon.url}/api/v1/stock/NOPE-1", auth)[0] == 404
    assert get(f"{daemon.url}/api/v1/orders/none", auth)[0] == 404
    assert get(f"{daemon.url}/no/such/route")[0] == 404


ROUTES: dict[str, tuple[str, Callable[[], bytes], Callable[[bytes], dict[str, str]], str]] = {
    "woocommerce": (
        "/webhooks/woocommerce",
        lambda: (PAYLOADS / "woocommerce_order_processing.json").read_bytes(),
        woocommerce_headers,
        "X-WC-Webhook-Signature",
    ),
    "generic": (
        "/webhooks/orders",
        lambda: generic_body("X-1", [("MUG-1", 1)]),
        generic_headers,
        "X-Orderd-Signature",
    ),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("spoil", ["forged", "unsigned", "truncated", "wrong_types", "huge"])
async def test_bad_deliveries_to_every_route_are_refused_and_store_nothing(
    make_daemon: MakeDaemon, pg: Any, route: str, spoil: str
) -> None:
    daemon = make_daemon()
    path, make_body, sign, header = ROUTES[route]
    body = make_body()
    if spoil == "truncated":
        body = body[: len(body) // 2]
    elif spoil == "wrong_types":
        data = json.loads(body)
        data["line_items" if route == "woocommerce" else "lines"] = "three mugs"
        body = json.dumps(data).encode()
    elif spoil == "huge":
        body = body[:-1] + b', "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = sign(body)
    if spoil == "forged":
        headers[header] = sign(body + b" ")[header]
    elif spoil == "unsigned":
        del headers[header]
    expected = {"forged": 401, "unsigned": 401, "truncated": 400, "wrong_types": 400, "huge": 413}
    status, answer = request(f"{daemon.url}{path}", body, headers)
    assert status == expected[spoil]
    assert isinstance(answer, dict)
    assert "error" in answer
    assert await stored(pg) == (0, 0)


async def test_an_operator_cancels_a_held_order_and_its_stock_comes_back(
    make_daemon: MakeDaemon,
    pg: Any,
    run_orderd: Any,
    set_stock: SetStock,
    test_env: dict[str, str],
) -> None:
    await add_products(pg, "MUG-1")
    await set_stock({"MUG-1": 5})
    daemon = make_daemon()
    body = generic_body("C-1", [("MUG-1", 2)])
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

    async def reserved() -> bool:
        return await order_state(pg, "#C-1") == "fulfillment_requested"

    await eventually(reserved, what="the order to be reserved")
    cancelled = run_orderd("order", "cancel", "#C-1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled; its stock is released" in cancelled.stdout
    stock = json.loads(run_orderd("stock", "show", "MUG-1", "--json").stdout)
    assert (stock["reserved"], stock["available"]) == (0, 5)
    again = run_orderd("order", "cancel", "C-1")
    assert "already cancelled" in again.stdout
    unknown = run_orderd("order", "show", "#nope")
    assert unknown.returncode == 2
    # It says where it looked: the database, the schema and where the settings came from.
    dsn = urlsplit(POSTGRES_DSN)
    assert unknown.stderr.strip() == (
        f"orderd: no order '#nope' (looked in database {dsn.path[1:]} on {dsn.hostname}:"
        f"{dsn.port}, schema {test_env['ORDERD_POSTGRES__SCHEMA']}; settings: built-in "
        "defaults with ORDERD_POSTGRES__DSN, ORDERD_POSTGRES__SCHEMA)"
    )
    assert "postgres@" not in unknown.stderr  # never the user, nor a password


def test_run_with_a_broken_config_says_so_and_exits_2(run_orderd: Any) -> None:
    result = run_orderd("run", env={"ORDERD_WEBHOOKS__SHOPIFY__ENABLED": "true"})
    assert result.returncode == 2
    assert "webhooks.shopify.secret: required" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_intake_process_and_an_actors_process_share_the_work(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5})
    intake = make_daemon("intake", ORDERD_DAEMON__ROLE="intake")
    body = shopify_body()
    assert request(f"{intake.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
    # Stored and streamed, and nobody here to take it further.
    assert await order_state(pg, "#1001") is None
    actors = make_daemon("actors", start=False, ORDERD_DAEMON__ROLE="actors")
    actors.start(http=False)

    async def taken() -> bool:
        return await order_state(pg, "#1001") == "fulfillment_requested"

    await eventually(taken, what="the actors process to take the order")
