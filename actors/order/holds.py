"""Holds: what keeps an order needs_attention until a person has looked at it.

A hold is one of a tagged union: the whole order, one shipment, or a dead-lettered
message of the order. Stored as JSON with its ``kind``; earlier versions stored a bare
string ("order", a shipment id, ``dead:<seq>``), which :mod:`actors.order.legacy` reads.
"""

from __future__ import annotations

from typing import assert_never

from msgspec import Struct


class OrderHold(Struct, frozen=True, tag_field="kind", tag="order"):
    """The whole order waits for a person (a refused reservation, an address)."""


class ShipmentHold(Struct, frozen=True, tag_field="kind", tag="shipment"):
    """One shipment waits for a person; the order's other shipments go on."""

    shipment_id: str


class DeadLetterHold(Struct, frozen=True, omit_defaults=True, tag_field="kind", tag="dead_letter"):
    """A message of the order was dead-lettered; released when it is replayed.

    ``seq`` is the order's number of that message. Versions before messages were numbered
    named the hold by the message's type instead, kept in ``message``.
    """

    seq: int | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if (self.seq is None) == (self.message is None):
            raise ValueError("a dead letter hold names its message by number or by type")


Hold = OrderHold | ShipmentHold | DeadLetterHold

ORDER_HOLD = OrderHold()


def describe(hold: Hold) -> str:
    """The hold in a few words for an operator: "order", "shipment S1", "dead letter 12"."""
    match hold:
        case OrderHold():
            return "order"
        case ShipmentHold(shipment_id=shipment_id):
            return f"shipment {shipment_id}"
        case DeadLetterHold(seq=seq, message=message):
            return f"dead letter {seq if seq is not None else message}"
        case _:
            assert_never(hold)
