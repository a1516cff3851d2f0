"""What the store's platform is told of the parcels that leave, and the protocol every
platform's write-back adapter implements.

A turn that ships a parcel stores a :class:`ParcelShipped` in the platform outbox, in the
transaction that saves the turn; :mod:`actors.storefront_sender` delivers it, exactly
once per parcel, retrying across restarts. Pure data and a protocol: no I/O here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from msgspec import Struct

from actors.errors import OrderdError
from actors.order.types import NormalizedOrder, Platform


class ShippedLine(Struct, frozen=True, array_like=True):
    """Units of one order line in the parcel: the platform's own line id, when known."""

    sku: str
    external_line_id: str | None
    units: int


class ParcelShipped(Struct, frozen=True, kw_only=True):
    """A parcel of the order left the warehouse: the platform records it as fulfilled."""

    platform: Platform
    order_id: str
    external_order_id: str
    shipment_id: str
    parcel: int  # this parcel's number, from 1
    parcels: int  # the order's parcels so far
    lines: tuple[ShippedLine, ...]
    carrier: str | None = None  # the company moving it, as the customer knows it
    tracking_number: str | None = None
    tracking_url: str | None = None
    all_shipped: bool = False  # nothing of the order waits any more


class ParcelDelivered(Struct, frozen=True, kw_only=True):
    """A parcel the platform was told of arrived: recorded as a delivery event on its
    fulfillment, found by its tracking number."""

    platform: Platform
    order_id: str
    external_order_id: str
    shipment_id: str
    tracking_number: str
    delivered_at: datetime


class TrackingChanged(Struct, frozen=True, kw_only=True):
    """A parcel the platform was told of travels under another tracking number now: its
    record (found by the old number, or already by the new) carries the new one."""

    platform: Platform
    order_id: str
    external_order_id: str
    shipment_id: str
    was: str | None
    tracking_number: str
    tracking_url: str | None = None
    carrier: str | None = None
    parcel: int = 1
    parcels: int = 1


PlatformCall = ParcelShipped | ParcelDelivered | TrackingChanged


class PlatformError(OrderdError):
    """A platform refused a call, or could not be reached; ``temporary`` ones are tried
    again, after ``retry_after_s`` when the platform said how long to wait."""

    def __init__(
        self, message: str, *, temporary: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.retry_after_s = retry_after_s


class Storefront(Protocol):
    """One platform's write-back: tells it what orderd did with its orders."""

    async def parcel_shipped(self, parcel: ParcelShipped) -> str:
        """Record the parcel as fulfilled on the platform; the platform's id of the
        record (a fulfillment). Done at most once per parcel, however often asked."""
        ...

    async def parcel_delivered(self, delivered: ParcelDelivered) -> str:
        """Record the parcel's arrival on the platform; the platform's id of the record
        (an event). Done at most once per parcel, however often asked."""
        ...

    async def tracking_changed(self, changed: TrackingChanged) -> str:
        """Give the parcel's record the new tracking number; the record's id. Done at most
        once per number, however often asked."""
        ...

    async def close(self) -> None: ...


def shipped_lines(
    order: NormalizedOrder, lines: tuple[tuple[str, int], ...]
) -> tuple[ShippedLine, ...]:
    """The parcel's units per sku, spread over the order's shippable lines of that sku in
    line order, with each line's platform id."""
    left = dict(lines)
    shipped: list[ShippedLine] = []
    for line in order.shippable_lines():
        units = min(left.get(line.sku, 0), line.quantity)
        if units:
            shipped.append(ShippedLine(line.sku, line.external_line_id, units))
            left[line.sku] -= units
    # Units the order's lines do not account for (an order changed since): by sku alone.
    shipped.extend(ShippedLine(sku, None, units) for sku, units in left.items() if units > 0)
    return tuple(shipped)
