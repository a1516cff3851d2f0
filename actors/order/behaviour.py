"""The order actor's behaviour: pure ``decide`` and ``evolve``.

``decide(snapshot, message, rules, now)`` says what happened (events) and what must be
done outside (effects); the runtime runs the effects and hands their results back as
messages in the same turn. ``evolve(snapshot, event)`` applies an event and cannot fail.
No I/O here: every test of an order decision is a plain function call.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from msgspec import Struct, structs

from actors.order import shipment as shipments
from actors.order.events import (
    AttentionNeeded,
    BackorderFilled,
    CancelRefused,
    CarrierChosen,
    DelayDetected,
    DelayEnded,
    DeliveryFailed,
    EstimateMoved,
    Event,
    FollowUpDone,
    FollowUpsScheduled,
    FulfillmentRequested,
    Holding,
    HoldReleased,
    LabelCreated,
    LabelVoided,
    MessageQueued,
    NothingToShip,
    OrderCancelled,
    OrderCompleted,
    OrderReceived,
    PackMismatch,
    ShipmentDelivered,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentTracked,
    Shipped,
    ShortPick,
    StockAllocated,
)
from actors.order.messages import (
    BackorderFilled as BackorderFilledMessage,
)
from actors.order.messages import (
    BuyLabel,
    CancelRequested,
    HoldRelease,
    Message,
    NotificationSettled,
    OrderPaid,
    Packed,
    Picked,
    ReminderDue,
    RetryRequested,
    ShortPicked,
    TrackingUpdated,
    WarehouseRefused,
)
from actors.order.shipment import OPEN, Shipment
from actors.order.states import TERMINAL, OrderState
from actors.order.types import Address, NormalizedOrder
from actors.shipping.address import address_problems
from actors.shipping.calendar import (
    BusinessCalendar,
    estimated_delivery,
    is_business_day,
    promised_by,
    ship_date,
)
from actors.shipping.pick_list import PickLine
from actors.shipping.selection import (
    NoRate,
    Quote,
    ServiceLevel,
    ShippingRules,
    choose,
    needs_signature,
    service_level_for,
)
from actors.shipping.tracking import DelayRules, ShipmentTrack, advances, delay_reason
from adapters.carriers.model import LabelFormat, Parcel, Rate

Policy = Literal["wait_all", "ship_available", "cancel_after_days"]
CANCEL_BACKORDER = "cancel_backorder"
# Reminders that look at a shipment in flight for a delay.
PICKUP_CHECK, PROMISE_CHECK, NO_SCAN = "pickup_check", "promise_check", "no_scan"
TRACK_POLL = "track_poll"
# Messages after delivery; the order is completed once each is sent or skipped.
REVIEW_REQUEST, REPEAT_PURCHASE = "review_request", "repeat_purchase"
FOLLOW_UPS = (REVIEW_REQUEST, REPEAT_PURCHASE)
ORDER_HOLD = "order"

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

    def calendar(self, warehouse: str) -> BusinessCalendar:
        """The warehouse's business days and cutoff (any weekday, 15:00 UTC if unknown)."""
        return next((cal for code, cal in self.calendars if code == warehouse), _ANY_DAY)


class Snapshot(Struct, frozen=True, kw_only=True):
    """An order as its actor knows it between turns."""

    order_id: str
    state: OrderState
    order: NormalizedOrder | None = None
    holdings: tuple[Holding, ...] = ()
    policy: str | None = None
    reason: str | None = None
    shipments: tuple[Shipment, ...] = ()
    follow_ups: tuple[str, ...] = ()  # messages after delivery not yet sent or skipped
    # What a person must look at: ORDER_HOLD (the whole order) or shipment ids. While any
    # is open the order stays needs_attention, whatever else moves on.
    holds: tuple[str, ...] = ()


# -- effects: what the runtime must do, and the messages their results come back as ----


class Reserve(Struct, frozen=True):
    lines: tuple[tuple[str, int], ...]
    policy: Policy
    op_id: str = "reserve"


class ReleaseAll(Struct, frozen=True):
    op_id: str


class Remind(Struct, frozen=True):
    kind: str
    due_at: datetime
    scope: str = ""  # e.g. a shipment: one reminder per order, kind and scope


class RequestFulfillment(Struct, frozen=True, kw_only=True):
    """Build the shipment's pick list and queue it for the warehouse system."""

    shipment_id: str
    warehouse: str
    lines: tuple[tuple[str, int], ...]
    service_level: str
    promised_by: date | None


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
    Reserve | ReleaseAll | Remind | RequestFulfillment | ShopRates | Buy | Commit | WriteOff
    | Void | Tell | Notify | Track
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


