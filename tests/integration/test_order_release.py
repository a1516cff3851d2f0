"""``orderd order release`` and ``orderd order resend`` on a running daemon: a held order
goes on once its cause is fixed, and the command says what became of it, or why it did
nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from adapters.platforms.signatures import sign_generic
from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    SECRET,
    RecordingWms,
    eventually,
    generic_body,
    generic_headers,
    request,
)

MakeDaemon = Callable[..., Any]


async def test_an_order_held_for_an_unknown_sku_goes_on_once_the_sku_is_stocked(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "MUG-1")
    await set_stock({"MUG-1": 5})
    daemon = make_daemon()
    body = generic_body("C-7", [("MUG-1", 1), ("NEW-1", 2)])
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

    async def held() -> bool:
        state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = '#C-7'")
        return state == "needs_attention"

    await eventually(held, what="the order to be held")
    reason = await pg.fetchval("SELECT state_reason FROM orders WHERE name = '#C-7'")
    assert "NEW-1" in reason

    # Released before the sku is known: tried again, and held again with its reason.
    early = run_orderd("order", "release", "#C-7")
    assert early.returncode == 0, early.stderr
    assert early.stdout.strip().endswith(
        f"the order hold was released, and it is held again: {reason}"
    )

    # Imported and stocked: released, it is reserved and goes to the warehouse.
    await add_products(pg, "NEW-1")
    stocked = run_orderd("stock", "set", "NEW-1", "4")
    assert stocked.returncode == 0, stocked.stderr
    done = run_orderd("order", "release", "C-7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        "the order hold was released; it is fulfillment_requested now"
    )
    reserved = await pg.fetch(
        "SELECT sku, reserved FROM order_lines ol JOIN orders o ON o.id = ol.order_id "
        "WHERE o.name = '#C-7' ORDER BY sku"
    )
    assert [(r["sku"], r["reserved"]) for r in reserved] == [("MUG-1", 1), ("NEW-1", 2)]
    requested = await pg.fetchval(
        "SELECT count(*) FROM shipments s JOIN orders o ON o.id = s.order_id "
        "WHERE o.name = '#C-7' AND s.status = 'requested'"
    )
    assert requested == 1

    # Nothing holds it now: the command says so, and changes nothing.
    again = run_orderd("order", "release", "#C-7")
    assert again.returncode == 2
    assert again.stderr.strip().endswith("is not held")
    shipment = run_orderd("order", "release", "#C-7", "--shipment", "shp_nope")
    assert shipment.returncode == 2
    assert "shipment shp_nope is not held" in shipment.stderr
    assert await pg.fetchval("SELECT state FROM orders WHERE name = '#C-7'") == (
        "fulfillment_requested"
    )


async def test_a_pick_list_the_warehouse_refused_is_sent_again_once_fixed_there(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "MUG-1")
    await set_stock({"MUG-1": 5})
    async with RecordingWms() as wms:
        wms.failures.append(422)  # refused for good: the sku is not set up there yet
        daemon = make_daemon(
            ORDERD_WMS__ADAPTER="http", ORDERD_WMS__URL=wms.url, ORDERD_WMS__SECRET=SECRET
        )
        body = generic_body("W-1", [("MUG-1", 1)])
        assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

        async def held() -> bool:
            state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = '#W-1'")
            return state == "needs_attention"

        await eventually(held, what="the refused order to be held")
        assert len(wms.received) == 1
        reason = await pg.fetchval("SELECT state_reason FROM orders WHERE name = '#W-1'")
        assert "the warehouse refused shipment" in reason
        assert "422" in reason

        # Set up at the warehouse now: sent again, the hold ends.
        done = run_orderd("order", "resend", "#W-1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(
            "sent to the warehouse again; the order is fulfillment_requested"
        )

        async def delivered() -> bool:
            return len(wms.received) == 2

        await eventually(delivered, what="the request to reach the WMS again")
        first, second = (json.loads(b) for b, _ in wms.received)
        assert second == first  # the same pick list, with the same idempotency key
        assert wms.received[1][1]["Idempotency-Key"] == first["shipment_id"]

        async def sent() -> bool:
            status: str | None = await pg.fetchval(
                "SELECT status FROM fulfillment_requests WHERE shipment_id = $1",
                first["shipment_id"],
            )
            return status == "sent"

        await eventually(sent, what="the request to be marked sent")
        shown = json.loads(run_orderd("order", "show", "#W-1", "--json").stdout)
        assert shown["holds"] == []
        assert [e["type"] for e in shown["events"]][-2:] == [
            "fulfillment_resent", "hold_released",
        ]  # fmt: skip

        # Once picked, a shipment is not sent again; the command says so.
        ids = {"order_id": first["order_id"], "shipment_id": first["shipment_id"]}
        picked = json.dumps({"event": "picked", **ids}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Orderd-Signature": sign_generic(picked, SECRET)}  # fmt: skip
        assert request(f"{daemon.url}/webhooks/wms", picked, headers)[0] == 202

        async def is_picked() -> bool:
            state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = '#W-1'")
            return state == "picked"

        await eventually(is_picked, what="the order to be picked")
        late = run_orderd("order", "resend", "#W-1")
        assert late.returncode == 2
        assert "waiting at the warehouse to be picked" in late.stderr
        assert len(wms.received) == 2
