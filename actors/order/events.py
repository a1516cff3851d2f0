"""What happened to an order: the events ``decide`` returns and ``evolve`` applies.

Events are facts, so applying one cannot fail. They are stored in the append-only
``order_events`` table as JSON with their ``type``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from msgspec import Struct

from actors.order.types import NormalizedOrder


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
    """The allocation core's answer: reserved, partly reserved, or waiting."""

    status: Literal["reserved", "partially_reserved", "backordered"]
    holdings: tuple[Holding, ...]
    policy: str


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
    reason: str


Event = (
    OrderReceived
    | StockAllocated
    | BackorderFilled
    | NothingToShip
    | OrderCancelled
    | CancelRefused
    | AttentionNeeded
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def event_type(event: Event) -> str:
    tag = type(event).__struct_config__.tag
    return str(tag)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    event: Event = _decoder.decode(data)
    return event
