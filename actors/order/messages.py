"""Messages an order actor receives: frozen, tagged msgspec Structs in one union.

Each message names the order it is for. On the stream a message is JSON with a ``type``
field, so an operator reading an entry with redis-cli sees what it is. Messages an earlier
version stored are read with :mod:`actors.order.legacy`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from actors.order import legacy
from actors.order.holds import Hold
from actors.order.reminder import ReminderKind, ReminderScope
from actors.order.types import Address, NormalizedOrder, Quantity, Sku
from actors.shipping.carriers import TrackingStatus

Centimetres = Annotated[float, Meta(gt=0, le=1000)]


class _Message(Struct, frozen=True, kw_only=True, tag_field="type"):
    order_id: str


class OrderPaid(_Message, frozen=True, tag="order_paid"):
    """A paid order arrived from a platform: start fulfilling it."""

    order: NormalizedOrder
    received_at: datetime


class CancelRequested(_Message, frozen=True, tag="cancel_requested"):
    """The platform or an operator asked to cancel the order."""

    reason: str
    requested_by: str


class BackorderFilled(_Message, frozen=True, tag="backorder_filled"):
    """Stock arrived and the allocation core reserved what the order was waiting for."""

    warehouse: str
    lines: tuple[tuple[Sku, int], ...]


class ReminderDue(_Message, frozen=True, tag="reminder_due"):
    """A durable reminder the order set for itself has come due."""

    kind: ReminderKind
    key: str
    due_at: datetime
    scope: ReminderScope | None = None  # what it is about within the order, e.g. a shipment


class RetryRequested(_Message, frozen=True, tag="retry_requested"):
    """A person fixed what held a packed shipment without a label (carrier settings, an
    address at the carrier): shop its rates and buy its label again."""

    shipment_id: str
    requested_by: str = "operator"


class HoldRelease(_Message, frozen=True, tag="hold_release"):
    """What held the order is dealt with (a dead letter replayed after it): go on."""

    hold: Hold
    by: str = "operator"


class AddressCorrected(_Message, frozen=True, tag="address_corrected"):
    """A person corrected the order's shipping address (before its pick list was sent):
    check it again, and go on if it will do."""

    address: Address
    by: str = "operator"


class OrderChanged(_Message, frozen=True, tag="order_changed"):
    """The platform changed the order (``orders/updated``): its address or lines are
    applied while its pick list is not out yet, and held for a person after."""

    order: NormalizedOrder
    by: str


class TrackingCorrected(_Message, frozen=True, tag="tracking_corrected"):
    """A person says the shipped parcel travels under another tracking number (it was
    labelled again by hand, with the same carrier): watch that one, and tell the customer
    and the store."""

    shipment_id: str
    tracking_number: Annotated[str, Meta(min_length=1, max_length=100)]
    tracking_url: str | None = None
    by: str = "operator"


class ResendRequested(_Message, frozen=True, tag="resend_requested"):
    """A person fixed what made the warehouse system refuse (or lose) a shipment's pick
    list: deliver the request to it again."""

    shipment_id: str
    by: str = "operator"


class TrackingUpdated(_Message, frozen=True, tag="tracking_updated"):
    """A carrier's news of a shipment: from its webhook, a poll, or the sandbox carrier."""

    shipment_id: str
    status: TrackingStatus
    carrier_status: str
    at: datetime
    detail: str = ""
    estimated_delivery: date | None = None
    location: str = ""


class NotificationSettled(_Message, frozen=True, tag="notification_settled"):
    """A customer message went out, failed for good, or had nobody to go to."""

    kind: str
    status: Literal["sent", "failed", "skipped"]


class Picked(_Message, frozen=True, tag="picked"):
    """The warehouse picked the shipment's items."""

    shipment_id: str


class Packed(_Message, frozen=True, tag="packed"):
    """The warehouse packed the shipment: what it scanned into the parcel, and the parcel."""

    shipment_id: str
    items: Annotated[tuple[tuple[Sku, Quantity], ...], Meta(max_length=1000)]
    weight_g: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    dimensions_cm: tuple[Centimetres, Centimetres, Centimetres] | None = None
    by: str = "wms"


class ShortPicked(_Message, frozen=True, tag="short_picked"):
    """The warehouse could not find some units in their bin."""

    shipment_id: str
    missing: Annotated[tuple[tuple[Sku, Quantity], ...], Meta(min_length=1, max_length=1000)]


class WarehouseRefused(_Message, frozen=True, tag="warehouse_refused"):
    """The warehouse system refused the fulfillment request for good."""

    shipment_id: str
    reason: str


class BuyLabel(_Message, frozen=True, tag="buy_label"):
    """The order's own next step: buy the label of a shipment whose carrier is chosen.

    Sent by the order to itself, so that the choice is saved before anything is bought.
    """

    shipment_id: str


Message = (
    OrderPaid
    | CancelRequested
    | BackorderFilled
    | ReminderDue
    | Picked
    | Packed
    | ShortPicked
    | WarehouseRefused
    | BuyLabel
    | RetryRequested
    | HoldRelease
    | AddressCorrected
    | OrderChanged
    | TrackingCorrected
    | ResendRequested
    | TrackingUpdated
    | NotificationSettled
)

_decoder = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()


def encode_message(message: Message) -> bytes:
    """The JSON bytes of ``message``, with its ``type`` tag."""
    return _encoder.encode(message)


def decode_message(data: bytes | str) -> Message:
    """Parse one message, in today's form or an earlier version's; raises
    ``msgspec.ValidationError`` or ``DecodeError`` on bad input."""
    message: Message = legacy.decode(_decoder, data, legacy.upgrade_message)
    return message