def decide(
    snapshot: Snapshot | None, message: Message | Result, rules: Rules, now: datetime
) -> Decision:
    """What the message means for the order: events to record and effects to run."""
    match message:
        case OrderPaid(order=order):
            return _paid(snapshot, order, rules, now)
        case Allocated(status=status, holdings=holdings, policy=policy, op_id=op_id):
            allocated = StockAllocated(
                at=now, status=status, holdings=holdings, policy=policy, op_id=op_id
            )
            remind: tuple[Effect, ...] = ()
            if status != "reserved" and op_id == "reserve":
                remind = (Notify(kind="backorder_notice"),)
                if policy == "cancel_after_days":
                    due = now + timedelta(days=rules.cancel_after_days)
                    remind += (Remind(CANCEL_BACKORDER, due),)
            return _then_fulfil(snapshot, (allocated,), rules, now, remind)
        case BackorderFilledMessage(warehouse=warehouse, lines=lines):
            if snapshot is None or snapshot.state in TERMINAL:
                return Decision()
            filled = BackorderFilled(at=now, warehouse=warehouse, lines=lines)
            return _then_fulfil(snapshot, (filled,), rules, now)
        case CancelRequested(reason=reason, requested_by=by):
            return _cancel(snapshot, message.order_id, reason, by, now)
        case ReminderDue(kind=kind) if kind == CANCEL_BACKORDER:
            if snapshot is None or not any(h.backordered for h in snapshot.holdings):
                return Decision()  # filled meanwhile, or gone: nothing to cancel
            if snapshot.state not in CANCELLABLE or _open(snapshot):
                return Decision()  # part of it is on its way: the rest keeps waiting
            reason = f"backorder waited {rules.cancel_after_days} days"
            return _cancel(snapshot, message.order_id, reason, "orderd", now)
        case ReleasedAll(reason=reason, by=by):
            return Decision((OrderCancelled(at=now, reason=reason, by=by),))
        case AllocationRefused(reason=reason):
            return Decision((AttentionNeeded(at=now, reason=reason),))
        case FulfillmentQueued(request=request, pick_list=pick_list, parcel=parcel):
            requested = FulfillmentRequested(
                at=now,
                shipment_id=request.shipment_id,
                warehouse=request.warehouse,
                lines=request.lines,
                service_level=request.service_level,
                promised_by=request.promised_by,
                pick_list=pick_list,
                parcel=parcel,
                review_after_days=message.review_after_days,
                repeat_after_days=message.repeat_after_days,
            )
            return Decision((requested,))
        case Picked(shipment_id=shipment_id):
            found = _shipment(snapshot, shipment_id)
            if found is None or found.status != "requested":
                return Decision()  # late or repeated: the shipment is further already
            return Decision((ShipmentPicked(at=now, shipment_id=shipment_id),))
        case Packed():
            return _packed(snapshot, message, rules, now)
        case ShortPicked(shipment_id=shipment_id, missing=missing):
            return _short_picked(snapshot, shipment_id, missing, now)
        case WarehouseRefused(shipment_id=shipment_id, reason=reason):
            found = _shipment(snapshot, shipment_id)
            if found is None or found.status not in ("requested", "picked"):
                return Decision()  # cancelled or further meanwhile: the refusal is moot
            why = f"the warehouse refused shipment {shipment_id}: {reason}"
            return Decision((AttentionNeeded(at=now, reason=why, hold=shipment_id),))
        case RatesQuoted(shipment_id=shipment_id, rates=rates, failures=failures):
            return _rates(snapshot, shipment_id, rates, failures, rules, now)
        case BuyLabel(shipment_id=shipment_id):
            found = _shipment(snapshot, shipment_id)
            if found is None or found.status != "packed" or found.rate is None:
                return Decision()  # cancelled or held meanwhile
            if snapshot is not None and (shipment_id in snapshot.holds or _dead_letters(snapshot)):
                return Decision()  # held for a person: bought once it is released
            buy = Buy(shipment_id=shipment_id, rate=found.rate, label_format=rules.label_format)
            return Decision((), (buy,))
        case LabelBought():
            found = _shipment(snapshot, message.shipment_id)
            assert found is not None  # bought for a shipment of this order, in this turn
            created = LabelCreated(
                at=now,
                shipment_id=message.shipment_id,
                carrier=message.carrier,
                carrier_account=message.carrier_account,
                service=message.service,
                tracking_number=message.tracking_number,
                tracking_url=message.tracking_url,
                label_format=message.label_format,
                label_path=message.label_path,
                purchase_id=message.purchase_id,
                amount=message.amount,
                currency=message.currency,
            )
            commit = Commit(shipment_id=found.id, warehouse=found.warehouse, lines=found.lines)
            return Decision((created,), (commit,))
        case LabelRefused(shipment_id=shipment_id, reason=reason):
            why = f"no label for shipment {shipment_id}: {reason}"
            return Decision((AttentionNeeded(at=now, reason=why, hold=shipment_id),))
        case CommittedShipment(shipment_id=shipment_id, lines=lines):
            shipped = Shipped(at=now, shipment_id=shipment_id, lines=lines)
            return Decision((shipped,), _watch(snapshot, shipment_id, rules, now))
        case TrackingUpdated():
            return _tracked(snapshot, message, rules, now)
        case ReminderDue(kind=kind) if kind in (PICKUP_CHECK, PROMISE_CHECK, NO_SCAN):
            return _check_delay(snapshot, message, rules, now)
        case ReminderDue(kind=kind, scope=scope) if kind == TRACK_POLL:
            return _poll(snapshot, scope, rules, now)
        case ReminderDue(kind=kind) if kind in FOLLOW_UPS:
            if snapshot is None or kind not in snapshot.follow_ups:
                return Decision()
            return Decision((), (Notify(kind=kind),))
        case Queued(kind=kind, shipment_id=shipment_id, episode=episode, channels=channels):
            queued = MessageQueued(
                at=now, kind=kind, shipment_id=shipment_id, episode=episode, channels=channels
            )
            if not channels and snapshot is not None and kind in snapshot.follow_ups:
                return Decision((queued, *_follow_up_done(snapshot, kind, "skipped", now)))
            return Decision((queued,))
        case NotificationSettled(kind=kind, status=status):
            if snapshot is None or kind not in snapshot.follow_ups:
                return Decision()
            return Decision(_follow_up_done(snapshot, kind, status, now))
        case NothingTracked():
            return Decision()
        case RetryRequested(shipment_id=shipment_id, requested_by=by):
            return _retry(snapshot, shipment_id, by, rules, now)
        case HoldRelease(hold=hold, by=by):
            return _release(snapshot, hold, by, rules, now)
        case WrittenOff(shipment_id=shipment_id):
            return _reserve_shortfall(snapshot, shipment_id, rules)
        case Voided(shipment_id=shipment_id):
            return Decision((LabelVoided(at=now, shipment_id=shipment_id),))
        case ReminderDue():
            return Decision()
    return Decision()


