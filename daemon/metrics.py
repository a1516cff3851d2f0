"""``/metrics``: what a warehouse manager and an operator watch, in Prometheus's format,
through prometheus-client.

Two kinds of figures:

- what this process counts as it works: webhooks by source and result, HTTP answers,
  turns and their time, the allocation core's batches, calls to carriers, the warehouse
  system, customer message senders and the stores' platforms (by outcome, with their
  time). The runtime reports them through :class:`actors.ports.observe.Observer`.
- what the durable record says, read when scraped (at most every ``refresh_s``, since a
  count over a large order book is not free): orders by state, held orders by reason,
  the outboxes' depth and failures, reminders due and late, dead letters, label spend by
  carrier, the on-time rate by carrier and service, and the four KPIs over a rolling
  window. The stream's lag and pending entries come from Redis at each scrape.

Label sets are bounded: sources, carriers, services, states and reasons, never an order
id or a sku.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.ports.observe import Target
from daemon.report import figures

# Held orders by what holds them, from the reason's words: a bounded label set.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (r"^cannot ship: ", "address"),
        (r"changed (on \w+ )?after the pick list", "changed_after_pick_list"),
        (r"unknown sku", "unknown_sku"),
        (r"^the warehouse refused", "warehouse_refused"),
        (r"packed wrong", "packed_wrong"),
        (r"^no carrier", "no_carrier"),
        (r"^no label", "no_label"),
        (r"dead-lettered", "dead_letter"),
        (r"^shipment \S+ (failure|returned)", "delivery_failed"),
        (r"for an unknown order", "unknown_order"),
    )
)


def reason_label(reason: str | None) -> str:
    """The bounded label of a hold's reason."""
    for pattern, label in _REASONS:
        if reason and pattern.search(reason):
            return label
    return "other"


