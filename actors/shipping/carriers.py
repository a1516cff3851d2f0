"""What orderd asks of a carrier: rate requests, rates, purchases, tracking, errors.

Each carrier adapter (the built-in sandbox, EasyPost, Shippo) implements :class:`Carrier`.
Amounts are ``Decimal`` in the rate's currency; weights are grams and sizes centimetres
whatever the carrier's own units are (the adapter converts).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from msgspec import Struct

from actors.errors import OrderdError
from actors.order.types import Address

LabelFormat = Literal["pdf", "zpl"]

# The one status set every carrier's tracking is normalized to.
TrackingStatus = Literal[
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "available_for_pickup",
    "delivered",
    "returned",
    "failure",
    "unknown",
]


class Parcel(Struct, frozen=True, kw_only=True):
    weight_g: int
    length_cm: float
    width_cm: float
    height_cm: float


class RateRequest(Struct, frozen=True, kw_only=True):
    """One parcel to quote, from a warehouse to a customer."""

    shipment_id: str  # orderd's shipment id, sent as the carrier's reference
    ship_from: Address
    ship_to: Address
    parcel: Parcel
    signature: bool = False  # adult/direct signature on delivery
    declared_value: Decimal | None = None
    currency: str = "USD"


class Rate(Struct, frozen=True, kw_only=True):
    """One way to send the parcel, as a carrier quoted it."""

    carrier: str  # the adapter: "sandbox", "easypost", "shippo"
    carrier_account: str  # the company that moves the parcel, e.g. "USPS", "UPS"
    service: str  # the carrier's service name, e.g. "Priority", "ground"
    amount: Decimal
    currency: str
    delivery_days: int | None = None  # business days in transit, when the carrier says
    delivery_date: date | None = None  # the carrier's own estimate, when it gives one
    rate_id: str  # what to buy
    quote_id: str  # the carrier-side shipment the rate belongs to; looked up before buying again


class Purchase(Struct, frozen=True, kw_only=True):
    """A bought label."""

    carrier: str
    carrier_account: str
    service: str
    tracking_number: str
    label_format: LabelFormat
    label: bytes  # the label file itself (PDF or ZPL II)
    purchase_id: str  # the carrier's id for the purchase (to void or track it)
    amount: Decimal
    currency: str
    tracking_url: str | None = None


class TrackingEvent(Struct, frozen=True, kw_only=True):
    status: TrackingStatus
    carrier_status: str  # the carrier's own status word, kept beside the normalized one
    detail: str = ""
    at: datetime
    location: str = ""


class Tracking(Struct, frozen=True, kw_only=True):
    tracking_number: str
    status: TrackingStatus
    carrier_status: str
    estimated_delivery: date | None = None
    events: tuple[TrackingEvent, ...] = ()


class CarrierError(OrderdError):
    """A carrier refused or failed a call.

    ``temporary`` is true for what a later try may fix (timeouts, 5xx, rate limits); false
    for what needs a person (bad address, bad credentials, a malformed answer).
    """

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class Carrier(Protocol):
    """A carrier account orderd can quote, buy labels from, track and void with."""

    name: str

    async def rates(self, request: RateRequest) -> list[Rate]:
        """Every service the carrier offers for the parcel, with price and transit time."""
        ...

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        """Buy ``rate``'s label, at most once per ``rate.quote_id``.

        If a label was already bought for the quote (a crash between buying and recording),
        that purchase is returned instead of buying again.
        """
        ...

    async def track(self, tracking_number: str, *, carrier_account: str | None = None) -> Tracking:
        """The parcel's tracking as the carrier knows it now.

        ``carrier_account`` (the purchase's, e.g. "USPS") is needed by carriers that track
        through several companies (Shippo).
        """
        ...

    async def void(self, purchase_id: str) -> None:
        """Cancel an unused label (refund)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
