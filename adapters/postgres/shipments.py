"""Shipments as operators read them: a projection of each order actor's shipments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from actors.order.shipment import Shipment
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_SHIPMENTS = Rows(
    "id text", "order_id text", "seq int", "warehouse text", "status text", "carrier text",
    "carrier_account text", "service text", "service_level text", "rate_amount numeric",
    "rate_currency text", "quote_id text", "rate_id text", "label_key text", "label_id text",
    "tracking_number text", "tracking_url text", "label_format text", "label_path text",
    "weight_g int", "length_cm numeric", "width_cm numeric", "height_cm numeric",
    "promised_by date", "estimated_delivery date", "packed_ok bool", "problem text",
    "at timestamptz", "shipped_at timestamptz", "tracking_status text",
    "tracking_detail text", "tracking_at timestamptz", "carrier_estimate date",
    "delayed bool", "delay_episode int", "delay_reason text", "delivered_at timestamptz",
)  # fmt: skip
_LINES = Rows("shipment_id text", "line_no int", "sku text", "quantity int")


def _row(order_id: str, s: Shipment, at: datetime) -> tuple[Any, ...]:
    rate, parcel = s.rate, s.parcel
    return (
        s.id, order_id, s.seq, s.warehouse, s.status,
        rate.carrier if rate else None, rate.carrier_account if rate else None,
        rate.service if rate else None, s.service_level, rate.amount if rate else None,
        rate.currency if rate else None, rate.quote_id if rate else None,
        rate.rate_id if rate else None, f"{s.id}:label" if s.purchase_id else None,
        s.purchase_id, s.tracking_number, s.tracking_url, s.label_format, s.label_path,
        parcel.weight_g if parcel else None, parcel.length_cm if parcel else None,
        parcel.width_cm if parcel else None, parcel.height_cm if parcel else None,
        s.promised_by, s.estimated_delivery, s.packed_ok, s.problem, at, s.shipped_at,
        s.tracking_status, s.tracking_detail, s.tracking_at, s.carrier_estimate, s.delayed,
        s.delay_episode, s.delay_reason, s.delivered_at,
    )  # fmt: skip


def add(writes: Writes, rows: Sequence[tuple[str, Shipment, datetime]]) -> None:
    """Write each (order id, shipment, turn time) as it now stands, with its lines, as
    parts of a larger statement."""
    if not rows:
        return
    shipments = [s for _, s, _ in rows]
    writes.add(
        f"""
        INSERT INTO shipments AS s (
            id, order_id, seq, warehouse, status, carrier, carrier_account, service,
            service_level, rate_amount, rate_currency, quote_id, rate_id, label_idempotency,
            label_id, tracking_number, tracking_url, label_format, label_path, weight_g,
            length_cm, width_cm, height_cm, promised_by, estimated_delivery, packed_ok,
            problem, shipped_at, updated_at, tracking_status, tracking_detail, tracking_at,
            carrier_estimate, delayed, delay_episode, delay_reason, delivered_at)
        SELECT id, order_id, seq, warehouse, status, carrier, carrier_account, service,
               service_level, rate_amount, rate_currency, quote_id, rate_id, label_key,
               label_id, tracking_number, tracking_url, label_format, label_path, weight_g,
               length_cm, width_cm, height_cm, promised_by, estimated_delivery, packed_ok,
               problem, shipped_at, at, tracking_status, tracking_detail, tracking_at,
               carrier_estimate, delayed, delay_episode, delay_reason, delivered_at
        FROM (SELECT {_SHIPMENTS.columns} FROM {_SHIPMENTS.source}) AS t
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, carrier = excluded.carrier,
            carrier_account = excluded.carrier_account, service = excluded.service,
            rate_amount = excluded.rate_amount, rate_currency = excluded.rate_currency,
            quote_id = excluded.quote_id, rate_id = excluded.rate_id,
            label_idempotency = excluded.label_idempotency, label_id = excluded.label_id,
            tracking_number = excluded.tracking_number, tracking_url = excluded.tracking_url,
            label_format = excluded.label_format, label_path = excluded.label_path,
            weight_g = excluded.weight_g, length_cm = excluded.length_cm,
            width_cm = excluded.width_cm, height_cm = excluded.height_cm,
            estimated_delivery = excluded.estimated_delivery, packed_ok = excluded.packed_ok,
            problem = excluded.problem,
            shipped_at = coalesce(s.shipped_at, excluded.shipped_at),
            updated_at = excluded.updated_at, tracking_status = excluded.tracking_status,
            tracking_detail = excluded.tracking_detail, tracking_at = excluded.tracking_at,
            carrier_estimate = excluded.carrier_estimate, delayed = excluded.delayed,
            delay_episode = excluded.delay_episode, delay_reason = excluded.delay_reason,
            delivered_at = excluded.delivered_at
        """,
        _SHIPMENTS.encode(_row(order_id, s, at) for order_id, s, at in rows),
    )
    lines = [(s.id, n, sku, units) for s in shipments for n, (sku, units) in enumerate(s.lines, 1)]
    if lines:
        writes.add(
            f"""
            INSERT INTO shipment_lines (shipment_id, line_no, sku, quantity)
            SELECT {_LINES.columns} FROM {_LINES.source}
            ON CONFLICT DO NOTHING
            """,
            _LINES.encode(lines),
        )
