"""The order actor's behaviour: pure ``decide`` and ``evolve``.

``decide(snapshot, message, rules, now)`` says what happened (events) and what must be
done outside (effects); the runtime runs the effects and hands their results back as
messages in the same turn. ``evolve(snapshot, event)`` applies an event and cannot fail.
No I/O here: every test of an order decision is a plain function call.

This module composes the pipeline's steps (``actors.order.steps``): each message, result
and event type is routed to its step here, and only here. Both matches end in
``assert_never``, so a type added to ``Message``, ``Result`` or ``Event`` that no step
handles fails type checking instead of being ignored. The shared vocabulary (rules,
snapshot, effects, results, decision) is re-exported from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import assert_never

from actors.order.events import (
    AddressChanged,
    AttentionNeeded,
    BackorderFilled,
    CancelRefused,
    CarrierChosen,
    DelayDetected,
    DelayEnded,
    DeliveryFailed,
    EstimateMoved,
    Event,
    FollowUpDone,
    FollowUpsScheduled,
    FulfillmentRequested,
    FulfillmentResent,
    HoldReleased,
    LabelCreated,
    LabelVoided,
    LinesChanged,
    MessageQueued,
    NothingToShip,
    OrderCancelled,
    OrderCompleted,
    OrderReceived,
    PackMismatch,
    ShipmentDelivered,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentTracked,
    Shipped,
    ShortPick,
    StockAllocated,
    TrackingNumberChanged,
)
from actors.order.messages import (
    AddressCorrected,
    BuyLabel,
    CancelRequested,
    HoldRelease,
    Message,
    NotificationSettled,
    OrderChanged,
    OrderPaid,
    Packed,
    Picked,
    ReminderDue,
    ResendRequested,
    RetryRequested,
    ShortPicked,
    TrackingCorrected,
    TrackingUpdated,
    WarehouseRefused,
)
from actors.order.messages import (
    BackorderFilled as BackorderFilledMessage,
)
from actors.order.reminder import FOLLOW_UPS, ReminderKind
from actors.order.states import OrderState
from actors.order.steps import (
    attention,
    cancel,
    followup,
    fulfillment,
    intake,
    shipping,
    stock,
    tracking,
)
from actors.order.steps.model import (
    CANCELLABLE,
    DEFAULT_LEVELS,
    Allocated,
    AllocationRefused,
    Buy,
    Commit,
    CommittedShipment,
    Decision,
    Effect,
    FulfillmentQueued,
    LabelBought,
    LabelRefused,
    NothingTracked,
    Notify,
    Queued,
    RatesQuoted,
    ReleaseAll,
    ReleasedAll,
    Remind,
    RequestFulfillment,
    ResendFulfillment,
    Reserve,
    Result,
    Rules,
    ShopRates,
    Snapshot,
    Tell,
    TellPlatform,
    Track,
    Void,
    Voided,
    WriteOff,
    WrittenOff,
)

__all__ = [
    "CANCELLABLE",
    "DEFAULT_LEVELS",
    "FOLLOW_UPS",
    "Allocated",
    "AllocationRefused",
    "Buy",
    "Commit",
    "CommittedShipment",
    "Decision",
    "Effect",
    "FulfillmentQueued",
    "LabelBought",
    "LabelRefused",
    "NothingTracked",
    "Notify",
    "Queued",
    "RatesQuoted",
    "ReleaseAll",
    "ReleasedAll",
    "Remind",
    "RequestFulfillment",
    "ResendFulfillment",
    "Reserve",
    "Result",
    "Rules",
    "ShopRates",
    "Snapshot",
    "Tell",
    "TellPlatform",
    "Track",
    "Void",
    "Voided",
    "WriteOff",
    "WrittenOff",
    "decide",
    "evolve",
]


def decide(
    snapshot: Snapshot | None, message: Message | Result, rules: Rules, now: datetime
) -> Decision:
    """What the message means for the order: events to record and effects to run."""
    match message:
        case OrderPaid():
            return intake.paid(snapshot, message, rules, now)
        case Allocated():
            return stock.allocated(snapshot, message, rules, now, evolve)
        case BackorderFilledMessage():
            return stock.backorder_filled(snapshot, message, rules, now, evolve)
        case AllocationRefused():
            return stock.allocation_refused(message, now)
        case WrittenOff():
            return stock.written_off(snapshot, message, rules)
        case FulfillmentQueued():
            return fulfillment.queued(message, now)
        case Picked():
            return fulfillment.picked(snapshot, message, now)
        case Packed():
            return fulfillment.packed(snapshot, message, rules, now)
        case ShortPicked():
            return fulfillment.short_picked(snapshot, message, now)
        case WarehouseRefused():
            return fulfillment.warehouse_refused(snapshot, message, now)
        case RatesQuoted():
            return shipping.rates_quoted(snapshot, message, rules, now)
        case BuyLabel():
            return shipping.buy_label(snapshot, message, rules)
        case LabelBought():
            return shipping.label_bought(snapshot, message, now)
        case LabelRefused():
            return shipping.label_refused(message, now)
        case CommittedShipment():
            return shipping.committed(snapshot, message, rules, now)
        case RetryRequested():
            return shipping.retry(snapshot, message, rules, now)
        case TrackingUpdated():
            return tracking.tracked(snapshot, message, rules, now, evolve)
        case NothingTracked():
            return Decision()  # the carrier had nothing new to say
        case Queued():
            return followup.queued(snapshot, message, now)
        case NotificationSettled():
            return followup.settled(snapshot, message, now)
        case CancelRequested():
            return cancel.requested(snapshot, message, now)
        case ReleasedAll():
            return cancel.released_all(message, now)
        case Voided():
            return cancel.voided(message, now)
        case HoldRelease():
            return attention.release(snapshot, message, rules, now, evolve)
        case AddressCorrected():
            return fulfillment.address_corrected(snapshot, message, rules, now, evolve)
        case OrderChanged():
            return fulfillment.order_changed(snapshot, message, rules, now, evolve)
        case TrackingCorrected():
            return tracking.corrected(snapshot, message, rules, now)
        case ResendRequested():
            return fulfillment.resend(snapshot, message, now)
        case ReminderDue():
            return _reminder_due(snapshot, message, rules, now)
        case _:
            assert_never(message)


def _reminder_due(
    snapshot: Snapshot | None, due: ReminderDue, rules: Rules, now: datetime
) -> Decision:
    """A durable reminder fell due: the step that set it handles it, by its kind."""
    kind = due.kind
    match kind:
        case ReminderKind.CANCEL_BACKORDER:
            return cancel.backorder_waited(snapshot, due, rules, now)
        case ReminderKind.PICKUP_CHECK | ReminderKind.PROMISE_CHECK | ReminderKind.NO_SCAN:
            return tracking.check_delay(snapshot, due, rules, now)
        case ReminderKind.TRACK_POLL:
            return tracking.poll(snapshot, due, rules, now)
        case ReminderKind.REVIEW_REQUEST | ReminderKind.REPEAT_PURCHASE:
            return followup.follow_up_due(snapshot, due)
        case _:
            assert_never(kind)


def evolve(snapshot: Snapshot | None, event: Event, order_id: str) -> Snapshot:
    """The order after ``event``."""
    current = snapshot or Snapshot(order_id=order_id, state=OrderState.RECEIVED)
    match event:
        case OrderReceived():
            return intake.received(current, event)
        case NothingToShip():
            return intake.nothing_to_ship(current, event)
        case StockAllocated():
            return stock.stock_allocated(current, event)
        case BackorderFilled():
            return stock.filled(current, event)
        case FulfillmentRequested():
            return fulfillment.requested(current, event)
        case ShipmentPicked():
            return fulfillment.shipment_picked(current, event)
        case ShipmentPacked():
            return fulfillment.shipment_packed(current, event)
        case PackMismatch():
            return fulfillment.pack_mismatch(current, event)
        case ShortPick():
            return fulfillment.short_pick(current, event)
        case CarrierChosen():
            return shipping.carrier_chosen(current, event)
        case LabelCreated():
            return shipping.label_created(current, event)
        case Shipped():
            return shipping.shipped(current, event)
        case ShipmentTracked():
            return tracking.shipment_tracked(current, event)
        case TrackingNumberChanged():
            return tracking.tracking_number_changed(current, event)
        case EstimateMoved():
            return tracking.estimate_moved(current, event)
        case DelayDetected():
            return tracking.delay_detected(current, event)
        case DelayEnded():
            return tracking.delay_ended(current, event)
        case ShipmentDelivered():
            return tracking.delivered(current, event)
        case DeliveryFailed():
            return tracking.delivery_failed(current, event)
        case FollowUpsScheduled():
            return followup.follow_ups_scheduled(current, event)
        case FollowUpDone():
            return followup.follow_up_done(current, event)
        case OrderCompleted():
            return followup.completed(current, event)
        case OrderCancelled():
            return cancel.cancelled(current, event)
        case LabelVoided():
            return cancel.label_voided(current, event)
        case AttentionNeeded():
            return attention.attention_needed(current, event)
        case HoldReleased():
            return attention.hold_released(current, event)
        case AddressChanged():
            return fulfillment.address_changed(current, event)
        case LinesChanged():
            return fulfillment.lines_changed(current, event)
        case CancelRefused() | MessageQueued() | FulfillmentResent():
            return current  # kept in the order's history; the order itself is unchanged
        case _:
            assert_never(event)
