"""``GET /dashboard`` and an order's page on a running daemon: behind the admin token or a
session from the login form, with the figures of the durable record and the stock of Redis,
and bad input answered with a clear page that changes nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from daemon.dashboard import COOKIE, session_value
from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    eventually,
    generic_body,
    generic_headers,
    request,
    shopify_body,
    shopify_headers,
)

MakeDaemon = Callable[..., Any]
TOKEN = "dashboard-token-0123456789"


def _figure(page: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', page)
    assert found is not None, f"no figure {name}"
    return found.group(1)


def _paid_now(body: bytes) -> bytes:
    order = json.loads(body)
    order["paid_at"] = datetime.now(UTC).isoformat()
    return json.dumps(order).encode()


async def _ready(make_daemon: MakeDaemon, pg: Any, set_stock: SetStock, **env: str) -> Any:
    """A daemon with one order shipped, one held for an unknown sku, one waiting for stock."""
    await add_products(pg, "SKU2006-001", "SKU2006-020", "MUG-1", "BOX-1")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5, "MUG-1": 5, "BOX-1": 0})
    daemon = make_daemon(ORDERD_WMS__SANDBOX_DELAY_S="0", **env)
    body = shopify_body(processed_at=datetime.now(UTC).isoformat())
    assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
    held = _paid_now(generic_body("C-9", [("MUG-1", 1), ("NEW-9", 1)]))  # an unknown sku
    assert request(f"{daemon.url}/webhooks/orders", held, generic_headers(held))[0] == 202
    waits = _paid_now(generic_body("C-10", [("BOX-1", 3)]))
    assert request(f"{daemon.url}/webhooks/orders", waits, generic_headers(waits))[0] == 202

    async def settled() -> bool:
        states = dict(await pg.fetch("SELECT name, state FROM orders"))
        return states == {"#1001": "shipped", "#C-9": "needs_attention", "#C-10": "backordered"}

    await eventually(settled, within_s=30, what="one order shipped, one held, one waiting")
    return daemon


async def test_the_dashboard_needs_the_token_or_a_session_from_the_login_form(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    daemon = await _ready(make_daemon, pg, set_stock, ORDERD_ADMIN__TOKEN=TOKEN)
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        for path, back in (("/dashboard?days=3", "%2Fdashboard%3Fdays%3D3"),
                           ("/dashboard/orders/o1", "%2Fdashboard%2Forders%2Fo1")):  # fmt: skip
            async with http.get(f"{daemon.url}{path}", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == f"/dashboard/login?next={back}"
        async with http.get(f"{daemon.url}/dashboard/login?next=/dashboard?days=3") as answer:
            assert answer.status == 200
            form = await answer.text()
        assert 'name="token"' in form
        assert '<input type="hidden" name="next" value="/dashboard?days=3">' in form
        # A wrong token: the form again, with why, and no session.
        wrong = {"token": TOKEN + "x"}
        async with http.post(f"{daemon.url}/dashboard/login", data=wrong) as answer:
            assert answer.status == 401
            assert "That is not the token." in await answer.text()
        assert not [c for c in jar if c.key == COOKIE]
        # A forged or expired session is no session.
        for forged in ("1.abc", session_value("another token", int(time.time()) + 60),
                       session_value(TOKEN, int(time.time()) - 1)):  # fmt: skip
            headers = {"Cookie": f"{COOKIE}={forged}"}
            async with (
                aiohttp.ClientSession() as bare,
                bare.get(
                    f"{daemon.url}/dashboard", headers=headers, allow_redirects=False
                ) as answer,
            ):
                assert answer.status == 303
        # Signed in, back to the page asked for; never to another site.
        for back, to in (("/dashboard?days=3", "/dashboard?days=3"),
                         ("//elsewhere.example/x", "/dashboard"),
                         ("https://elsewhere.example/dashboard", "/dashboard")):  # fmt: skip
            right = {"token": TOKEN, "next": back}
            async with (
                aiohttp.ClientSession() as bare,
                bare.post(
                    f"{daemon.url}/dashboard/login", data=right, allow_redirects=False
                ) as answer,
            ):
                assert answer.status == 303
                assert answer.headers["Location"] == to
        right = {"token": TOKEN}
        async with http.post(
            f"{daemon.url}/dashboard/login", data=right, allow_redirects=False
        ) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/dashboard"
            cookie = answer.cookies[COOKIE]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert cookie["path"] == "/dashboard"
        async with http.get(f"{daemon.url}/dashboard") as answer:
            assert answer.status == 200
            assert answer.headers["Cache-Control"] == "no-store"
            page = await answer.text()
        assert _figure(page, "orders") == "3"
        # Signed out: the session cookie is gone, and the page asks to sign in again.
        async with http.post(f"{daemon.url}/dashboard/logout", allow_redirects=False) as answer:
            assert answer.status == 303
        async with http.get(f"{daemon.url}/dashboard", allow_redirects=False) as answer:
            assert answer.status == 303
        # The token itself, as a bearer token, for scripts.
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{daemon.url}/dashboard", headers=bearer) as answer:
            assert answer.status == 200
        for days in ("0", "91", "x", "-1", "7.5"):
            async with http.get(
                f"{daemon.url}/dashboard", params={"days": days}, headers=bearer
            ) as answer:
                assert answer.status == 400
                assert "days: a whole number from 1 to 90" in await answer.text()


async def test_the_dashboard_is_closed_without_an_admin_token(
    make_daemon: MakeDaemon, pg: Any
) -> None:
    daemon = make_daemon(ORDERD_ADMIN__TOKEN="")
    async with aiohttp.ClientSession() as http:
        for method, path in (("GET", "/dashboard"), ("GET", "/dashboard/login"),
                             ("POST", "/dashboard/login")):  # fmt: skip
            async with http.request(
                method, f"{daemon.url}{path}", data={"token": ""}, allow_redirects=False
            ) as answer:
                assert answer.status == 404
                assert "set [admin] token" in await answer.text()


async def test_the_dashboard_shows_the_records_figures_the_held_the_waiting_and_low_stock(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    daemon = await _ready(make_daemon, pg, set_stock, ORDERD_ADMIN__TOKEN=TOKEN)
    shipped_id = await pg.fetchval("SELECT id FROM orders WHERE name = '#1001'")
    # Two ratings of the same order: the latest counts; its words are shown as words.
    await pg.execute(
        """
        INSERT INTO feedback (order_id, score, token_id, at, comment)
        VALUES ($1, 2, 't1', now() - interval '1 minute', NULL),
               ($1, 5, 't2', now(), '<b>Fast</b> & well packed')
        """,
        shipped_id,
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=bearer) as http:
        async with http.get(f"{daemon.url}/dashboard") as answer:
            assert answer.status == 200
            page = await answer.text()
        assert _figure(page, "orders") == "3"
        assert _figure(page, "held") == "1"
        assert _figure(page, "accuracy") == "100.0%"
        assert _figure(page, "packed") == "1"
        assert (_figure(page, "csat"), _figure(page, "ratings")) == ("100.0%", "1")
        assert "&lt;b&gt;Fast&lt;/b&gt; &amp; well packed" in page
        assert "<b>Fast</b>" not in page
        # Today's point of the satisfaction line: one rating, happy.
        [point] = re.findall(r"<circle [^>]*data-value=\"([0-9.]+)\"", page)
        assert point == "1.0000"
        # Every order paid today: one stacked bar, its parts by state.
        parts = dict(re.findall(r'data-series="([a-z ]+)" data-value="(\d+)"', page))
        assert parts == {"backordered": "1", "shipped": "1", "needs attention": "1"}
        held_id = await pg.fetchval("SELECT id FROM orders WHERE name = '#C-9'")
        held_row = re.search(r'<table data-table="held">.*?</table>', page, re.S)
        assert held_row is not None
        assert f'href="/dashboard/orders/{held_id}"' in held_row.group(0)
        assert "unknown sku" in held_row.group(0)
        backorders = re.search(r'<table data-table="backorders">.*?</table>', page, re.S)
        assert backorders is not None
        assert re.search(r'data-sku="BOX-1">.*?<td class="n">3</td>', backorders.group(0))
        low = re.search(r'<table data-table="low-stock">.*?</table>', page, re.S)
        assert low is not None
        # 5 of each, one of each sku shipped: the Shopify order took 1 and 2.
        assert re.search(r'data-sku="BOX-1">.*?<td class="n">0</td>', low.group(0))
        shipped_days = re.findall(r'data-chart="bars".*?</svg>', page, re.S)[0]
        assert sum(int(v) for v in re.findall(r'data-value="(\d+)"', shipped_days)) == 1

        # The held order's page: its reason, lines and timeline with each decision's why.
        async with http.get(f"{daemon.url}/dashboard/orders/{held_id}") as answer:
            assert answer.status == 200
            order = await answer.text()
        assert _figure(order, "state") == "needs attention"
        assert "NEW-9" in order
        assert re.search(r'data-event="received">.*?paid order received from generic', order)
        assert re.search(r'data-event="needs_attention">.*?held for a person: .*NEW-9', order)
        # The shipped order's page: its parcel, label and the carrier's choice explained.
        tracking = await pg.fetchval("SELECT tracking_number FROM shipments")
        async with http.get(f"{daemon.url}/dashboard/orders/{shipped_id}") as answer:
            shipped = await answer.text()
        assert tracking in shipped
        assert re.search(r'data-event="carrier_chosen">.*?chosen at .* because ', shipped)
        assert re.search(r'data-event="label_created">.*?label bought for shipment', shipped)
        # An order by its name works too; an unknown one is a page saying so.
        async with http.get(f"{daemon.url}/dashboard/orders/nope") as answer:
            assert answer.status == 404
            assert "No such order." in await answer.text()
