"""What happened to an order: the events ``decide`` returns and ``evolve`` applies.

Events are facts, so applying one cannot fail. They are stored as JSON with their
``type``, a turn's events together in one row of the append-only ``order_event_turns``
table; those an earlier version stored are read with :mod:`actors.order.legacy`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

import msgspec
from msgspec import Struct

from actors.order import legacy
from actors.order.holds import ORDER_HOLD, Hold
from actors.order.reminder import ReminderKind
from actors.order.types import Address, Line, NormalizedOrder
from actors.shipping.carriers import Parcel, Rate, TrackingStatus
from actors.shipping.pick_list import PickLine
from actors.shipping.tracking import DelayCause


class Holding(Struct, frozen=True, array_like=True):
    """Units of one sku the order holds (reserved) or waits for (backordered) somewhere."""

    warehouse: str
    sku: str
    reserved: int
    backordered: int


class _Event(Struct, frozen=True, kw_only=True, tag_field="type"):
    at: datetime


class OrderReceived(_Event, frozen=True, tag="received"):
    order: NormalizedOrder


class StockAllocated(_Event, frozen=True, tag="stock_allocated"):
    """The allocation core's answer: reserved, partly reserved, or waiting.

    The order's first reservation (``op_id`` "reserve") gives its holdings; a later one
    (the shortfall of a short pick) adds to them.
    """

    status: Literal["reserved", "partially_reserved", "backordered"]
    holdings: tuple[Holding, ...]
    policy: str
    op_id: str = "reserve"


class BackorderFilled(_Event, frozen=True, tag="backorder_filled"):
    warehouse: str
    lines: tuple[tuple[str, int], ...]


class NothingToShip(_Event, frozen=True, tag="nothing_to_ship"):
    """Every line is digital or a gift card: there is nothing to reserve or send."""


class OrderCancelled(_Event, frozen=True, tag="cancelled"):
    reason: str
    by: str


class CancelRefused(_Event, frozen=True, tag="cancel_refused"):
    reason: str
    by: str


class AttentionNeeded(_Event, frozen=True, tag="needs_attention"):
    """A person must look: at what ``hold`` names (the whole order, a shipment, or a
    message that was dead-lettered)."""

    reason: str
    hold: Hold = ORDER_HOLD


class FulfillmentRequested(_Event, frozen=True, tag="fulfillment_requested"):
    """A shipment's pick list went to the warehouse."""

    shipment_id: str
    warehouse: str
    lines: tuple[tuple[str, int], ...]
    service_level: str
    promised_by: date | None
    pick_list: tuple[PickLine, ...]
    parcel: Parcel
    review_after_days: int | None = None
    repeat_after_days: int | None = None


class ShipmentPicked(_Event, frozen=True, tag="picked"):
    shipment_id: str


class ShipmentPacked(_Event, frozen=True, tag="packed"):
    """Packed exactly as ordered."""

    shipment_id: str
    parcel: Parcel
    by: str = "wms"  # who confirmed it: the warehouse system, the sandbox, an operator


class PackMismatch(_Event, frozen=True, tag="pack_mismatch"):
    """The scanned contents differ from the shipment: it is held, never shipped wrong."""

    shipment_id: str
    difference: str


class ShortPick(_Event, frozen=True, tag="short_picked"):
    """Units missing from their bin: written off, the shipment replaced by a later one."""

    shipment_id: str
    missing: tuple[tuple[str, int], ...]


class CarrierChosen(_Event, frozen=True, tag="carrier_chosen"):
    shipment_id: str
    rate: Rate
    estimated_delivery: date | None
    alternatives: tuple[Rate, ...]
    reason: str


class LabelCreated(_Event, frozen=True, tag="label_created"):
    shipment_id: str
    carrier: str
    carrier_account: str
    service: str
    tracking_number: str
    tracking_url: str | None
    label_format: str
    label_path: str
    purchase_id: str
    amount: Decimal
    currency: str