class _Recorded(Collector):
    """The figures read at the last refresh, given to each scrape as they are."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class Metrics:
    """The daemon's registry, and the :class:`actors.ports.observe.Observer` it is fed by."""

    def __init__(self, *, window: timedelta = timedelta(days=7), refresh_s: float = 15.0) -> None:
        self.registry = CollectorRegistry()
        self._window = window
        self._refresh_s = refresh_s
        self._refreshed = -float("inf")
        registry = self.registry
        self.turns = Counter(
            "orderd_turns", "Order turns applied, or found applied already", registry=registry
        )
        self.turn_seconds = Histogram(
            "orderd_turn_duration_seconds",
            "Time an order's turn took: decided, its effects run, saved",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.calls = Counter(
            "orderd_calls",
            "Calls to carriers, the warehouse system, customer message senders and the "
            "stores' platforms, by adapter and outcome (ok, temporary, refused, error)",
            ["target", "name", "outcome"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "orderd_call_duration_seconds",
            "Time a call to a carrier, the warehouse system, a message sender or a platform took",
            ["target", "name"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.batch_size = Histogram(
            "orderd_allocation_batch_size",
            "Calls the allocation core ran in one batch (one script call per warehouse)",
            ["operation"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "orderd_allocation_batch_duration_seconds",
            "Time one batch of the allocation core took",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self._live = _Recorded()
        self._stored = _Recorded()
        registry.register(self._live)
        registry.register(self._stored)

    # -- the Observer ------------------------------------------------------------------

    def turn(self, seconds: float) -> None:
        self.turns.inc()
        self.turn_seconds.observe(seconds)

    def call(self, target: Target, name: str, outcome: str, seconds: float) -> None:
        self.calls.labels(target, name, outcome).inc()
        self.call_seconds.labels(target, name).observe(seconds)

    def batch(self, operation: str, size: int, seconds: float) -> None:
        self.batch_size.labels(operation).observe(size)
        self.batch_seconds.labels(operation).observe(seconds)

    # -- a scrape ----------------------------------------------------------------------

    async def exposition(
        self,
        *,
        pool: Any,
        backlog: Callable[[], Awaitable[Mapping[str, float]]] | None,
        webhooks: Mapping[tuple[str, str], int],
        answers: Mapping[str, int],
        now: datetime,
        put_off: int = 0,
        active: int = 0,
    ) -> bytes:
        """The text a scrape gets: this process's counters, the stream's backlog, and the
        durable record's figures (read again when older than ``refresh_s``)."""
        live: list[Metric] = []
        received = CounterMetricFamily(
            "orderd_webhooks",
            "Deliveries received on the webhook routes, by source (platform, warehouse "
            "system, carrier) and what became of them (accepted, duplicate, ignored)",
            labels=["source", "result"],
        )
        for (source, result), count in sorted(webhooks.items()):
            received.add_metric([source, result], count)
        live.append(received)
        http = CounterMetricFamily(
            "orderd_http_answers",
            "HTTP answers by route and status",
            labels=["method", "route", "status"],
        )
        for key, count in sorted(answers.items()):
            http.add_metric(key.split(" "), count)
        live.append(http)
        if backlog is not None:
            found = await backlog()
            for name, help_text in (
                ("lag", "Stream entries not yet delivered to the consumer group"),
                ("pending", "Stream entries delivered to a consumer and not yet acknowledged"),
                ("oldest_pending_age_seconds", "Age of the oldest unacknowledged entry"),
            ):
                family = GaugeMetricFamily(f"orderd_stream_{name}", help_text, labels=["group"])
                family.add_metric(["orderd"], float(found.get(name, 0)))
                live.append(family)
        outages = CounterMetricFamily(
            "orderd_turns_put_off_by_outages",
            "Turns put off because Redis or PostgreSQL was away (no delivery counted)",
        )
        outages.add_metric([], put_off)
        live.append(outages)
        live.append(_gauge("orderd_actors_active", "Order actors running a turn now", active))
        self._live.families = live
        if time.monotonic() - self._refreshed >= self._refresh_s:
            async with pool.acquire() as conn:
                self._stored.families = await self._from_record(conn, now)
            self._refreshed = time.monotonic()
        return generate_latest(self.registry)

    async def _from_record(self, conn: Any, now: datetime) -> list[Metric]:
        since = now - self._window
        days = self._window.total_seconds() / 86400
        out: list[Metric] = []

        states = GaugeMetricFamily("orderd_orders", "Orders by state", labels=["state"])
        for row in await conn.fetch("SELECT state, count(*) AS n FROM orders GROUP BY state"):
            states.add_metric([row["state"]], row["n"])
        out.append(states)

        held: dict[str, int] = {}
        for row in await conn.fetch(
            "SELECT state_reason FROM orders WHERE state = 'needs_attention'"
        ):
            label = reason_label(row["state_reason"])
            held[label] = held.get(label, 0) + 1
        held_family = GaugeMetricFamily(
            "orderd_orders_held", "Orders held for a person, by what holds them", labels=["reason"]
        )
        for label, count in sorted(held.items()):
            held_family.add_metric([label], count)
        out.append(held_family)

        depth = GaugeMetricFamily(
            "orderd_outbox_depth",
            "Outbox rows waiting to be delivered (pending or being sent)",
            labels=["outbox"],
        )
        failed = GaugeMetricFamily(
            "orderd_outbox_failed", "Outbox rows given up on (refused, or out of attempts)",
            labels=["outbox"],
        )  # fmt: skip
        for outbox, table in (
            ("notifications", "notifications"),
            ("fulfillment", "fulfillment_requests"),
            ("platform", "platform_calls"),
        ):
            row = await conn.fetchrow(
                f"""
                SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')) AS waiting,
                       count(*) FILTER (WHERE status = 'failed') AS failed
                FROM {table}
                """
            )
            depth.add_metric([outbox], row["waiting"])
            failed.add_metric([outbox], row["failed"])
        out += [depth, failed]

        reminders = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE due_at <= $1) AS due,
                   count(*) FILTER (WHERE due_at <= $1 - interval '1 minute') AS late
            FROM reminders WHERE fired_at IS NULL
            """,
            now,
        )
        out.append(
            _gauge("orderd_reminders_due", "Reminders due and not yet fired", reminders["due"])
        )
        out.append(
            _gauge(
                "orderd_reminders_late",
                "Reminders due more than a minute ago and not yet fired",
                reminders["late"],
            )
        )
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        out.append(_gauge("orderd_dead_letters", "Dead-lettered messages not replayed", dead))

        spend = GaugeMetricFamily(
            "orderd_label_spend",
            f"Money spent on labels of parcels shipped in the last {days:g} days, by carrier",
            labels=["carrier", "currency"],
        )
        for row in await conn.fetch(
            """
            SELECT carrier, rate_currency, sum(rate_amount) AS spent FROM shipments
            WHERE label_id IS NOT NULL AND shipped_at >= $1 AND carrier IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            since,
        ):
            spend.add_metric([row["carrier"], row["rate_currency"] or ""], float(row["spent"]))
        out.append(spend)

        on_time = GaugeMetricFamily(
            "orderd_on_time_ratio",
            f"Share of parcels delivered in the last {days:g} days by their promised date",
            labels=["carrier", "service"],
        )
        for row in await conn.fetch(
            """
            SELECT carrier, service, count(*) AS n,
                   count(*) FILTER (WHERE (delivered_at AT TIME ZONE 'UTC')::date <= promised_by)
                       AS kept
            FROM shipments
            WHERE delivered_at >= $1 AND promised_by IS NOT NULL AND carrier IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            since,
        ):
            on_time.add_metric([row["carrier"], row["service"] or ""], row["kept"] / row["n"])
        out.append(on_time)

        kpis = await figures(conn, since, now)
        times = kpis["fulfillment_time_s"]
        fulfilment = GaugeMetricFamily(
            "orderd_fulfillment_time_seconds",
            f"Time from paid to shipped and to delivered, orders paid in the last {days:g} days",
            labels=["until", "quantile"],
        )
        for until in ("shipped", "delivered"):
            for quantile, key in (("0.5", "p50"), ("0.9", "p90")):
                value = times[f"{until}_{key}"]
                if value is not None:
                    fulfilment.add_metric([until, quantile], value)
        out.append(fulfilment)
        for name, help_text, value in (
            (
                "orderd_shipping_accuracy_ratio",
                "Shipments packed right the first time and not reported wrong, of those packed",
                kpis["shipping_accuracy"],
            ),
            (
                "orderd_csat_ratio",
                "Share of 4 and 5 among each order's latest rating",
                kpis["csat"],
            ),
            (
                "orderd_inventory_turnover",
                "Cost of the goods shipped over the average value of the stock on hand",
                kpis["inventory_turnover"],
            ),
        ):
            # NaN while there is nothing to measure (no rating yet, nothing packed).
            figure = math.nan if value is None else value
            out.append(_gauge(name, f"{help_text} (last {days:g} days)", figure))
        return out


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))
