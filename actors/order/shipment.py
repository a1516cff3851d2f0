"""A shipment as its order actor knows it: one parcel from one warehouse, and how far it got."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from msgspec import Struct, structs

from actors.order.legacy import cause_from_reason
from actors.shipping.carriers import Parcel, Rate, TrackingStatus
from actors.shipping.tracking import DelayCause

ShipmentStatus = Literal[
    "requested",  # the pick list went to the warehouse
    "picked",
    "packed",
    "mismatch",  # packed contents differ from the order: held for a person
    "label_created",
    "shipped",
    "short_picked",  # the warehouse lacked units: replaced by a later shipment
    "voided",  # the label was voided when the order was cancelled
    "cancelled",  # the order was cancelled before its label was bought
    "delivered",
    "failure",  # the carrier could not deliver it
    "returned",  # on its way back to the warehouse
]

# A shipment in one of these holds its units: they are in a parcel or on their way to one.
OPEN: frozenset[str] = frozenset({"requested", "picked", "packed", "mismatch", "label_created"})
# A shipment in one of these took its goods out of the warehouse.
LEFT: frozenset[str] = frozenset({"shipped", "delivered", "failure", "returned"})


class Shipment(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A shipment as the order's state holds it; stored without its default fields."""

    id: str
    seq: int
    warehouse: str
    lines: tuple[tuple[str, int], ...]
    status: ShipmentStatus = "requested"
    service_level: str
    promised_by: date | None = None
    parcel: Parcel | None = None  # estimated when requested, measured when packed
    rate: Rate | None = None
    estimated_delivery: date | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    # How often a person corrected the tracking number (a parcel labelled again by hand).
    tracking_changes: int = 0
    label_format: str | None = None
    label_path: str | None = None
    purchase_id: str | None = None
    packed_ok: bool | None = None
    # Once packed wrong, it stays counted against shipping accuracy, however it ends.
    mispacked: bool = False
    problem: str | None = None
    short: tuple[tuple[str, int], ...] = ()  # units the warehouse could not find
    shipped_at: datetime | None = None
    # The carrier's news: the latest status, when it was scanned, its own estimate.
    tracking_status: TrackingStatus | None = None
    tracking_detail: str | None = None
    tracking_at: datetime | None = None
    carrier_estimate: date | None = None
    scans: int = 0
    delayed: bool = False
    delay_episode: int = 0
    delay_reason: str | None = None  # the latest delay in words, for people
    delay_cause: DelayCause | None = None  # the rule that found it: what ends it
    delivered_at: datetime | None = None
    # The products' own follow-ups (days after delivery), when any set them.
    review_after_days: int | None = None
    repeat_after_days: int | None = None

    def __post_init__(self) -> None:
        if self.delay_cause is None and self.delay_reason is not None:
            # Stored before delays had a cause: read it from the reason's words.
            structs.force_setattr(self, "delay_cause", cause_from_reason(self.delay_reason))


def find(shipments: tuple[Shipment, ...], shipment_id: str) -> Shipment | None:
    """The shipment with ``shipment_id``, if the order has it."""
    return next((s for s in shipments if s.id == shipment_id), None)
