"""A warehouse system's callbacks on ``POST /webhooks/wms``, parsed into order messages.

The body is JSON, signed like orderd's generic webhooks (``X-Orderd-Signature``)::

    {"event": "picked", "order_id": "...", "shipment_id": "..."}
    {"event": "packed", "order_id": "...", "shipment_id": "...",
     "items": [{"sku": "SKU-1", "quantity": 2}], "weight_g": 950,
     "dimensions_cm": {"length": 30, "width": 20, "height": 10}}
    {"event": "short_pick", "order_id": "...", "shipment_id": "...",
     "missing": [{"sku": "SKU-1", "quantity": 1}]}

``order_id`` and ``shipment_id`` are the ones of the fulfillment request.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from actors.order.messages import Packed, Picked, ShortPicked
from actors.order.types import Quantity, Sku
from adapters.platforms.intake import MalformedPayload
from adapters.platforms.normalize import decode

_ORDER_ID = re.compile(r"^ord_[a-z2-7]{20}$")
Centimetres = Annotated[float, Meta(gt=0, le=1000)]


class _Item(Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    quantity: Quantity


class _Dimensions(Struct, frozen=True, forbid_unknown_fields=True):
    length: Centimetres
    width: Centimetres
    height: Centimetres


class _Callback(Struct, frozen=True, forbid_unknown_fields=True):
    event: Literal["picked", "packed", "short_pick"]
    order_id: str
    shipment_id: str
    items: Annotated[list[_Item], Meta(max_length=1000)] = []
    weight_g: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    dimensions_cm: _Dimensions | None = None
    missing: Annotated[list[_Item], Meta(max_length=1000)] = []


_decoder = msgspec.json.Decoder(_Callback)


def parse_callback(body: bytes) -> Picked | Packed | ShortPicked:
    """The order message a callback stands for; raises :class:`MalformedPayload`."""
    callback = decode(_decoder, body)
    if not _ORDER_ID.fullmatch(callback.order_id):
        raise MalformedPayload("order_id", "not an orderd order id")
    prefix, _, number = callback.shipment_id.rpartition("-")
    if prefix != callback.order_id or not number.isdigit():
        raise MalformedPayload("shipment_id", "not a shipment of that order")
    order_id, shipment_id = callback.order_id, callback.shipment_id
    match callback.event:
        case "picked":
            return Picked(order_id=order_id, shipment_id=shipment_id)
        case "packed":
            if not callback.items:
                raise MalformedPayload("items", "a packed shipment lists what it holds")
            sides = callback.dimensions_cm
            return Packed(
                order_id=order_id,
                shipment_id=shipment_id,
                items=tuple((item.sku, item.quantity) for item in callback.items),
                weight_g=callback.weight_g,
                dimensions_cm=(sides.length, sides.width, sides.height) if sides else None,
            )
        case "short_pick":
            if not callback.missing:
                raise MalformedPayload("missing", "a short pick lists what is missing")
            return ShortPicked(
                order_id=order_id,
                shipment_id=shipment_id,
                missing=tuple((item.sku, item.quantity) for item in callback.missing),
            )
