"""Carriers' tracking webhooks into a running daemon: verified, matched to the parcel,
applied once, in order; anything else answered and changing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.carriers.webhooks import sign_easypost
from tests.carrier_servers import EasyPostServer, ShippoServer
from tests.conftest import add_products
from tests.integration.daemon_harness import eventually, request, shopify_body, shopify_headers
from tests.integration.test_fulfillment import carrier_env
from tests.unit.test_tracking import (
    easypost_detail,
    easypost_event,
    easypost_tracker,
    shippo_status,
    shippo_track_updated,
)

MakeDaemon = Callable[..., Any]
SECRET = "tracking-webhook-secret"


async def shipped(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, server: Any, name: str
) -> tuple[Any, str]:
    """A daemon whose one order went out with carrier ``name``; its tracking number."""
    await add_products(pg, "SKU2006-001", "SKU2006-020")
    for sku in ("SKU2006-001", "SKU2006-020"):
        assert run_orderd("stock", "set", sku, "5").returncode == 0
    env = {
        **carrier_env(name, server),
        f"ORDERD_CARRIERS__{name.upper()}__WEBHOOK_SECRET": SECRET,
        "ORDERD_WMS__SANDBOX_DELAY_S": "0",
    }
    daemon = make_daemon(**env)
    body = shopify_body(processed_at=datetime.now(UTC).isoformat())
    assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
    await reaches(pg, "shipped")
    view = json.loads(run_orderd("order", "show", "#1001", "--json").stdout)
    tracking: str = view["shipments"][0]["tracking_number"]
    return daemon, tracking


async def reaches(pg: Any, state: str) -> None:
    async def there() -> bool:
        current = await pg.fetchval("SELECT state FROM orders WHERE name = '#1001'")
        return bool(current == state)

    await eventually(there, within_s=30, what=f"the order to be {state}")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def easypost_news(tracking: str, status: str, at: datetime, event_id: str) -> bytes:
    tracker = easypost_tracker(
        tracking_code=tracking,
        status=status,
        tracking_details=[easypost_detail(status, f"{status} scan", iso(at))],
        est_delivery_date=None,
    )
    event = easypost_event(tracker)
    event["id"] = event_id
    return json.dumps(event).encode()


def post_easypost(daemon: Any, body: bytes, secret: str = SECRET) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Hmac-Signature": sign_easypost(body, secret)}
    return request(f"{daemon.url}/webhooks/carriers/easypost", body, headers)


async def test_easypost_tracking_news_moves_the_order_once_and_in_order(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any
) -> None:
    async with EasyPostServer() as server:
        daemon, tracking = await shipped(make_daemon, pg, run_orderd, server, "easypost")
        now = datetime.now(UTC)
        moving = easypost_news(tracking, "in_transit", now + timedelta(hours=1), "evt_1")
        assert post_easypost(daemon, moving)[0] == 202
        await reaches(pg, "in_transit")
        status, answer = post_easypost(daemon, moving)
        assert (status, answer["status"]) == (200, "duplicate")
        before = await pg.fetchval("SELECT count(*) FROM mailbox")
        # Forged, unknown, not tracking news, older news: answered, nothing changes.
        assert post_easypost(daemon, moving, secret="forged")[0] == 401
        stranger = easypost_news("9400000000000000000000", "delivered", now, "evt_2")
        assert post_easypost(daemon, stranger)[1]["reason"] == "unknown tracking number"
        other = json.dumps(easypost_event(easypost_tracker(), "batch.created")).encode()
        assert post_easypost(daemon, other)[1]["status"] == "ignored"
        assert post_easypost(daemon, b'{"object": "Event"')[0] == 400
        assert await pg.fetchval("SELECT count(*) FROM mailbox") == before
        older = easypost_news(tracking, "pre_transit", now, "evt_3")
        assert post_easypost(daemon, older)[0] == 202
        delivered = easypost_news(tracking, "delivered", now + timedelta(days=2), "evt_4")
        assert post_easypost(daemon, delivered)[0] == 202
        await reaches(pg, "delivered")
    events = await pg.fetch(
        "SELECT data->>'status' AS status FROM order_events WHERE type = 'tracked' ORDER BY seq"
    )
    assert [e["status"] for e in events] == ["in_transit", "delivered"]


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_shippo_news_needs_the_url_token(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, token: str | None
) -> None:
    async with ShippoServer() as server:
        daemon, tracking = await shipped(make_daemon, pg, run_orderd, server, "shippo")
        at = iso(datetime.now(UTC) + timedelta(hours=1))
        scan = shippo_status("TRANSIT", "In transit", at, None, "shp_scan_1")
        body = json.dumps(
            shippo_track_updated(
                tracking_number=tracking, tracking_status=scan, tracking_history=[scan]
            )
        ).encode()
        url = f"{daemon.url}/webhooks/carriers/shippo"
        refused = request(
            url + (f"?token={token}" if token else ""), body, {"Content-Type": "application/json"}
        )
        assert refused[0] == 401
        accepted = request(f"{url}?token={SECRET}", body, {"Content-Type": "application/json"})
        assert accepted[0] == 202
        await reaches(pg, "in_transit")