def _paid(
    snapshot: Snapshot | None, order: NormalizedOrder, rules: Rules, now: datetime
) -> Decision:
    policy: Policy = order.backorder_policy or rules.backorder_policy
    shippable: dict[str, int] = {}
    for line in order.shippable_lines():
        shippable[line.sku] = shippable.get(line.sku, 0) + line.quantity
    if (
        snapshot is not None
        and snapshot.state is OrderState.NEEDS_ATTENTION
        and snapshot.order is not None
        and not snapshot.holdings
        and not shippable
        and not snapshot.shipments
    ):
        return Decision((NothingToShip(at=now),))  # a replayed paid order with nothing to send
    if (
        snapshot is not None
        and snapshot.state is OrderState.NEEDS_ATTENTION
        and snapshot.order is not None
        and not snapshot.holdings
        and shippable
    ):
        # Held before anything was reserved, and sent again (a replayed dead letter):
        # the reservation is tried again.
        return Decision((), (Reserve(tuple(shippable.items()), policy),))
    if snapshot is not None and (snapshot.order is not None or snapshot.state in TERMINAL):
        return Decision()  # already known, or cancelled first: a paid webhook changes nothing
    received = OrderReceived(at=now, order=order)
    if not shippable:
        return Decision((received, NothingToShip(at=now)))
    return Decision((received,), (Reserve(tuple(shippable.items()), policy),))


def _cancel(
    snapshot: Snapshot | None, order_id: str, reason: str, by: str, now: datetime
) -> Decision:
    if snapshot is None:
        # Cancelled before it was paid here: remember it, so a late paid webhook is ignored.
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    if snapshot.state in TERMINAL:
        return Decision()
    shipped = any(s.status == "shipped" for s in snapshot.shipments)
    if snapshot.state not in CANCELLABLE or shipped:
        refusal = f"cannot cancel in state {snapshot.state.value}: it has shipped"
        return Decision((CancelRefused(at=now, reason=refusal, by=by),))
    voids: tuple[Effect, ...] = tuple(
        Void(shipment_id=s.id, carrier=s.rate.carrier, purchase_id=s.purchase_id)
        for s in snapshot.shipments
        if s.status == "label_created" and s.rate is not None and s.purchase_id is not None
    )
    if not snapshot.holdings:
        if voids:
            return Decision((), voids, ReleasedAll(reason=reason, by=by))
        return Decision((OrderCancelled(at=now, reason=reason, by=by),))
    return Decision((), (*voids, ReleaseAll("cancel")), ReleasedAll(reason=reason, by=by))


# -- fulfillment and shipping ------------------------------------------------------------


def _shipment(snapshot: Snapshot | None, shipment_id: str) -> Shipment | None:
    return None if snapshot is None else shipments.find(snapshot.shipments, shipment_id)


def _open(snapshot: Snapshot) -> bool:
    return any(s.status in OPEN for s in snapshot.shipments)


def _then_fulfil(
    snapshot: Snapshot | None,
    events: tuple[Event, ...],
    rules: Rules,
    now: datetime,
    effects: tuple[Effect, ...] = (),
) -> Decision:
    """``events``, and the fulfillment requests for whatever they made ready to ship."""
    after = snapshot
    order_id = snapshot.order_id if snapshot is not None else ""
    for event in events:
        after = evolve(after, event, order_id)
    assert after is not None  # at least one event
    more_events, requests = _fulfil(after, rules, now)
    return Decision(events + more_events, effects + requests)


def _fulfil(
    snapshot: Snapshot, rules: Rules, now: datetime
) -> tuple[tuple[Event, ...], tuple[Effect, ...]]:
    """Shipments for reserved units not yet in one, when the backorder policy lets them go.

    One shipment per warehouse. Under ``wait_all`` (and ``cancel_after_days``) nothing
    goes while any unit still waits; ``ship_available`` sends what is there.
    """
    order = snapshot.order
    if order is None or snapshot.state in TERMINAL:
        return (), ()
    if ORDER_HOLD in snapshot.holds or _dead_letters(snapshot):
        return (), ()  # a person looks first (a dead letter may be a cancellation)
    if any(h.backordered for h in snapshot.holdings) and snapshot.policy != "ship_available":
        return (), ()
    in_parcels: Counter[tuple[str, str]] = Counter()
    for s in snapshot.shipments:
        if s.status in OPEN:
            for sku, units in s.lines:
                in_parcels[(s.warehouse, sku)] += units
    ready: dict[str, dict[str, int]] = {}
    for h in snapshot.holdings:
        units = h.reserved - in_parcels[(h.warehouse, h.sku)]
        if units > 0:
            ready.setdefault(h.warehouse, {})[h.sku] = units
            in_parcels[(h.warehouse, h.sku)] += units
    if not ready:
        return (), ()
    problems = address_problems(order.shipping_address)
    if problems:
        reason = "cannot ship: " + "; ".join(problems)
        return (AttentionNeeded(at=now, reason=reason),), ()
    level = service_level_for(
        order.shipping_service, rules.service_levels, rules.default_service_level
    )
    requests: list[Effect] = []
    for number, warehouse in enumerate(sorted(ready), start=len(snapshot.shipments) + 1):
        lines = tuple(sorted(ready[warehouse].items()))
        requests.append(
            RequestFulfillment(
                shipment_id=f"{snapshot.order_id}-{number}",
                warehouse=warehouse,
                lines=lines,
                service_level=level.name,
                promised_by=promised_by(
                    rules.calendar(warehouse), order.paid_at or now, level.max_days
                ),
            )
        )
    return (), tuple(requests)


def _packed(snapshot: Snapshot | None, message: Packed, rules: Rules, now: datetime) -> Decision:
    found = _shipment(snapshot, message.shipment_id)
    if snapshot is None or found is None or found.status not in ("requested", "picked", "mismatch"):
        return Decision()  # unknown, cancelled, or already past packing
    if snapshot.order is None or snapshot.order.shipping_address is None:
        return Decision()
    difference = _difference(found.lines, message.items)
    if difference:
        why = f"shipment {found.id} packed wrong: {difference}"
        return Decision(
            (
                PackMismatch(at=now, shipment_id=found.id, difference=difference),
                AttentionNeeded(at=now, reason=why, hold=found.id),
            )
        )
    estimate = found.parcel
    weight = message.weight_g or (estimate.weight_g if estimate else 1)
    sides = message.dimensions_cm or (
        (estimate.length_cm, estimate.width_cm, estimate.height_cm) if estimate else (1, 1, 1)
    )
    parcel = Parcel(weight_g=weight, length_cm=sides[0], width_cm=sides[1], height_cm=sides[2])
    packed = ShipmentPacked(at=now, shipment_id=found.id, parcel=parcel, by=message.by)
    shop = ShopRates(
        shipment_id=found.id,
        warehouse=found.warehouse,
        parcel=parcel,
        ship_to=snapshot.order.shipping_address,
        signature=needs_signature(rules.shipping, snapshot.order.total),
    )
    return Decision((packed,), (shop,))


