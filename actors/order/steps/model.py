"""What every step of an order's pipeline shares.

The store's :class:`Rules`, the order's :class:`Snapshot` between turns, the effects a
decision asks the runtime for and the results they come back as, and :class:`Decision`.
The step modules beside this one decide and evolve in these terms.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Literal

import msgspec
from msgspec import Struct

from actors.order import legacy
from actors.order.events import Event, Holding
from actors.order.holds import Hold
from actors.order.messages import Message
from actors.order.reminder import ReminderKind, ReminderScope
from actors.order.shipment import Shipment
from actors.order.states import OrderState
from actors.order.types import Address, NormalizedOrder
from actors.order.types import BackorderPolicy as Policy
from actors.shipping.calendar import BusinessCalendar
from actors.shipping.carriers import LabelFormat, Parcel, Rate
from actors.shipping.pick_list import PickLine
from actors.shipping.selection import ServiceLevel, ShippingRules
from actors.shipping.tracking import DelayRules
from actors.storefront import PlatformCall

# Until a label is bought an order can still be cancelled with nothing to undo outside.
CANCELLABLE = frozenset(
    {
        OrderState.RECEIVED,
        OrderState.RESERVED,
        OrderState.PARTIALLY_RESERVED,
        OrderState.BACKORDERED,
        OrderState.FULFILLMENT_REQUESTED,
        OrderState.PICKED,
        OrderState.PACKED,
        OrderState.LABEL_CREATED,  # the label is voided first
        OrderState.NEEDS_ATTENTION,
    }
)

DEFAULT_LEVELS = (
    ServiceLevel(name="standard", max_days=5, match=("standard", "economy", "ground")),
    ServiceLevel(name="express", max_days=2, match=("express", "expedited", "priority")),
    ServiceLevel(name="overnight", max_days=1, match=("overnight", "next day")),
)
_ANY_DAY = BusinessCalendar(timezone="UTC", cutoff=time(15, 0))


class Rules(Struct, frozen=True, kw_only=True):
    """The store's settings that order decisions depend on."""

    backorder_policy: Policy = "wait_all"
    cancel_after_days: int = 14
    service_levels: tuple[ServiceLevel, ...] = DEFAULT_LEVELS
    default_service_level: str = "standard"
    calendars: tuple[tuple[str, BusinessCalendar], ...] = ()
    shipping: ShippingRules = ShippingRules()
    label_format: LabelFormat = "pdf"
    delivered_message: bool = True
    review_after_days: int = 7
    repeat_after_days: int = 30
    delays: DelayRules = DelayRules()
    # Carriers whose tracking is asked for (no webhooks, or as a safety net).
    poll_carriers: tuple[str, ...] = ()
    poll_interval_s: float = 4 * 3600.0
    poll_for_days: int = 30
    # Platforms told of each parcel that leaves (their write-back is on).
    write_back: tuple[str, ...] = ()
    # Platforms told of each parcel's arrival too (Shopify records it on the fulfillment).
    delivery_events: tuple[str, ...] = ()

    def calendar(self, warehouse: str) -> BusinessCalendar:
        """The warehouse's business days and cutoff (any weekday, 15:00 UTC if unknown)."""
        return next((cal for code, cal in self.calendars if code == warehouse), _ANY_DAY)


