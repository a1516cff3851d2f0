"""Cancel: an order cancelled by the platform, a person, or a backorder waiting too long.

Holds the decisions on ``CancelRequested``, the cancel-backorder reminder, and the
results of undoing what was done outside (``Voided``, ``ReleasedAll``), and the evolve
cases for ``OrderCancelled`` and ``LabelVoided``.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import structs

from actors.order.events import CancelRefused, LabelVoided, OrderCancelled
from actors.order.messages import CancelRequested, ReminderDue
from actors.order.shipment import OPEN
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.common import has_open_shipment, moved
from actors.order.steps.model import (
    CANCELLABLE,
    Decision,
    Effect,
    ReleaseAll,
    ReleasedAll,
    Rules,
    Snapshot,
    Void,
    Voided,
)


def requested(snapshot: Snapshot | None, message: CancelRequested, now: datetime) -> Decision:
    """Cancel as asked, or refuse once a parcel has left."""
    return _cancel(snapshot, message.order_id, message.reason, message.requested_by, now)


def backorder_waited(
    snapshot: Snapshot | None, due: ReminderDue, rules: Rules, now: datetime
) -> Decision:
    """Under ``cancel_after_days``, an order whose backorder waited too long is cancelled."""
    if snapshot is None or not any(h.backordered for h in snapshot.holdings):
        return Decision()  # filled meanwhile, or gone: nothing to cancel
    if snapshot.state not in CANCELLABLE or has_open_shipment(snapshot):
        return Decision()  # part of it is on its way: the rest keeps waiting
    reason = f"backorder waited {rules.cancel_after_days} days"
    return _cancel(snapshot, due.order_id, reason, "orderd", now)


def _cancel(
    snapshot: Snapshot | None, order_id: str, reason: str, by: str, now: datetime
) -> Decision:
    if snapshot is None:
        # Cancelled before it was paid here: remember it, so a late paid webhook is ignored.
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    if snapshot.state in TERMINAL:
        return Decision()
    shipped = any(s.status == "shipped" for s in snapshot.shipments)
    if snapshot.state not in CANCELLABLE or shipped:
        refusal = f"cannot cancel in state {snapshot.state.value}: it has shipped"
        return Decision((CancelRefused(at=now, reason=refusal, by=by),))
    voids: tuple[Effect, ...] = tuple(
        Void(shipment_id=s.id, carrier=s.rate.carrier, purchase_id=s.purchase_id)
        for s in snapshot.shipments
        if s.status == "label_created" and s.rate is not None and s.purchase_id is not None
    )
    if not snapshot.holdings:
        if voids:
            return Decision((), voids, ReleasedAll(reason=reason, by=by))
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    return Decision((), (*voids, ReleaseAll("cancel")), ReleasedAll(reason=reason, by=by))


def released_all(message: ReleasedAll, now: datetime) -> Decision:
    """The order's stock is released: the cancellation held across it is recorded."""
    return Decision((OrderCancelled(at=now, reason=message.reason, by=message.by),))


def voided(message: Voided, now: datetime) -> Decision:
    """The carrier took the label back."""
    return Decision((LabelVoided(at=now, shipment_id=message.shipment_id),))


def cancelled(current: Snapshot, event: OrderCancelled) -> Snapshot:
    """Nothing more is held or sent for the order."""
    # Shipments not yet labelled go no further; a labelled one was voided first.
    stopped = tuple(
        structs.replace(s, status="cancelled") if s.status in OPEN else s for s in current.shipments
    )
    return structs.replace(
        current, state=OrderState.CANCELLED, holdings=(), reason=event.reason,
        shipments=stopped, holds=(),
    )  # fmt: skip


def label_voided(current: Snapshot, event: LabelVoided) -> Snapshot:
    return moved(current, event.shipment_id, current.state, status="voided")