def _difference(expected: tuple[tuple[str, int], ...], scanned: tuple[tuple[str, int], ...]) -> str:
    """What the scanned contents lack or have too many of, in words; empty when they match."""
    want: Counter[str] = Counter()
    got: Counter[str] = Counter()
    for sku, units in expected:
        want[sku] += units
    for sku, units in scanned:
        got[sku] += units
    parts = []
    for sku in sorted(set(want) | set(got)):
        if want[sku] > got[sku]:
            parts.append(f"{sku} {want[sku] - got[sku]} missing")
        elif got[sku] > want[sku]:
            parts.append(f"{sku} {got[sku] - want[sku]} extra")
    return ", ".join(parts)


def _short_picked(
    snapshot: Snapshot | None,
    shipment_id: str,
    missing: tuple[tuple[str, int], ...],
    now: datetime,
) -> Decision:
    found = _shipment(snapshot, shipment_id)
    if found is None or found.status not in ("requested", "picked", "mismatch"):
        return Decision()
    held = dict(found.lines)
    lacking = tuple(
        (sku, min(units, held[sku])) for sku, units in sorted(dict(missing).items()) if sku in held
    )
    if not lacking:
        return Decision()  # nothing the shipment holds: a confused callback changes nothing
    short = ShortPick(at=now, shipment_id=shipment_id, missing=lacking)
    write_off = WriteOff(shipment_id=shipment_id, warehouse=found.warehouse, lines=lacking)
    return Decision((short,), (write_off,))


def _reserve_shortfall(snapshot: Snapshot | None, shipment_id: str, rules: Rules) -> Decision:
    """Reserve the written-off units again (elsewhere, or as a backorder), by the policy."""
    found = _shipment(snapshot, shipment_id)
    if snapshot is None or found is None or not found.short:
        return Decision()
    shortfall = found.short
    policy: Policy = _policy(snapshot.policy, rules)
    return Decision((), (Reserve(shortfall, policy, op_id=f"reserve:{shipment_id}"),))


def _policy(value: str | None, rules: Rules) -> Policy:
    if value in ("wait_all", "ship_available", "cancel_after_days"):
        return value  # type: ignore[return-value]
    return rules.backorder_policy


def _rates(
    snapshot: Snapshot | None,
    shipment_id: str,
    rates: tuple[Rate, ...],
    failures: tuple[str, ...],
    rules: Rules,
    now: datetime,
) -> Decision:
    found = _shipment(snapshot, shipment_id)
    if snapshot is None or snapshot.order is None or found is None:
        return Decision()
    address = snapshot.order.shipping_address
    assert address is not None  # checked before the shipment was requested
    calendar = rules.calendar(found.warehouse)
    quotes = [
        Quote(
            rate=rate,
            delivery=estimated_delivery(
                calendar, now, transit_days=rate.delivery_days, carrier_date=rate.delivery_date
            ),
            transit_days=rate.delivery_days,
        )
        for rate in rates
    ]
    choice = choose(quotes, rules.shipping, promised_by=found.promised_by, country=address.country)
    if isinstance(choice, NoRate):
        why = f"no carrier for shipment {shipment_id}: {choice.reason}"
        if failures:
            why += f" ({'; '.join(failures)})"
        return Decision((AttentionNeeded(at=now, reason=why, hold=shipment_id),))
    reason = choice.reason
    if failures:
        reason += f"; not quoted: {'; '.join(failures)}"
    chosen = CarrierChosen(
        at=now,
        shipment_id=shipment_id,
        rate=choice.rate,
        estimated_delivery=choice.delivery,
        alternatives=choice.alternatives,
        reason=reason,
    )
    buy = Tell(BuyLabel(order_id=snapshot.order_id, shipment_id=shipment_id))
    return Decision((chosen,), (buy,))


# -- delivery monitoring and completion ----------------------------------------------------


def _watch(
    snapshot: Snapshot | None, shipment_id: str, rules: Rules, now: datetime
) -> tuple[Effect, ...]:
    """What a shipment that just left sets going: the confirmation and its delay checks."""
    found = _shipment(snapshot, shipment_id)
    effects: list[Effect] = [Notify(kind="shipping_confirmation", shipment_id=shipment_id)]
    if found is None:
        return tuple(effects)
    grace = timedelta(hours=rules.delays.pickup_grace_hours)
    pickup = _pickup(rules, found.warehouse, now)
    effects.append(Remind(PICKUP_CHECK, pickup + grace, scope=shipment_id))
    if found.promised_by is not None:
        zone = ZoneInfo(rules.calendar(found.warehouse).timezone)
        # The promise is broken once the promised day is over where the parcel left from.
        over = datetime.combine(found.promised_by + timedelta(days=1), time(0), zone)
        effects.append(Remind(PROMISE_CHECK, over.astimezone(UTC), scope=shipment_id))
    if found.rate is not None and found.rate.carrier in rules.poll_carriers:
        due = now + timedelta(seconds=rules.poll_interval_s)
        effects.append(Remind(TRACK_POLL, due, scope=f"{shipment_id}:1"))
    return tuple(effects)


def _pickup(rules: Rules, warehouse: str, shipped_at: datetime) -> datetime:
    """When the carrier collects a parcel labelled at ``shipped_at``: the cutoff of the
    warehouse's shipping day (a parcel labelled after Friday's cutoff goes on Monday)."""
    calendar = rules.calendar(warehouse)
    day = ship_date(calendar, shipped_at)
    collected = datetime.combine(day, calendar.cutoff, ZoneInfo(calendar.timezone))
    return max(collected.astimezone(UTC), shipped_at)


