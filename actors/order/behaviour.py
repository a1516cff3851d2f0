"""The order actor's behaviour: pure ``decide`` and ``evolve``.

``decide(snapshot, message, rules, now)`` says what happened (events) and what must be
done outside (effects); the runtime runs the effects and hands their results back as
messages in the same turn. ``evolve(snapshot, event)`` applies an event and cannot fail.
No I/O here: every test of an order decision is a plain function call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct, structs

from actors.order.events import (
    AttentionNeeded,
    BackorderFilled,
    CancelRefused,
    Event,
    Holding,
    NothingToShip,
    OrderCancelled,
    OrderReceived,
    StockAllocated,
)
from actors.order.messages import (
    BackorderFilled as BackorderFilledMessage,
)
from actors.order.messages import (
    CancelRequested,
    Message,
    OrderPaid,
    ReminderDue,
)
from actors.order.states import TERMINAL, OrderState
from actors.order.types import NormalizedOrder

Policy = Literal["wait_all", "ship_available", "cancel_after_days"]
CANCEL_BACKORDER = "cancel_backorder"

# Until a label is bought an order can still be cancelled with nothing to undo outside.
CANCELLABLE = frozenset(
    {
        OrderState.RECEIVED,
        OrderState.RESERVED,
        OrderState.PARTIALLY_RESERVED,
        OrderState.BACKORDERED,
        OrderState.FULFILLMENT_REQUESTED,
        OrderState.PICKED,
        OrderState.PACKED,
        OrderState.NEEDS_ATTENTION,
    }
)


class Rules(Struct, frozen=True, kw_only=True):
    """The store's settings that order decisions depend on."""

    backorder_policy: Policy = "wait_all"
    cancel_after_days: int = 14


class Snapshot(Struct, frozen=True, kw_only=True):
    """An order as its actor knows it between turns."""

    order_id: str
    state: OrderState
    order: NormalizedOrder | None = None
    holdings: tuple[Holding, ...] = ()
    policy: str | None = None
    reason: str | None = None


# -- effects: what the runtime must do, and the messages their results come back as ----


class Reserve(Struct, frozen=True):
    lines: tuple[tuple[str, int], ...]
    policy: Policy
    op_id: str = "reserve"


class ReleaseAll(Struct, frozen=True):
    op_id: str


class Remind(Struct, frozen=True):
    kind: str
    due_at: datetime


Effect = Reserve | ReleaseAll | Remind


class Allocated(Struct, frozen=True, kw_only=True):
    """The result of :class:`Reserve`."""

    status: Literal["reserved", "partially_reserved", "backordered"]
    holdings: tuple[Holding, ...]
    policy: Policy


class ReleasedAll(Struct, frozen=True, kw_only=True):
    """The result of :class:`ReleaseAll`, carrying why the release was asked for."""

    reason: str
    by: str


class AllocationRefused(Struct, frozen=True, kw_only=True):
    """:class:`Reserve` was refused (a sku the catalog does not know): a person must look."""

    reason: str


Result = Allocated | ReleasedAll | AllocationRefused


class Decision(Struct, frozen=True):
    events: tuple[Event, ...] = ()
    effects: tuple[Effect, ...] = ()
    # Held across the release effect, then turned into the cancellation event.
    pending: ReleasedAll | None = None


