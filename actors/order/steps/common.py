"""Snapshot helpers more than one step uses: finding a shipment, moving it on, holds.

A hold (the whole order, a shipment, a dead letter) keeps the order needs_attention
whatever else moves on, so every step moves the order's state through :func:`progress`.
"""

from __future__ import annotations

from msgspec import structs

from actors.order import shipment as shipments
from actors.order.events import Holding
from actors.order.holds import DeadLetterHold, Hold
from actors.order.shipment import OPEN, Shipment
from actors.order.states import OrderState
from actors.order.steps.model import Rules, Snapshot
from actors.order.types import BackorderPolicy


def find_shipment(snapshot: Snapshot | None, shipment_id: str) -> Shipment | None:
    """The order's shipment ``shipment_id``, if the order and the shipment are known."""
    return None if snapshot is None else shipments.find(snapshot.shipments, shipment_id)


def has_open_shipment(snapshot: Snapshot) -> bool:
    """Whether a shipment of the order is still in the warehouse's hands."""
    return any(s.status in OPEN for s in snapshot.shipments)


def dead_letters(snapshot: Snapshot) -> bool:
    """Whether a dead-lettered message of the order waits for a person."""
    return any(isinstance(h, DeadLetterHold) for h in snapshot.holds)


def progress(current: Snapshot, state: OrderState) -> OrderState:
    """``state``, unless something still holds the order for a person."""
    return OrderState.NEEDS_ATTENTION if current.holds else state


def released(current: Snapshot, hold: Hold) -> Snapshot:
    """``current`` without ``hold``; the reason goes with the last hold."""
    if hold not in current.holds:
        return current
    holds = tuple(h for h in current.holds if h != hold)
    return structs.replace(current, holds=holds, reason=current.reason if holds else None)


def moved(current: Snapshot, shipment_id: str, state: OrderState, **changes: object) -> Snapshot:
    """``current`` with the shipment changed and the order moved to ``state``."""
    updated = tuple(
        structs.replace(s, **changes) if s.id == shipment_id else s for s in current.shipments
    )
    return structs.replace(current, state=progress(current, state), shipments=updated)


def holding_state(holdings: tuple[Holding, ...]) -> OrderState:
    """The order's state from what it holds: reserved, partly, or waiting for stock."""
    reserved = any(h.reserved for h in holdings)
    waiting = any(h.backordered for h in holdings)
    if waiting:
        return OrderState.PARTIALLY_RESERVED if reserved else OrderState.BACKORDERED
    return OrderState.RESERVED


def less(
    holdings: tuple[Holding, ...], warehouse: str, lines: tuple[tuple[str, int], ...]
) -> tuple[Holding, ...]:
    """Holdings after ``lines`` left the reservation in ``warehouse`` (shipped or written off)."""
    gone = dict(lines)
    updated = []
    for h in holdings:
        units = min(gone.pop(h.sku, 0), h.reserved) if h.warehouse == warehouse else 0
        if h.reserved - units or h.backordered:
            updated.append(Holding(h.warehouse, h.sku, h.reserved - units, h.backordered))
    return tuple(updated)


def policy_of(snapshot: Snapshot, rules: Rules) -> BackorderPolicy:
    """The order's backorder policy, as its reservation recorded it, else the rules'."""
    value = snapshot.policy
    if value in ("wait_all", "ship_available", "cancel_after_days"):
        return value  # type: ignore[return-value]
    return rules.backorder_policy