def _promise_broken(found: Shipment, rules: Rules, now: datetime) -> bool:
    if found.promised_by is None:
        return False
    zone = ZoneInfo(rules.calendar(found.warehouse).timezone)
    return now.astimezone(zone).date() > found.promised_by


def _late_by_estimate(found: Shipment, estimate: date | None) -> bool:
    return estimate is not None and found.promised_by is not None and estimate > found.promised_by


def _tracked(
    snapshot: Snapshot | None, news: TrackingUpdated, rules: Rules, now: datetime
) -> Decision:
    found = _shipment(snapshot, news.shipment_id)
    if snapshot is None or found is None or found.status != "shipped":
        return Decision()  # not on its way (any more): late news changes nothing
    if snapshot.state in TERMINAL:
        return Decision()
    if not advances(found.tracking_status, found.tracking_at, news.status, news.at):
        return _estimate_moved(found, news, now)
    sid = found.id
    estimate = news.estimated_delivery or found.carrier_estimate
    events: list[Event] = [
        ShipmentTracked(
            at=now,
            shipment_id=sid,
            status=news.status,
            carrier_status=news.carrier_status,
            detail=news.detail,
            scanned_at=news.at,
            estimated_delivery=news.estimated_delivery,
        )
    ]
    effects: list[Effect] = []
    final = news.status in ("delivered", "failure", "returned")
    if found.delayed and (final or _episode_over(found, estimate, news.status, rules, now)):
        events.append(DelayEnded(at=now, shipment_id=sid, episode=found.delay_episode))
    if news.status == "delivered":
        events.append(ShipmentDelivered(at=now, shipment_id=sid, delivered_at=news.at))
        return _then_complete(snapshot, tuple(events), tuple(effects), rules, now, news.at)
    if news.status in ("failure", "returned"):
        detail = news.detail or news.carrier_status
        events.append(DeliveryFailed(at=now, shipment_id=sid, status=news.status, detail=detail))
        events.append(
            AttentionNeeded(
                at=now,
                reason=f"shipment {sid} {news.status.replace('_', ' ')}: {detail}",
                hold=sid,
            )
        )
        effects.append(Notify(kind="delivery_exception", shipment_id=sid))
        return Decision(tuple(events), tuple(effects))
    still_delayed = found.delayed and not any(isinstance(e, DelayEnded) for e in events)
    if not still_delayed and _late_by_estimate(found, estimate):
        episode = found.delay_episode + 1
        reason = f"the carrier now expects {estimate}, after the promised {found.promised_by}"
        events.append(DelayDetected(at=now, shipment_id=sid, episode=episode, reason=reason))
        effects.append(Notify(kind="delay_alert", shipment_id=sid, episode=episode))
    if news.status != "pre_transit":
        due = _scan_due(rules, found.warehouse, news.at)
        effects.append(Remind(NO_SCAN, max(due, now), scope=f"{sid}:{found.scans + 1}"))
    return Decision(tuple(events), tuple(effects))


def _scan_due(rules: Rules, warehouse: str, scanned_at: datetime) -> datetime:
    """When a parcel last scanned at ``scanned_at`` is overdue for its next scan: after
    ``no_scan_hours`` of working time, since carriers do not scan on their days off."""
    calendar = rules.calendar(warehouse)
    zone = ZoneInfo(calendar.timezone)
    at = scanned_at.astimezone(zone)
    left = timedelta(hours=rules.delays.no_scan_hours)
    while True:
        midnight = datetime.combine(at.date() + timedelta(days=1), time(0), zone)
        if is_business_day(calendar, at.date()):
            if at + left <= midnight:
                return (at + left).astimezone(UTC)
            left -= midnight - at
        at = midnight


def _release(
    snapshot: Snapshot | None, hold: str, by: str, rules: Rules, now: datetime
) -> Decision:
    """End a hold; an order whose last parcel arrived meanwhile goes on to its follow-ups,
    one whose stock waits meanwhile goes to the warehouse."""
    if snapshot is None or snapshot.state in TERMINAL or hold not in snapshot.holds:
        return Decision()
    released = HoldReleased(at=now, hold=hold, by=by)
    after = evolve(snapshot, released, snapshot.order_id)
    if after.state is OrderState.DELIVERED and not after.follow_ups:
        arrived = max(s.delivered_at for s in after.shipments if s.delivered_at is not None)
        return _then_complete(snapshot, (released,), (), rules, now, arrived)
    return _then_fulfil(snapshot, (released,), rules, now)


def _retry(
    snapshot: Snapshot | None, shipment_id: str, by: str, rules: Rules, now: datetime
) -> Decision:
    """Release a packed shipment held without a label, and shop its rates again."""
    found = _shipment(snapshot, shipment_id)
    if snapshot is None or found is None or snapshot.order is None:
        return Decision()
    if found.id not in snapshot.holds or _dead_letters(snapshot):
        # Only a shipment held for want of a rate or a label; a dead-lettered message
        # (perhaps its purchase) is replayed instead, so no second label is bought.
        return Decision()
    if found.status != "packed" or found.purchase_id is not None or found.parcel is None:
        return Decision()  # only a packed parcel still waiting for its label
    address = snapshot.order.shipping_address
    if address is None:
        return Decision()
    shop = ShopRates(
        shipment_id=found.id,
        warehouse=found.warehouse,
        parcel=found.parcel,
        ship_to=address,
        signature=needs_signature(rules.shipping, snapshot.order.total),
    )
    return Decision((HoldReleased(at=now, hold=found.id, by=by),), (shop,))


def _estimate_moved(found: Shipment, news: TrackingUpdated, now: datetime) -> Decision:
    """News that moves no scan forward may still move the carrier's estimate: recorded,
    and a new delay episode if it now falls after the promise."""
    estimate = news.estimated_delivery
    latest = found.tracking_at
    if estimate is None or estimate == found.carrier_estimate:
        return Decision()  # older than what is known, or the same again
    if latest is not None and news.at < latest:
        return Decision()
    events: list[Event] = [EstimateMoved(at=now, shipment_id=found.id, estimated_delivery=estimate)]
    effects: tuple[Effect, ...] = ()
    if not found.delayed and _late_by_estimate(found, estimate):
        episode = found.delay_episode + 1
        reason = f"the carrier now expects {estimate}, after the promised {found.promised_by}"
        events.append(DelayDetected(at=now, shipment_id=found.id, episode=episode, reason=reason))
        effects = (Notify(kind="delay_alert", shipment_id=found.id, episode=episode),)
    return Decision(tuple(events), effects)


