"""Intake: a paid order arrives and its shippable lines are sent to be reserved.

Holds the decision on ``OrderPaid`` (also when a dead letter replays it) and the evolve
cases for ``OrderReceived`` and ``NothingToShip``.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import structs

from actors.order.events import NothingToShip, OrderReceived
from actors.order.messages import OrderPaid
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.model import Decision, Reserve, Rules, Snapshot
from actors.order.types import BackorderPolicy as Policy
from actors.order.types import NormalizedOrder


def shippable_units(order: NormalizedOrder) -> dict[str, int]:
    """Units to reserve per sku: the order's shippable lines, summed."""
    units: dict[str, int] = {}
    for line in order.shippable_lines():
        units[line.sku] = units.get(line.sku, 0) + line.quantity
    return units


def reserve_again(snapshot: Snapshot, rules: Rules) -> Reserve | None:
    """The order's reservation asked for again, when it was held before anything was
    reserved (a sku unknown then) and has nothing in a parcel; None otherwise."""
    order = snapshot.order
    if order is None or snapshot.holdings or snapshot.shipments:
        return None
    shippable = shippable_units(order)
    if not shippable:
        return None
    policy: Policy = order.backorder_policy or rules.backorder_policy
    return Reserve(tuple(shippable.items()), policy)


def paid(snapshot: Snapshot | None, message: OrderPaid, rules: Rules, now: datetime) -> Decision:
    """Record the order and reserve what it ships, once; a replay only retries the reserve."""
    order = message.order
    policy: Policy = order.backorder_policy or rules.backorder_policy
    shippable = shippable_units(order)
    if (
        snapshot is not None
        and snapshot.state is OrderState.NEEDS_ATTENTION
        and snapshot.order is not None
        and not snapshot.holdings
        and not shippable
        and not snapshot.shipments
    ):
        return Decision((NothingToShip(at=now),))  # a replayed paid order with nothing to send
    if (
        snapshot is not None
        and snapshot.state is OrderState.NEEDS_ATTENTION
        and snapshot.order is not None
        and not snapshot.holdings
        and shippable
    ):
        # Held before anything was reserved, and sent again (a replayed dead letter):
        # the reservation is tried again.
        return Decision((), (Reserve(tuple(shippable.items()), policy),))
    if snapshot is not None and (snapshot.order is not None or snapshot.state in TERMINAL):
        return Decision()  # already known, or cancelled first: a paid webhook changes nothing
    received = OrderReceived(at=now, order=order)
    if not shippable:
        return Decision((received, NothingToShip(at=now)))
    return Decision((received,), (Reserve(tuple(shippable.items()), policy),))


def received(current: Snapshot, event: OrderReceived) -> Snapshot:
    """The order's lines and address are known."""
    if current.state in TERMINAL:
        return structs.replace(current, order=event.order)  # cancelled before it was paid
    return structs.replace(current, state=OrderState.RECEIVED, order=event.order)


def nothing_to_ship(current: Snapshot, event: NothingToShip) -> Snapshot:
    """An order without a shippable line is complete as soon as it is paid."""
    return structs.replace(current, state=OrderState.COMPLETED, reason="nothing to ship", holds=())
