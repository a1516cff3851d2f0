"""Shipments as operators read them: a projection of each order actor's shipments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from actors.order.shipment import Shipment


async def save(conn: Any, rows: Sequence[tuple[str, Shipment, datetime]]) -> None:
    """Write each (order id, shipment, turn time) as it now stands, with its lines."""
    if not rows:
        return
    shipments = [s for _, s, _ in rows]
    await conn.execute(
        """
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
        FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::numeric[], $11::text[],
                    $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                    $17::text[], $18::text[], $19::text[], $20::int[], $21::numeric[],
                    $22::numeric[], $23::numeric[], $24::date[], $25::date[], $26::bool[],
                    $27::text[], $28::timestamptz[], $29::timestamptz[], $30::text[],
                    $31::text[], $32::timestamptz[], $33::date[], $34::bool[], $35::int[],
                    $36::text[], $37::timestamptz[])
             AS t (id, order_id, seq, warehouse, status, carrier, carrier_account, service,
                   service_level, rate_amount, rate_currency, quote_id, rate_id, label_key,
                   label_id, tracking_number, tracking_url, label_format, label_path,
                   weight_g, length_cm, width_cm, height_cm, promised_by, estimated_delivery,
                   packed_ok, problem, at, shipped_at, tracking_status, tracking_detail,
                   tracking_at, carrier_estimate, delayed, delay_episode, delay_reason,
                   delivered_at)
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
        [s.id for s in shipments],
        [order_id for order_id, _, _ in rows],
        [s.seq for s in shipments],
        [s.warehouse for s in shipments],
        [s.status for s in shipments],
        [s.rate.carrier if s.rate else None for s in shipments],
        [s.rate.carrier_account if s.rate else None for s in shipments],
        [s.rate.service if s.rate else None for s in shipments],
        [s.service_level for s in shipments],
        [s.rate.amount if s.rate else None for s in shipments],
        [s.rate.currency if s.rate else None for s in shipments],
        [s.rate.quote_id if s.rate else None for s in shipments],
        [s.rate.rate_id if s.rate else None for s in shipments],
        [f"{s.id}:label" if s.purchase_id else None for s in shipments],
        [s.purchase_id for s in shipments],
        [s.tracking_number for s in shipments],
        [s.tracking_url for s in shipments],
        [s.label_format for s in shipments],
        [s.label_path for s in shipments],
        [s.parcel.weight_g if s.parcel else None for s in shipments],
        [s.parcel.length_cm if s.parcel else None for s in shipments],
        [s.parcel.width_cm if s.parcel else None for s in shipments],
        [s.parcel.height_cm if s.parcel else None for s in shipments],
        [s.promised_by for s in shipments],
        [s.estimated_delivery for s in shipments],
        [s.packed_ok for s in shipments],
        [s.problem for s in shipments],
        [at for _, _, at in rows],
        [s.shipped_at for s in shipments],
        [s.tracking_status for s in shipments],
        [s.tracking_detail for s in shipments],
        [s.tracking_at for s in shipments],
        [s.carrier_estimate for s in shipments],
        [s.delayed for s in shipments],
        [s.delay_episode for s in shipments],
        [s.delay_reason for s in shipments],
        [s.delivered_at for s in shipments],
    )
    lines = [(s.id, n, sku, units) for s in shipments for n, (sku, units) in enumerate(s.lines, 1)]
    await conn.execute(
        """
        INSERT INTO shipment_lines (shipment_id, line_no, sku, quantity)
        SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[])
        ON CONFLICT DO NOTHING
        """,
        [line[0] for line in lines],
        [line[1] for line in lines],
        [line[2] for line in lines],
        [line[3] for line in lines],
    )