def _episode_over(
    found: Shipment, estimate: date | None, status: str, rules: Rules, now: datetime
) -> bool:
    """Whether news that moved the parcel ends its open delay episode.

    A broken promise stays broken until delivery, whatever else happens; a parcel whose
    carrier estimate was late is on time again only when the estimate is back within the
    promise; one not picked up, once it is in the carrier's hands; one that stopped
    moving, with any scan.
    """
    if _promise_broken(found, rules, now):
        return False
    reason = found.delay_reason or ""
    if reason.startswith("the carrier now expects"):
        return not _late_by_estimate(found, estimate)
    if reason.startswith("not picked up"):
        return status not in ("pre_transit", "unknown")
    return True


def _check_delay(
    snapshot: Snapshot | None, due: ReminderDue, rules: Rules, now: datetime
) -> Decision:
    shipment_id, _, scan = due.scope.partition(":")
    found = _shipment(snapshot, shipment_id)
    if snapshot is None or found is None or found.status != "shipped" or found.delayed:
        return Decision()
    if due.kind == NO_SCAN and scan != str(found.scans):
        return Decision()  # scanned again since: this check is stale
    last_scan = found.tracking_at
    if due.kind == NO_SCAN and last_scan is not None:
        overdue = _scan_due(rules, found.warehouse, last_scan)
        if max(now, due.due_at) < overdue:
            return Decision()  # a weekend without scans is not a delay
    if found.shipped_at is None or found.tracking_status == "available_for_pickup":
        return Decision()  # waiting at a pickup point is arrived, for the customer to fetch
    zone = ZoneInfo(rules.calendar(found.warehouse).timezone)
    track = ShipmentTrack(
        promised_by=found.promised_by,
        shipped_at=_pickup(rules, found.warehouse, found.shipped_at),
        status=found.tracking_status or "pre_transit",
        last_scan_at=found.tracking_at,
        carrier_estimate=found.carrier_estimate,
        delivered=False,
    )
    # A check handled early (a process whose clock is behind) looks at its due time.
    at = max(now, due.due_at)
    reason = delay_reason(track, at, rules.delays, local_today=at.astimezone(zone).date())
    if reason is None:
        return Decision()
    episode = found.delay_episode + 1
    return Decision(
        (DelayDetected(at=now, shipment_id=shipment_id, episode=episode, reason=reason),),
        (Notify(kind="delay_alert", shipment_id=shipment_id, episode=episode),),
    )


def _poll(snapshot: Snapshot | None, scope: str, rules: Rules, now: datetime) -> Decision:
    shipment_id, _, number = scope.partition(":")
    found = _shipment(snapshot, shipment_id)
    if found is None or found.status != "shipped" or found.rate is None:
        return Decision()
    if found.tracking_number is None or found.shipped_at is None:
        return Decision()
    effects: list[Effect] = [
        Track(
            shipment_id=shipment_id,
            carrier=found.rate.carrier,
            tracking_number=found.tracking_number,
            carrier_account=found.rate.carrier_account,
        )
    ]
    if now - found.shipped_at < timedelta(days=rules.poll_for_days):
        again = now + timedelta(seconds=rules.poll_interval_s)
        next_scope = f"{shipment_id}:{int(number or 0) + 1}"
        effects.append(Remind(TRACK_POLL, again, scope=next_scope))
    return Decision((), tuple(effects))


def _then_complete(
    snapshot: Snapshot,
    events: tuple[Event, ...],
    effects: tuple[Effect, ...],
    rules: Rules,
    now: datetime,
    delivered_at: datetime,
) -> Decision:
    """After a delivery: when every shipment is delivered and nothing waits, the order is
    delivered: its message goes out and the follow-ups are set, or it is complete."""
    after: Snapshot = snapshot
    for event in events:
        after = evolve(after, event, snapshot.order_id)
    if after.state is not OrderState.DELIVERED:
        return Decision(events, effects)
    # Follow-ups count from the last parcel to arrive, whichever news came last.
    delivered_at = max(
        (s.delivered_at for s in after.shipments if s.delivered_at is not None),
        default=delivered_at,
    )
    more: list[Effect] = list(effects)
    if rules.delivered_message:
        more.append(Notify(kind="delivered"))
    review, repeat = _follow_up_days(after, rules)
    kinds = []
    for kind, days in ((REVIEW_REQUEST, review), (REPEAT_PURCHASE, repeat)):
        if days:
            kinds.append(kind)
            more.append(Remind(kind, delivered_at + timedelta(days=days)))
    if not kinds:
        return Decision((*events, OrderCompleted(at=now)), tuple(more))
    return Decision((*events, FollowUpsScheduled(at=now, kinds=tuple(kinds))), tuple(more))


def _follow_up_days(snapshot: Snapshot, rules: Rules) -> tuple[int, int]:
    """Days after delivery for the review request and the repeat reminder: the store's,
    unless products of the order set their own (0 in the store's setting sends none)."""
    shipped = [s for s in snapshot.shipments if s.status == "delivered"]
    reviews = [s.review_after_days for s in shipped if s.review_after_days]
    repeats = [s.repeat_after_days for s in shipped if s.repeat_after_days]
    review = max(reviews) if reviews and rules.review_after_days else rules.review_after_days
    repeat = min(repeats) if repeats and rules.repeat_after_days else rules.repeat_after_days
    return review, repeat


def _follow_up_done(snapshot: Snapshot, kind: str, status: str, now: datetime) -> tuple[Event, ...]:
    done: tuple[Event, ...] = (FollowUpDone(at=now, kind=kind, status=status),)
    if set(snapshot.follow_ups) == {kind}:
        return (*done, OrderCompleted(at=now))
    return done


# -- evolve ------------------------------------------------------------------------------