class Shipped(_Event, frozen=True, tag="shipped"):
    """The shipment's stock left the warehouse (committed)."""

    shipment_id: str
    lines: tuple[tuple[str, int], ...]


class LabelVoided(_Event, frozen=True, tag="label_voided"):
    shipment_id: str


class ShipmentTracked(_Event, frozen=True, tag="tracked"):
    """News of the parcel that moved it on (older or repeated news is not recorded)."""

    shipment_id: str
    status: TrackingStatus
    carrier_status: str
    detail: str
    scanned_at: datetime
    estimated_delivery: date | None = None


class TrackingNumberChanged(_Event, frozen=True, tag="tracking_number_changed"):
    """The parcel travels under this tracking number from now on (a person corrected it)."""

    shipment_id: str
    tracking_number: str
    tracking_url: str | None
    was: str | None
    by: str


class HoldReleased(_Event, frozen=True, tag="hold_released"):
    """What held the order (a shipment, a dead-lettered message) is dealt with."""

    hold: Hold
    by: str


class AddressChanged(_Event, frozen=True, tag="address_changed"):
    """The order ships to this address from now on (a person corrected it)."""

    address: Address
    by: str


class LinesChanged(_Event, frozen=True, tag="lines_changed"):
    """The order's lines are these from now on (changed on its platform before the pick
    list went out): what it held is given back and the new lines reserved."""

    lines: tuple[Line, ...]
    by: str


class FulfillmentResent(_Event, frozen=True, tag="fulfillment_resent"):
    """The shipment's request goes to the warehouse system again (a person asked)."""

    shipment_id: str
    by: str


class EstimateMoved(_Event, frozen=True, tag="estimate_moved"):
    """The carrier gave a new delivery estimate without a new scan."""

    shipment_id: str
    estimated_delivery: date


class DelayDetected(_Event, frozen=True, tag="delayed"):
    shipment_id: str
    episode: int
    reason: str  # for people: the customer's alert, the operator's view
    cause: DelayCause  # which rule found it late, and so what ends the episode


class DelayEnded(_Event, frozen=True, tag="delay_ended"):
    """The parcel moved again: the delay episode is over."""

    shipment_id: str
    episode: int


class ShipmentDelivered(_Event, frozen=True, tag="delivered"):
    shipment_id: str
    delivered_at: datetime


class DeliveryFailed(_Event, frozen=True, tag="delivery_exception"):
    shipment_id: str
    status: TrackingStatus
    detail: str


class MessageQueued(_Event, frozen=True, tag="message_queued"):
    """A customer message is in the outbox (or had no channel to go by)."""

    kind: str
    shipment_id: str | None
    episode: int
    channels: tuple[str, ...]


class FollowUpsScheduled(_Event, frozen=True, tag="follow_ups_scheduled"):
    kinds: tuple[ReminderKind, ...]


class FollowUpDone(_Event, frozen=True, tag="follow_up_done"):
    kind: ReminderKind
    status: str


class OrderCompleted(_Event, frozen=True, tag="completed"):
    pass


Event = (
    OrderReceived
    | StockAllocated
    | BackorderFilled
    | NothingToShip
    | OrderCancelled
    | CancelRefused
    | AttentionNeeded
    | FulfillmentRequested
    | ShipmentPicked
    | ShipmentPacked
    | PackMismatch
    | ShortPick
    | CarrierChosen
    | LabelCreated
    | Shipped
    | LabelVoided
    | ShipmentTracked
    | HoldReleased
    | AddressChanged
    | LinesChanged
    | TrackingNumberChanged
    | FulfillmentResent
    | EstimateMoved
    | DelayDetected
    | DelayEnded
    | ShipmentDelivered
    | DeliveryFailed
    | MessageQueued
    | FollowUpsScheduled
    | FollowUpDone
    | OrderCompleted
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Parse one stored event, in today's form or an earlier version's."""
    event: Event = legacy.decode(_decoder, data, legacy.upgrade_event)
    return event
