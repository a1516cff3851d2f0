"""What goes to a warehouse system, and the protocol every warehouse adapter implements."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from msgspec import Struct

from actors.errors import OrderdError
from actors.order.messages import Message
from actors.order.types import Address
from actors.shipping.carriers import Parcel
from actors.shipping.pick_list import PickLine


class FulfillmentRequest(Struct, frozen=True, kw_only=True):
    """A shipment to pick and pack: the pick list in walking order, and how it must leave.

    Sent as JSON to an HTTP WMS; its callbacks on ``/webhooks/wms`` name the ``order_id``
    and ``shipment_id`` given here.
    """

    shipment_id: str
    order_id: str
    order_name: str | None
    warehouse: str
    requested_at: datetime
    pick_list: tuple[PickLine, ...]
    service_level: str
    promised_by: date | None
    parcel: Parcel  # the estimate from the catalog; the packer reports the real one
    ship_to: Address
    carrier: str | None = None  # chosen after packing, when the parcel is weighed
    service: str | None = None
    note: str | None = None  # the customer's note or gift message, for the packing slip
    flags: tuple[str, ...] = ()  # every handling note of the parcel's items


class WmsError(OrderdError):
    """The warehouse system did not take the request; ``temporary`` when a retry may."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class WarehouseSystem(Protocol):
    """Where fulfillment requests go."""

    name: str
    # How long after a request its first delivery is due (the sandbox's picking time).
    delay_s: float

    async def send(self, request: FulfillmentRequest) -> list[Message]:
        """Deliver ``request``; return messages for the order that the delivery itself
        answers (the sandbox's picked and packed), stored with the delivery's record."""
        ...

    async def cancel(self, request: FulfillmentRequest) -> None:
        """Tell the warehouse to stop work on ``request``: its order was cancelled."""
        ...

    async def close(self) -> None: ...