def evolve(snapshot: Snapshot | None, event: Event, order_id: str) -> Snapshot:
    """The order after ``event``."""
    current = snapshot or Snapshot(order_id=order_id, state=OrderState.RECEIVED)
    match event:
        case OrderReceived(order=order):
            if current.state in TERMINAL:
                return structs.replace(current, order=order)  # cancelled before it was paid
            return structs.replace(current, state=OrderState.RECEIVED, order=order)
        case StockAllocated(status=status, holdings=holdings, policy=policy, op_id=op_id):
            if op_id == "reserve":
                # The order's reservation (again, after a replayed dead letter): whatever
                # held the whole order before it is settled.
                released = _released(current, ORDER_HOLD)
                merged = _merged((), holdings)
                return structs.replace(
                    released, state=_progress(released, OrderState(status)), holdings=merged,
                    policy=policy,
                )  # fmt: skip
            merged = _merged(current.holdings, holdings)
            return structs.replace(
                current, state=_progress(current, _holding_state(merged)), holdings=merged
            )
        case BackorderFilled(warehouse=warehouse, lines=lines):
            holdings = _filled(current.holdings, warehouse, lines)
            state = _progress(current, _holding_state(holdings))
            return structs.replace(current, state=state, holdings=holdings)
        case NothingToShip():
            return structs.replace(
                current, state=OrderState.COMPLETED, reason="nothing to ship", holds=()
            )
        case OrderCancelled(reason=reason):
            # Shipments not yet labelled go no further; a labelled one was voided first.
            stopped = tuple(
                structs.replace(s, status="cancelled") if s.status in OPEN else s
                for s in current.shipments
            )
            return structs.replace(
                current, state=OrderState.CANCELLED, holdings=(), reason=reason,
                shipments=stopped, holds=(),
            )  # fmt: skip
        case AttentionNeeded(reason=reason, hold=hold):
            if current.state in TERMINAL:
                return current  # a finished order is not reopened by late news
            key = hold or ORDER_HOLD
            holds = current.holds if key in current.holds else (*current.holds, key)
            return structs.replace(
                current, state=OrderState.NEEDS_ATTENTION, reason=reason, holds=holds
            )
        case CancelRefused():
            return current
        case FulfillmentRequested():
            shipment = Shipment(
                id=event.shipment_id,
                seq=len(current.shipments) + 1,
                warehouse=event.warehouse,
                lines=event.lines,
                service_level=event.service_level,
                promised_by=event.promised_by,
                parcel=event.parcel,
                review_after_days=event.review_after_days,
                repeat_after_days=event.repeat_after_days,
            )
            return structs.replace(
                current,
                state=_progress(current, OrderState.FULFILLMENT_REQUESTED),
                shipments=(*current.shipments, shipment),
                reason=current.reason if current.holds else None,
            )
        case ShipmentPicked(shipment_id=shipment_id):
            return _moved(current, shipment_id, OrderState.PICKED, status="picked")
        case ShipmentPacked(shipment_id=shipment_id, parcel=parcel):
            # Packed right (again, after a mismatch): the shipment's hold is over.
            return _moved(
                _released(current, shipment_id), shipment_id, OrderState.PACKED,
                status="packed", parcel=parcel, packed_ok=True, problem=None,
            )  # fmt: skip
        case PackMismatch(shipment_id=shipment_id, difference=difference):
            return _moved(
                current, shipment_id, current.state, status="mismatch", packed_ok=False,
                problem=f"packed wrong: {difference}",
            )  # fmt: skip
        case ShortPick(shipment_id=shipment_id, missing=missing):
            found = shipments.find(current.shipments, shipment_id)
            warehouse = found.warehouse if found else ""
            holdings = _less(current.holdings, warehouse, missing)
            moved = _moved(
                _released(current, shipment_id), shipment_id, current.state,
                status="short_picked", short=missing,
                problem="short pick: " + ", ".join(f"{sku} x{n}" for sku, n in missing),
            )  # fmt: skip
            return structs.replace(moved, holdings=holdings)
        case CarrierChosen(shipment_id=shipment_id, rate=rate, estimated_delivery=delivery):
            return _moved(
                current, shipment_id, current.state, rate=rate, estimated_delivery=delivery
            )
        case LabelCreated():
            return _moved(
                current, event.shipment_id, OrderState.LABEL_CREATED, status="label_created",
                tracking_number=event.tracking_number, tracking_url=event.tracking_url,
                label_format=event.label_format, label_path=event.label_path,
                purchase_id=event.purchase_id,
            )  # fmt: skip
        case Shipped(shipment_id=shipment_id, lines=lines):
            found = shipments.find(current.shipments, shipment_id)
            warehouse = found.warehouse if found else ""
            moved = _moved(
                current, shipment_id, OrderState.SHIPPED, status="shipped", shipped_at=event.at
            )
            return structs.replace(moved, holdings=_less(current.holdings, warehouse, lines))
        case LabelVoided(shipment_id=shipment_id):
            return _moved(current, shipment_id, current.state, status="voided")
        case ShipmentTracked():
            found = shipments.find(current.shipments, event.shipment_id)
            state = _TRACKED_STATE.get(event.status, current.state)
            known = found.carrier_estimate if found else None
            return _moved(
                current, event.shipment_id, state, tracking_status=event.status,
                tracking_detail=event.detail or event.carrier_status,
                tracking_at=event.scanned_at, carrier_estimate=event.estimated_delivery or known,
                scans=(found.scans + 1) if found else 1,
            )  # fmt: skip
        case HoldReleased(hold=hold):
            if current.state in TERMINAL:
                return current
            released = _released(current, hold)
            return structs.replace(released, state=_resting_state(released))
        case EstimateMoved(shipment_id=shipment_id, estimated_delivery=estimate):
            return _moved(current, shipment_id, current.state, carrier_estimate=estimate)
        case DelayDetected(shipment_id=shipment_id, episode=episode, reason=reason):
            return _moved(
                current, shipment_id, current.state, delayed=True, delay_episode=episode,
                delay_reason=reason,
            )  # fmt: skip
        case DelayEnded(shipment_id=shipment_id):
            return _moved(current, shipment_id, current.state, delayed=False)
        case ShipmentDelivered(shipment_id=shipment_id, delivered_at=delivered_at):
            moved = _moved(
                current, shipment_id, current.state, status="delivered", delivered_at=delivered_at
            )
            return structs.replace(moved, state=_delivery_state(moved))
        case DeliveryFailed(shipment_id=shipment_id, status=status):
            return _moved(current, shipment_id, current.state, status=status)
        case MessageQueued():
            return current
        case FollowUpsScheduled(kinds=kinds):
            return structs.replace(current, follow_ups=kinds)
        case FollowUpDone(kind=kind):
            left = tuple(k for k in current.follow_ups if k != kind)
            return structs.replace(current, follow_ups=left)
        case OrderCompleted():
            return structs.replace(current, state=OrderState.COMPLETED, follow_ups=(), holds=())
    return current