class Snapshot(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An order as its actor knows it between turns.

    Stored without its default fields: a turn rewrites it whole, and its empty and null
    fields were a quarter of its bytes.
    """

    order_id: str
    state: OrderState
    order: NormalizedOrder | None = None
    holdings: tuple[Holding, ...] = ()
    policy: str | None = None
    reason: str | None = None
    shipments: tuple[Shipment, ...] = ()
    # Messages after delivery not yet sent or skipped.
    follow_ups: tuple[ReminderKind, ...] = ()
    # What a person must look at: the whole order, shipments, dead letters. While any is
    # open the order stays needs_attention, whatever else moves on.
    holds: tuple[Hold, ...] = ()
    # How often the platform changed the order's lines: numbers each change's stock calls.
    line_changes: int = 0


# -- effects: what the runtime must do, and the messages their results come back as ----


class Reserve(Struct, frozen=True):
    lines: tuple[tuple[str, int], ...]
    policy: Policy
    op_id: str = "reserve"
    # Warehouses whose stock is not to be taken (a short pick found less there).
    avoid: tuple[str, ...] = ()


class ReleaseAll(Struct, frozen=True):
    op_id: str


class Remind(Struct, frozen=True):
    kind: ReminderKind
    due_at: datetime
    scope: ReminderScope | None = None  # e.g. a shipment: one reminder per order, kind and scope


class RequestFulfillment(Struct, frozen=True, kw_only=True):
    """Build the shipment's pick list and queue it for the warehouse system."""

    shipment_id: str
    warehouse: str
    lines: tuple[tuple[str, int], ...]
    service_level: str
    promised_by: date | None


class ResendFulfillment(Struct, frozen=True, kw_only=True):
    """Deliver the shipment's stored request to the warehouse system again, from
    ``due_at``."""

    shipment_id: str
    due_at: datetime


class TellPlatform(Struct, frozen=True):
    """Store what the order's platform must be told, for the platform outbox."""

    parcel: PlatformCall


class ShopRates(Struct, frozen=True, kw_only=True):
    shipment_id: str
    warehouse: str
    parcel: Parcel
    ship_to: Address
    signature: bool


class Buy(Struct, frozen=True, kw_only=True):
    shipment_id: str
    rate: Rate
    label_format: LabelFormat

    @property
    def idempotency_key(self) -> str:
        return f"{self.shipment_id}:label"


class Commit(Struct, frozen=True, kw_only=True):
    """The shipment's units leave on hand and the reservation (shipped)."""

    shipment_id: str
    warehouse: str
    lines: tuple[tuple[str, int], ...]


class WriteOff(Struct, frozen=True, kw_only=True):
    """Units the warehouse could not find leave on hand and the reservation (short pick)."""

    shipment_id: str
    warehouse: str
    lines: tuple[tuple[str, int], ...]


class Void(Struct, frozen=True, kw_only=True):
    shipment_id: str
    carrier: str
    purchase_id: str


class Notify(Struct, frozen=True, kw_only=True):
    """Put a customer message in the outbox, once per kind, shipment and delay episode."""

    kind: str
    shipment_id: str | None = None
    episode: int = 0


class Track(Struct, frozen=True, kw_only=True):
    """Ask the carrier for the parcel's tracking."""

    shipment_id: str
    carrier: str
    tracking_number: str
    carrier_account: str | None


class Tell(Struct, frozen=True):
    """A message for the order itself, stored with the turn and applied in a later one."""

    message: Message


Effect = (
    Reserve | ReleaseAll | Remind | RequestFulfillment | ResendFulfillment | ShopRates | Buy
    | Commit | WriteOff | Void | Tell | Notify | Track | TellPlatform
)  # fmt: skip


class Allocated(Struct, frozen=True, kw_only=True):
    """The result of :class:`Reserve`."""

    status: Literal["reserved", "partially_reserved", "backordered"]
    holdings: tuple[Holding, ...]
    policy: Policy
    op_id: str = "reserve"


class ReleasedAll(Struct, frozen=True, kw_only=True):
    """The result of :class:`ReleaseAll`, carrying why the release was asked for."""

    reason: str
    by: str


class AllocationRefused(Struct, frozen=True, kw_only=True):
    """:class:`Reserve` was refused (a sku the catalog does not know): a person must look."""

    reason: str


class FulfillmentQueued(Struct, frozen=True, kw_only=True):
    """The result of :class:`RequestFulfillment`: the pick list is on its way."""

    request: RequestFulfillment
    pick_list: tuple[PickLine, ...]
    parcel: Parcel
    review_after_days: int | None = None  # the products' own follow-ups, if any set them
    repeat_after_days: int | None = None


class RatesQuoted(Struct, frozen=True, kw_only=True):
    shipment_id: str
    rates: tuple[Rate, ...]
    failures: tuple[str, ...] = ()  # carriers that did not answer, and why


class LabelBought(Struct, frozen=True, kw_only=True):
    shipment_id: str
    carrier: str
    carrier_account: str
    service: str
    tracking_number: str
    tracking_url: str | None
    label_format: LabelFormat
    label_path: str
    purchase_id: str
    amount: Decimal
    currency: str


class LabelRefused(Struct, frozen=True, kw_only=True):
    shipment_id: str
    reason: str


class CommittedShipment(Struct, frozen=True, kw_only=True):
    shipment_id: str
    lines: tuple[tuple[str, int], ...]


class WrittenOff(Struct, frozen=True, kw_only=True):
    shipment_id: str
    lines: tuple[tuple[str, int], ...]


class Voided(Struct, frozen=True, kw_only=True):
    shipment_id: str


class Queued(Struct, frozen=True, kw_only=True):
    """The result of :class:`Notify`: the channels the message went into the outbox for."""

    kind: str
    shipment_id: str | None
    episode: int
    channels: tuple[str, ...]


class NothingTracked(Struct, frozen=True, kw_only=True):
    """The result of :class:`Track` when the carrier had nothing to say."""

    shipment_id: str


Result = (
    Allocated | ReleasedAll | AllocationRefused | FulfillmentQueued | RatesQuoted | LabelBought
    | LabelRefused | CommittedShipment | WrittenOff | Voided | Queued | NothingTracked
)  # fmt: skip


class Decision(Struct, frozen=True):
    events: tuple[Event, ...] = ()
    effects: tuple[Effect, ...] = ()
    # Held across the release effect, then turned into the cancellation event.
    pending: ReleasedAll | None = None


# How events apply to a snapshot. The composition passes its ``evolve`` to the steps that
# look ahead at the order their events make, so no step imports the composition.
Evolve = Callable[[Snapshot | None, Event, str], Snapshot]


_snapshot = msgspec.json.Decoder(Snapshot)
_holds = msgspec.json.Decoder(tuple[Hold, ...])


def decode_snapshot(data: bytes | str) -> Snapshot:
    """Parse a stored snapshot, in today's form or an earlier version's."""
    return legacy.decode(_snapshot, data, legacy.upgrade_snapshot)


def decode_holds(data: bytes | str) -> tuple[Hold, ...]:
    """Parse a stored snapshot's ``holds`` alone, in today's form or an earlier version's."""
    return legacy.decode(_holds, data, legacy.upgrade_holds)