def decide(
    snapshot: Snapshot | None, message: Message | Result, rules: Rules, now: datetime
) -> Decision:
    """What the message means for the order: events to record and effects to run."""
    match message:
        case OrderPaid(order=order):
            return _paid(snapshot, order, rules, now)
        case Allocated(status=status, holdings=holdings, policy=policy):
            events: tuple[Event, ...] = (
                StockAllocated(at=now, status=status, holdings=holdings, policy=policy),
            )
            if status != "reserved" and policy == "cancel_after_days":
                due = now + timedelta(days=rules.cancel_after_days)
                return Decision(events, (Remind(CANCEL_BACKORDER, due),))
            return Decision(events)
        case BackorderFilledMessage(warehouse=warehouse, lines=lines):
            if snapshot is None or snapshot.state in TERMINAL:
                return Decision()
            return Decision((BackorderFilled(at=now, warehouse=warehouse, lines=lines),))
        case CancelRequested(reason=reason, requested_by=by):
            return _cancel(snapshot, message.order_id, reason, by, now)
        case ReminderDue(kind=kind) if kind == CANCEL_BACKORDER:
            if snapshot is None or not any(h.backordered for h in snapshot.holdings):
                return Decision()  # filled meanwhile, or gone: nothing to cancel
            if snapshot.state not in CANCELLABLE:
                return Decision()
            reason = f"backorder waited {rules.cancel_after_days} days"
            return _cancel(snapshot, message.order_id, reason, "orderd", now)
        case ReleasedAll(reason=reason, by=by):
            return Decision((OrderCancelled(at=now, reason=reason, by=by),))
        case AllocationRefused(reason=reason):
            return Decision((AttentionNeeded(at=now, reason=reason),))
        case ReminderDue():
            return Decision()
    return Decision()


def _paid(
    snapshot: Snapshot | None, order: NormalizedOrder, rules: Rules, now: datetime
) -> Decision:
    policy: Policy = order.backorder_policy or rules.backorder_policy
    shippable: dict[str, int] = {}
    for line in order.shippable_lines():
        shippable[line.sku] = shippable.get(line.sku, 0) + line.quantity
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


def _cancel(
    snapshot: Snapshot | None, order_id: str, reason: str, by: str, now: datetime
) -> Decision:
    if snapshot is None:
        # Cancelled before it was paid here: remember it, so a late paid webhook is ignored.
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    if snapshot.state in TERMINAL:
        return Decision()
    if snapshot.state not in CANCELLABLE:
        refusal = f"cannot cancel in state {snapshot.state.value}: the label is bought"
        return Decision((CancelRefused(at=now, reason=refusal, by=by),))
    if not snapshot.holdings:
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    return Decision((), (ReleaseAll("cancel"),), ReleasedAll(reason=reason, by=by))


def evolve(snapshot: Snapshot | None, event: Event, order_id: str) -> Snapshot:
    """The order after ``event``."""
    current = snapshot or Snapshot(order_id=order_id, state=OrderState.RECEIVED)
    match event:
        case OrderReceived(order=order):
            return structs.replace(current, state=OrderState.RECEIVED, order=order)
        case StockAllocated(status=status, holdings=holdings, policy=policy):
            return structs.replace(
                current, state=OrderState(status), holdings=holdings, policy=policy
            )
        case BackorderFilled(warehouse=warehouse, lines=lines):
            holdings = _filled(current.holdings, warehouse, lines)
            waiting = any(h.backordered for h in holdings)
            state = OrderState.PARTIALLY_RESERVED if waiting else OrderState.RESERVED
            return structs.replace(current, state=state, holdings=holdings)
        case NothingToShip():
            return structs.replace(current, state=OrderState.COMPLETED, reason="nothing to ship")
        case OrderCancelled(reason=reason):
            return structs.replace(current, state=OrderState.CANCELLED, holdings=(), reason=reason)
        case AttentionNeeded(reason=reason):
            return structs.replace(current, state=OrderState.NEEDS_ATTENTION, reason=reason)
        case CancelRefused():
            return current
    return current


def _filled(
    holdings: tuple[Holding, ...], warehouse: str, lines: tuple[tuple[str, int], ...]
) -> tuple[Holding, ...]:
    filled = dict(lines)
    updated = []
    for h in holdings:
        units = min(filled.pop(h.sku, 0), h.backordered) if h.warehouse == warehouse else 0
        updated.append(Holding(h.warehouse, h.sku, h.reserved + units, h.backordered - units))
    for sku, units in filled.items():
        updated.append(Holding(warehouse, sku, units, 0))
    return tuple(updated)