_TRACKED_STATE = {
    "in_transit": OrderState.IN_TRANSIT,
    "out_for_delivery": OrderState.OUT_FOR_DELIVERY,
    "available_for_pickup": OrderState.OUT_FOR_DELIVERY,
}


def _delivery_state(snapshot: Snapshot) -> OrderState:
    """Delivered once every shipment that left has arrived and nothing more is to come."""
    left = [s for s in snapshot.shipments if s.status in ("shipped", *OPEN)]
    waiting = any(h.backordered or h.reserved for h in snapshot.holdings)
    if left or waiting or snapshot.holds:
        return snapshot.state
    return OrderState.DELIVERED


def _moved(current: Snapshot, shipment_id: str, state: OrderState, **changes: object) -> Snapshot:
    updated = tuple(
        structs.replace(s, **changes) if s.id == shipment_id else s for s in current.shipments
    )
    return structs.replace(current, state=_progress(current, state), shipments=updated)


# How far a shipment got, as the order's state, least advanced first.
_SHIPMENT_STATE = {
    "requested": OrderState.FULFILLMENT_REQUESTED,
    "picked": OrderState.PICKED,
    "packed": OrderState.PACKED,
    "mismatch": OrderState.PACKED,
    "label_created": OrderState.LABEL_CREATED,
}


def _resting_state(snapshot: Snapshot) -> OrderState:
    """The order's state worked out from its shipments and holdings (when a hold ends and
    no single event says where the order is)."""
    if snapshot.holds:
        return OrderState.NEEDS_ATTENTION
    order = [*_SHIPMENT_STATE.values()]
    open_states = [_SHIPMENT_STATE[s.status] for s in snapshot.shipments if s.status in OPEN]
    if open_states:
        return min(open_states, key=order.index)
    if any(h.backordered for h in snapshot.holdings):
        return _holding_state(snapshot.holdings)  # the rest still waits for stock
    moving = [s for s in snapshot.shipments if s.status == "shipped"]
    if moving:
        tracked = [_TRACKED_STATE.get(s.tracking_status or "", OrderState.SHIPPED) for s in moving]
        ranks = [OrderState.SHIPPED, OrderState.IN_TRANSIT, OrderState.OUT_FOR_DELIVERY]
        return max(tracked, key=ranks.index)
    if any(s.status == "delivered" for s in snapshot.shipments):
        return _delivery_state(structs.replace(snapshot, state=OrderState.SHIPPED))
    if snapshot.holdings:
        return _holding_state(snapshot.holdings)
    return OrderState.RECEIVED


def _dead_letters(snapshot: Snapshot) -> bool:
    """Whether a dead-lettered message of the order waits for a person."""
    return any(h.startswith("dead:") for h in snapshot.holds)


def _progress(current: Snapshot, state: OrderState) -> OrderState:
    """``state``, unless something still holds the order for a person."""
    return OrderState.NEEDS_ATTENTION if current.holds else state


def _released(current: Snapshot, key: str) -> Snapshot:
    """``current`` without the hold ``key``; the reason goes with the last hold."""
    if key not in current.holds:
        return current
    holds = tuple(h for h in current.holds if h != key)
    return structs.replace(current, holds=holds, reason=current.reason if holds else None)


def _holding_state(holdings: tuple[Holding, ...]) -> OrderState:
    reserved = any(h.reserved for h in holdings)
    waiting = any(h.backordered for h in holdings)
    if waiting:
        return OrderState.PARTIALLY_RESERVED if reserved else OrderState.BACKORDERED
    return OrderState.RESERVED


def _merged(holdings: tuple[Holding, ...], more: tuple[Holding, ...]) -> tuple[Holding, ...]:
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for h in (*holdings, *more):
        reserved, waiting = totals.get((h.warehouse, h.sku), (0, 0))
        totals[(h.warehouse, h.sku)] = (reserved + h.reserved, waiting + h.backordered)
    return tuple(
        Holding(warehouse, sku, reserved, waiting)
        for (warehouse, sku), (reserved, waiting) in totals.items()
        if reserved or waiting
    )


def _less(
    holdings: tuple[Holding, ...], warehouse: str, lines: tuple[tuple[str, int], ...]
) -> tuple[Holding, ...]:
    """Holdings after ``lines`` left the reservation in ``warehouse`` (shipped or written off)."""
    gone = dict(lines)
    updated = []
    for h in holdings:
        units = min(gone.pop(h.sku, 0), h.reserved) if h.warehouse == warehouse else 0
        if h.reserved - units or h.backordered:
            updated.append(Holding(h.warehouse, h.sku, h.reserved - units, h.backordered))
    return tuple(updated)


def _filled(
    holdings: tuple[Holding, ...], warehouse: str, lines: tuple[tuple[str, int], ...]
) -> tuple[Holding, ...]:
    filled = dict(lines)
    updated = []
    for h in holdings:
        units = min(filled.pop(h.sku, 0), h.backordered) if h.warehouse == warehouse else 0
        updated.append(Holding(h.warehouse, h.sku, h.reserved + units, h.backordered - units))
    for sku, units in filled.items():
        updated.append(Holding(warehouse, sku, units, 0))
    return tuple(updated)
