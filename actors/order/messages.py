"""Messages an order actor receives: frozen, tagged msgspec Structs in one union.

Each message names the order it is for. On the stream a message is JSON with a ``type``
field, so an operator reading an entry with redis-cli sees what it is.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec import Struct

from actors.order.types import NormalizedOrder, Sku


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

    kind: str
    key: str
    due_at: datetime


Message = OrderPaid | CancelRequested | BackorderFilled | ReminderDue

_decoder = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()


def encode_message(message: Message) -> bytes:
    """The JSON bytes of ``message``, with its ``type`` tag."""
    return _encoder.encode(message)


def decode_message(data: bytes | str) -> Message:
    """Parse one message; raises ``msgspec.ValidationError`` or ``DecodeError`` on bad input."""
    message: Message = _decoder.decode(data)
    return message
