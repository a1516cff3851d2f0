"""An order's events in words, for its page on the dashboard: what happened and, for each
decision, why. Pure: an event as stored (its JSON object) in, a line of text out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Event = Mapping[str, Any]


def _lines(lines: Sequence[Sequence[Any]] | None) -> str:
    return ", ".join(f"{count} x {sku}" for sku, count in (lines or ())) or "nothing"


def _shipment(e: Event) -> str:
    return f"shipment {e.get('shipment_id', '?')}"


def _received(e: Event) -> str:
    order = e.get("order") or {}
    lines = order.get("lines") or ()
    units = ", ".join(f"{line.get('quantity')} x {line.get('sku')}" for line in lines)
    return f"paid order received from {order.get('platform', '?')}: {units or 'no lines'}"


def _allocated(e: Event) -> str:
    held = []
    for warehouse, sku, reserved, backordered in e.get("holdings") or ():
        part = f"{sku}: {reserved} reserved"
        if backordered:
            part += f", {backordered} waiting"
        held.append(f"{part} in {warehouse}")
    return (
        f"stock {str(e.get('status', '')).replace('_', ' ')} under the "
        f"{str(e.get('policy', '')).replace('_', ' ')} policy: " + ("; ".join(held) or "nothing")
    )


def _requested(e: Event) -> str:
    promised = e.get("promised_by")
    return (
        f"pick list for {_shipment(e)} sent to warehouse {e.get('warehouse')}: "
        f"{_lines(e.get('lines'))}, {e.get('service_level')} service"
        + (f", promised by {promised}" if promised else "")
    )


def _carrier(e: Event) -> str:
    rate = e.get("rate") or {}
    others = len(e.get("alternatives") or ())
    return (
        f"{_shipment(e)}: {rate.get('carrier')} {rate.get('service')} chosen at "
        f"{rate.get('amount')} {rate.get('currency')} over {others} other rate"
        f"{'' if others == 1 else 's'}, because {e.get('reason')}"
    )


def _label(e: Event) -> str:
    return (
        f"label bought for {_shipment(e)}: {e.get('carrier_account') or e.get('carrier')} "
        f"{e.get('service')}, tracking {e.get('tracking_number')}, "
        f"{e.get('amount')} {e.get('currency')}"
    )


def _tracked(e: Event) -> str:
    detail = e.get("detail")
    status = str(e.get("status", "")).replace("_", " ")
    return f"{_shipment(e)}: {status}" + (f" ({detail})" if detail else "")


def _message(e: Event) -> str:
    channels = ", ".join(e.get("channels") or ()) or "no channel"
    return f"{str(e.get('kind', '')).replace('_', ' ')} message queued by {channels}"


_WORDS: dict[str, Callable[[Event], str]] = {
    "received": _received,
    "stock_allocated": _allocated,
    "backorder_filled": lambda e: (
        f"backorder filled in {e.get('warehouse')}: {_lines(e.get('lines'))}"
    ),
    "nothing_to_ship": lambda e: "nothing to ship: every line is digital or a gift card",
    "cancelled": lambda e: f"cancelled by {e.get('by')}: {e.get('reason')}",
    "cancel_refused": lambda e: f"cancel by {e.get('by')} refused: {e.get('reason')}",
    "needs_attention": lambda e: f"held for a person: {e.get('reason')}",
    "fulfillment_requested": _requested,
    "picked": lambda e: f"{_shipment(e)} picked",
    "packed": lambda e: f"{_shipment(e)} packed as ordered (confirmed by {e.get('by', 'wms')})",
    "pack_mismatch": lambda e: f"{_shipment(e)} packed wrong, held: {e.get('difference')}",
    "short_picked": lambda e: (
        f"{_shipment(e)} short-picked, missing {_lines(e.get('missing'))}: asked for again"
    ),
    "carrier_chosen": _carrier,
    "label_created": _label,
    "shipped": lambda e: f"{_shipment(e)} left the warehouse: {_lines(e.get('lines'))}",
    "label_voided": lambda e: f"label of {_shipment(e)} voided",
    "tracked": _tracked,
    "tracking_number_changed": lambda e: (
        f"{_shipment(e)} now tracked as {e.get('tracking_number')} (was {e.get('was')}), "
        f"by {e.get('by')}"
    ),
    "hold_released": lambda e: f"hold released by {e.get('by')}",
    "address_changed": lambda e: f"shipping address changed by {e.get('by')}",
    "lines_changed": lambda e: f"lines changed by {e.get('by')}",
    "fulfillment_resent": lambda e: f"{_shipment(e)} sent to the warehouse again by {e.get('by')}",
    "estimate_moved": lambda e: (
        f"{_shipment(e)}: carrier's estimate moved to {e.get('estimated_delivery')}"
    ),
    "delayed": lambda e: f"{_shipment(e)} late: {e.get('reason')}",
    "delay_ended": lambda e: f"{_shipment(e)} moving again",
    "delivered": lambda e: f"{_shipment(e)} delivered",
    "delivery_exception": lambda e: (
        f"{_shipment(e)} could not be delivered: {e.get('detail') or e.get('status')}"
    ),
    "message_queued": _message,
    "follow_ups_scheduled": lambda e: (
        "follow-ups scheduled: " + ", ".join(str(k).replace("_", " ") for k in e.get("kinds", ()))
    ),
    "follow_up_done": lambda e: (
        f"follow-up {str(e.get('kind', '')).replace('_', ' ')}: {e.get('status')}"
    ),
    "completed": lambda e: "completed",
}


def describe(event: Event) -> str:
    """The event in words; an event of a type not known here is shown by its fields."""
    words = _WORDS.get(str(event.get("type")))
    if words is not None:
        try:
            return words(event)
        except (TypeError, ValueError, AttributeError):
            pass  # an event older than its words: shown by its fields below
    fields = ", ".join(
        f"{key} {value}"
        for key, value in event.items()
        if key not in ("type", "at") and isinstance(value, str | int | float | bool)
    )
    return f"{str(event.get('type', 'event')).replace('_', ' ')}" + (
        f": {fields}" if fields else ""
    )
