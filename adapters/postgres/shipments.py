"""Shipments as operators read them: a projection of each order actor's shipments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from actors.order.shipment import Shipment
from adapters.postgres.rows import Rows
from adapters.postgres.writes import Writes

_SHIPMENTS = Rows(
    "id text", "order_id text", "seq int", "warehouse text", "status text", "carrier text",
    "carrier_account text", "service text", "service_level text", "rate_amount numeric",
    "rate_currency text", "quote_id text", "rate_id text", "label_idempotency text",
    "label_id text", "tracking_number text", "tracking_url text", "label_format text",
    "label_path text", "weight_g int", "length_cm numeric", "width_cm numeric", "height_cm numeric",
    "promised_by date", "estimated_delivery date", "packed_ok bool", "problem text",
    "updated_at timestamptz", "shipped_at timestamptz", "tracking_status text",
    "tracking_detail text", "tracking_at timestamptz", "carrier_estimate date",
    "delayed bool", "delay_episode int", "delay_reason text", "delivered_at timestamptz",
    "mispacked bool",
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
        s.delay_episode, s.delay_reason, s.delivered_at, s.mispacked,
    )  # fmt: skip


_COLUMNS = """
    id, order_id, seq, warehouse, status, carrier, carrier_account, service, service_level,
    rate_amount, rate_currency, quote_id, rate_id, label_idempotency, label_id,
    tracking_number, tracking_url, label_format, label_path, weight_g, length_cm, width_cm,
    height_cm, promised_by, estimated_delivery, packed_ok, problem, shipped_at, updated_at,
    tracking_status, tracking_detail, tracking_at, carrier_estimate, delayed, delay_episode,
    delay_reason, delivered_at, mispacked
"""
# What a turn may change in a shipment it already had (its order, number, warehouse,
# service level and promise stay as they were made), from the row named ``new``.
_CHANGES = """
    status = {new}.status, carrier = {new}.carrier,
    carrier_account = {new}.carrier_account, service = {new}.service,
    rate_amount = {new}.rate_amount, rate_currency = {new}.rate_currency,
    quote_id = {new}.quote_id, rate_id = {new}.rate_id,
    label_idempotency = {new}.label_idempotency, label_id = {new}.label_id,
    tracking_number = {new}.tracking_number, tracking_url = {new}.tracking_url,
    label_format = {new}.label_format, label_path = {new}.label_path,
    weight_g = {new}.weight_g, length_cm = {new}.length_cm, width_cm = {new}.width_cm,
    height_cm = {new}.height_cm, estimated_delivery = {new}.estimated_delivery,
    packed_ok = {new}.packed_ok, problem = {new}.problem,
    shipped_at = coalesce(s.shipped_at, {new}.shipped_at), updated_at = {new}.updated_at,
    tracking_status = {new}.tracking_status, tracking_detail = {new}.tracking_detail,
    tracking_at = {new}.tracking_at, carrier_estimate = {new}.carrier_estimate,
    delayed = {new}.delayed, delay_episode = {new}.delay_episode,
    delay_reason = {new}.delay_reason, delivered_at = {new}.delivered_at,
    mispacked = s.mispacked OR {new}.mispacked
"""


def add(
    writes: Writes,
    rows: Sequence[tuple[str, Shipment, datetime]],
    known: Mapping[str, Shipment],
) -> None:
    """Write each (order id, shipment, turn time) as it now stands, with its lines, as
    parts of a larger statement.

    ``known`` holds the shipments as they were saved last, by id: one that is new is
    inserted, one that changed is updated, and one the turn left as it was is not
    written at all. An update is a plain one, found by the key: an upsert locked each
    row first, and every turn that moved one shipment of an order rewrote them all.
    """
    new = [(o, s, at) for o, s, at in rows if s.id not in known]
    changed = [(o, s, at) for o, s, at in rows if s.id in known and known[s.id] != s]
    if new:
        writes.add(
            f"""
            INSERT INTO shipments AS s ({_COLUMNS})
            SELECT {_COLUMNS} FROM (SELECT {_SHIPMENTS.columns} FROM {_SHIPMENTS.source}) AS u
            ON CONFLICT (id) DO UPDATE SET {_CHANGES.format(new="excluded")}
            """,
            _SHIPMENTS.encode(_row(order_id, s, at) for order_id, s, at in new),
        )
    if changed:
        writes.add(
            f"""
            UPDATE shipments s SET {_CHANGES.format(new="u")}
            FROM (SELECT {_SHIPMENTS.columns} FROM {_SHIPMENTS.source}) AS u
            WHERE s.id = ANY($2::text[]) AND s.id = u.id
            """,
            _SHIPMENTS.encode(_row(order_id, s, at) for order_id, s, at in changed),
            [s.id for _, s, _ in changed],
        )
    # A shipment's lines are written when it is new, or when its lines changed.
    lines = [
        (s.id, n, sku, units)
        for _, s, _ in rows
        if s.id not in known or known[s.id].lines != s.lines
        for n, (sku, units) in enumerate(s.lines, 1)
    ]
    if lines:
        writes.add(
            f"""
            INSERT INTO shipment_lines (shipment_id, line_no, sku, quantity)
            SELECT {_LINES.columns} FROM {_LINES.source}
            ON CONFLICT DO NOTHING
            """,
            _LINES.encode(lines),
        )
