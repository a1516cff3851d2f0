"""Attention: holds on the order or a shipment, for a person to look at and release.

Holds the decision on ``HoldRelease`` (the order goes on where it stopped) and the
evolve cases for ``AttentionNeeded`` and ``HoldReleased``, with the order's resting
state worked out from its shipments and holdings when a hold ends.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import structs

from actors.order.events import AttentionNeeded, HoldReleased
from actors.order.holds import ORDER_HOLD
from actors.order.messages import HoldRelease
from actors.order.shipment import OPEN
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.common import holding_state, released
from actors.order.steps.followup import then_complete
from actors.order.steps.fulfillment import then_fulfil
from actors.order.steps.intake import reserve_again
from actors.order.steps.model import Decision, Evolve, Rules, Snapshot
from actors.order.steps.tracking import TRACKED_STATE, delivery_state

# How far a shipment got, as the order's state, least advanced first.
_SHIPMENT_STATE = {
    "requested": OrderState.FULFILLMENT_REQUESTED,
    "picked": OrderState.PICKED,
    "packed": OrderState.PACKED,
    "mismatch": OrderState.PACKED,
    "label_created": OrderState.LABEL_CREATED,
}


def release(
    snapshot: Snapshot | None, message: HoldRelease, rules: Rules, now: datetime, evolve: Evolve
) -> Decision:
    """End a hold; an order whose last parcel arrived meanwhile goes on to its follow-ups,
    one whose stock waits meanwhile goes to the warehouse, and one held before anything
    was reserved (a sku unknown then, imported since) asks for its reservation again."""
    hold = message.hold
    if snapshot is None or snapshot.state in TERMINAL or hold not in snapshot.holds:
        return Decision()
    ended = HoldReleased(at=now, hold=hold, by=message.by)
    after = evolve(snapshot, ended, snapshot.order_id)
    if hold == ORDER_HOLD and (again := reserve_again(after, rules)) is not None:
        return Decision((ended,), (again,))
    if after.state is OrderState.DELIVERED and not after.follow_ups:
        arrived = max(s.delivered_at for s in after.shipments if s.delivered_at is not None)
        return then_complete(snapshot, (ended,), (), rules, now, arrived, evolve)
    return then_fulfil(snapshot, (ended,), rules, now, evolve)


def attention_needed(current: Snapshot, event: AttentionNeeded) -> Snapshot:
    """The order, or one shipment, is held for a person."""
    if current.state in TERMINAL:
        return current  # a finished order is not reopened by late news
    hold = event.hold
    holds = current.holds if hold in current.holds else (*current.holds, hold)
    return structs.replace(
        current, state=OrderState.NEEDS_ATTENTION, reason=event.reason, holds=holds
    )


def hold_released(current: Snapshot, event: HoldReleased) -> Snapshot:
    """The hold is over; the order rests where its shipments and holdings put it."""
    if current.state in TERMINAL:
        return current
    after = released(current, event.hold)
    return structs.replace(after, state=_resting_state(after))


def _resting_state(snapshot: Snapshot) -> OrderState:
    """The order's state worked out from its shipments and holdings (when a hold ends and
    no single event says where the order is)."""
    if snapshot.holds:
        return OrderState.NEEDS_ATTENTION
    order = [*_SHIPMENT_STATE.values()]
    open_states = [_SHIPMENT_STATE[s.status] for s in snapshot.shipments if s.status in OPEN]
    if open_states:
        return min(open_states, key=order.index)
    if any(h.backordered for h in snapshot.holdings):
        return holding_state(snapshot.holdings)  # the rest still waits for stock
    moving = [s for s in snapshot.shipments if s.status == "shipped"]
    if moving:
        tracked = [TRACKED_STATE.get(s.tracking_status or "", OrderState.SHIPPED) for s in moving]
        ranks = [OrderState.SHIPPED, OrderState.IN_TRANSIT, OrderState.OUT_FOR_DELIVERY]
        return max(tracked, key=ranks.index)
    if any(s.status == "delivered" for s in snapshot.shipments):
        return delivery_state(structs.replace(snapshot, state=OrderState.SHIPPED))
    if snapshot.holdings:
        return holding_state(snapshot.holdings)
    return OrderState.RECEIVED
