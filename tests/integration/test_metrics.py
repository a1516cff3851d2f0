"""``GET /metrics`` on a running daemon, read with prometheus-client's own parser: every
metric the warehouse manager and the operator watch is there, with its help text, its
figures match the durable record, and no label carries an order id or a sku."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    eventually,
    generic_body,
    generic_headers,
    get,
    request,
    shopify_body,
    shopify_headers,
)

MakeDaemon = Callable[..., Any]

EXPECTED = {
    # What this process counts.
    "orderd_webhooks": "counter",
    "orderd_http_answers": "counter",
    "orderd_turns": "counter",
    "orderd_turn_duration_seconds": "histogram",
    "orderd_allocation_batch_size": "histogram",
    "orderd_allocation_batch_duration_seconds": "histogram",
    "orderd_calls": "counter",
    "orderd_call_duration_seconds": "histogram",
    "orderd_stream_lag": "gauge",
    "orderd_stream_pending": "gauge",
    "orderd_stream_oldest_pending_age_seconds": "gauge",
    "orderd_turns_put_off_by_outages": "counter",
    "orderd_actors_active": "gauge",
    # What the durable record says.
    "orderd_orders": "gauge",
    "orderd_orders_held": "gauge",
    "orderd_outbox_depth": "gauge",
    "orderd_outbox_failed": "gauge",
    "orderd_reminders_due": "gauge",
    "orderd_reminders_late": "gauge",
    "orderd_dead_letters": "gauge",
    "orderd_label_spend": "gauge",
    "orderd_on_time_ratio": "gauge",
    "orderd_fulfillment_time_seconds": "gauge",
    "orderd_shipping_accuracy_ratio": "gauge",
    "orderd_csat_ratio": "gauge",
    "orderd_inventory_turnover": "gauge",
}


async def test_metrics_are_prometheus_text_with_help_and_the_records_figures(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock
) -> None:
    await add_products(pg, "SKU2006-001", "SKU2006-020", "MUG-1")
    await set_stock({"SKU2006-001": 5, "SKU2006-020": 5, "MUG-1": 5})
    await pg.execute("UPDATE products SET unit_cost = 4.00")
    daemon = make_daemon(ORDERD_WMS__SANDBOX_DELAY_S="0")
    body = shopify_body(processed_at=datetime.now(UTC).isoformat())
    assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202
    held = generic_body("C-9", [("MUG-1", 1), ("NEW-9", 1)])  # a sku nobody imported
    assert request(f"{daemon.url}/webhooks/orders", held, generic_headers(held))[0] == 202
    assert request(f"{daemon.url}/webhooks/shopify", b"{}", {"X-Shopify-Topic": "x"})[0] == 401

    async def settled() -> bool:
        states = dict(await pg.fetch("SELECT name, state FROM orders"))
        return states == {"#1001": "shipped", "#C-9": "needs_attention"}

    await eventually(settled, within_s=30, what="one order shipped and one held")
    status, text = get(f"{daemon.url}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: families[name].type for name in EXPECTED if name in families} == EXPECTED
    for family in families.values():
        if family.name.startswith("orderd_"):
            assert family.documentation.strip(), f"{family.name} has no help text"

    def value(metric: str, /, **labels: str) -> float:
        family = metric.removesuffix("_total").removesuffix("_count")
        samples = [
            s.value
            for s in families[family].samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert samples, f"no {metric} {labels}"
        return float(sum(samples))

    assert value("orderd_webhooks_total", source="shopify", result="accepted") == 1
    assert value("orderd_webhooks_total", source="generic", result="accepted") == 1
    assert value("orderd_http_answers_total", route="/webhooks/shopify", status="401") == 1
    assert value("orderd_orders", state="shipped") == 1
    assert value("orderd_orders_held", reason="unknown_sku") == 1
    assert value("orderd_turns_total") >= 5
    assert value("orderd_turn_duration_seconds_count") == value("orderd_turns_total")
    assert value("orderd_allocation_batch_size_count", operation="reserve") >= 1
    assert value("orderd_allocation_batch_size_count", operation="commit") == 1
    # The sandbox carrier quoted and sold the label; the warehouse took the pick list; the
    # mail server is away here, so the confirmation's calls failed, and tried again.
    assert value("orderd_calls_total", target="carrier", name="sandbox", outcome="ok") >= 2
    assert value("orderd_calls_total", target="wms", name="sandbox", outcome="ok") == 1
    assert value("orderd_calls_total", target="notifier", name="email", outcome="temporary") >= 1
    assert value("orderd_call_duration_seconds_count", target="carrier", name="sandbox") >= 2
    assert value("orderd_outbox_depth", outbox="notifications") >= 1
    assert value("orderd_outbox_depth", outbox="fulfillment") == 0
    assert value("orderd_dead_letters") == 0
    shipment = await pg.fetchrow("SELECT carrier, rate_currency, rate_amount FROM shipments")
    spent = value(
        "orderd_label_spend", carrier=shipment["carrier"], currency=shipment["rate_currency"]
    )
    assert spent == float(shipment["rate_amount"])
    shipped_s = await pg.fetchval(
        "SELECT extract(epoch FROM shipped_at - paid_at) FROM orders WHERE name = '#1001'"
    )
    assert value("orderd_fulfillment_time_seconds", until="shipped", quantile="0.5") == (
        round(float(shipped_s), 1)
    )
    assert value("orderd_shipping_accuracy_ratio") == 1.0
    assert math.isnan(value("orderd_csat_ratio"))  # nobody rated yet: not a number
    assert value("orderd_inventory_turnover") > 0
    # Bounded labels: no order id, order name or sku in any of them.
    ids = [r["id"] for r in await pg.fetch("SELECT id FROM orders")]
    for family in families.values():
        for sample in family.samples:
            for label in sample.labels.values():
                assert not any(i in label for i in ids)
                assert "SKU2006" not in label
                assert "#" not in label
