"""Stock: the order's reservation, backorders filling, and units written off again.

Holds the decisions on the allocation core's answers (``Allocated``,
``AllocationRefused``, ``WrittenOff``) and on ``BackorderFilled``, and the evolve cases
for ``StockAllocated`` and ``BackorderFilled``, with the holdings arithmetic they need.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec import structs

from actors.order.events import AttentionNeeded, BackorderFilled, Holding, StockAllocated
from actors.order.holds import ORDER_HOLD
from actors.order.messages import BackorderFilled as BackorderFilledMessage
from actors.order.reminder import ReminderKind
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.common import (
    find_shipment,
    holding_state,
    policy_of,
    progress,
    released,
)
from actors.order.steps.fulfillment import then_fulfil
from actors.order.steps.model import (
    Allocated,
    AllocationRefused,
    Decision,
    Effect,
    Evolve,
    Notify,
    Remind,
    Reserve,
    Rules,
    Snapshot,
    WrittenOff,
)
from actors.order.types import BackorderPolicy as Policy


def allocated(
    snapshot: Snapshot | None, message: Allocated, rules: Rules, now: datetime, evolve: Evolve
) -> Decision:
    """Record the reservation; tell the customer of a backorder; ship what is ready."""
    status, policy, op_id = message.status, message.policy, message.op_id
    stock = StockAllocated(
        at=now, status=status, holdings=message.holdings, policy=policy, op_id=op_id
    )
    remind: tuple[Effect, ...] = ()
    if status != "reserved" and op_id == "reserve":
        remind = (Notify(kind="backorder_notice"),)
        if policy == "cancel_after_days":
            due = now + timedelta(days=rules.cancel_after_days)
            remind += (Remind(ReminderKind.CANCEL_BACKORDER, due),)
    return then_fulfil(snapshot, (stock,), rules, now, evolve, remind)


def backorder_filled(
    snapshot: Snapshot | None,
    message: BackorderFilledMessage,
    rules: Rules,
    now: datetime,
    evolve: Evolve,
) -> Decision:
    """Units that arrived for the order are reserved for it; ship what is ready."""
    if snapshot is None or snapshot.state in TERMINAL:
        return Decision()
    event = BackorderFilled(at=now, warehouse=message.warehouse, lines=message.lines)
    return then_fulfil(snapshot, (event,), rules, now, evolve)


def allocation_refused(message: AllocationRefused, now: datetime) -> Decision:
    """A sku the catalog does not know: a person must look."""
    return Decision((AttentionNeeded(at=now, reason=message.reason),))


def written_off(snapshot: Snapshot | None, message: WrittenOff, rules: Rules) -> Decision:
    """Reserve the written-off units again: from another warehouse that has them all, not
    from the shelf that came up short; else they wait there for a recount or a receipt."""
    shipment_id = message.shipment_id
    found = find_shipment(snapshot, shipment_id)
    if snapshot is None or found is None or not found.short:
        return Decision()
    shortfall = found.short
    policy: Policy = policy_of(snapshot, rules)
    reserve = Reserve(shortfall, policy, op_id=f"reserve:{shipment_id}", avoid=(found.warehouse,))
    return Decision((), (reserve,))


def stock_allocated(current: Snapshot, event: StockAllocated) -> Snapshot:
    """The order holds the reserved and backordered units."""
    if event.op_id == "reserve" or event.op_id.startswith("change"):
        # The order's whole reservation (again, after a replayed dead letter, or for the
        # lines its platform changed): whatever held the whole order before is settled.
        settled = released(current, ORDER_HOLD)
        merged = _merged((), event.holdings)
        return structs.replace(
            settled, state=progress(settled, OrderState(event.status)), holdings=merged,
            policy=event.policy,
        )  # fmt: skip
    merged = _merged(current.holdings, event.holdings)
    return structs.replace(current, state=progress(current, holding_state(merged)), holdings=merged)


def filled(current: Snapshot, event: BackorderFilled) -> Snapshot:
    """Backordered units are reserved now."""
    holdings = _filled_holdings(current.holdings, event.warehouse, event.lines)
    state = progress(current, holding_state(holdings))
    return structs.replace(current, state=state, holdings=holdings)


def _merged(holdings: tuple[Holding, ...], more: tuple[Holding, ...]) -> tuple[Holding, ...]:
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for h in (*holdings, *more):
        reserved, waiting = totals.get((h.warehouse, h.sku), (0, 0))
        totals[(h.warehouse, h.sku)] = (reserved + h.reserved, waiting + h.backordered)
    return tuple(
        Holding(warehouse, sku, reserved, waiting)
        for (warehouse, sku), (reserved, waiting) in totals.items()
        if reserved or waiting
    )


def _filled_holdings(
    holdings: tuple[Holding, ...], warehouse: str, lines: tuple[tuple[str, int], ...]
) -> tuple[Holding, ...]:
    arrived = dict(lines)
    updated = []
    for h in holdings:
        units = min(arrived.pop(h.sku, 0), h.backordered) if h.warehouse == warehouse else 0
        updated.append(Holding(h.warehouse, h.sku, h.reserved + units, h.backordered - units))
    for sku, units in arrived.items():
        updated.append(Holding(warehouse, sku, units, 0))
    return tuple(updated)
