"""The order states every surface reports (the ``state`` field), as DESIGN.md names them."""

from enum import StrEnum


class OrderState(StrEnum):
    RECEIVED = "received"
    RESERVED = "reserved"
    PARTIALLY_RESERVED = "partially_reserved"
    BACKORDERED = "backordered"
    FULFILLMENT_REQUESTED = "fulfillment_requested"
    PICKED = "picked"
    PACKED = "packed"
    LABEL_CREATED = "label_created"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    NEEDS_ATTENTION = "needs_attention"
    CANCELLED = "cancelled"
    IGNORED = "ignored"


# An order in one of these states takes no further part in the pipeline.
TERMINAL: frozenset[OrderState] = frozenset(
    {OrderState.COMPLETED, OrderState.CANCELLED, OrderState.IGNORED}
)
