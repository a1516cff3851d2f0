"""The order actor's behaviour: pure ``decide`` and ``evolve``.

``decide(snapshot, message, rules, now)`` says what happened (events) and what must be
done outside (effects); the runtime runs the effects and hands their results back as
messages in the same turn. ``evolve(snapshot, event)`` applies an event and cannot fail.
No I/O here: every test of an order decision is a plain function call.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from msgspec import Struct, structs

from actors.order import shipment as shipments
from actors.order.events import (
    AttentionNeeded,
    BackorderFilled,
    CancelRefused,
    CarrierChosen,
    Event,
    FulfillmentRequested,
    Holding,
    LabelCreated,
    LabelVoided,
    NothingToShip,
    OrderCancelled,
    OrderReceived,
    PackMismatch,
    ShipmentPacked,
    ShipmentPicked,
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
    Message,
    OrderPaid,
    Packed,
    Picked,
    ReminderDue,
    ShortPicked,
    WarehouseRefused,
)
from actors.order.shipment import OPEN, Shipment
from actors.order.states import TERMINAL, OrderState
from actors.order.types import Address, NormalizedOrder
from actors.shipping.address import address_problems
from actors.shipping.calendar import BusinessCalendar, estimated_delivery, promised_by
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
from adapters.carriers.model import LabelFormat, Parcel, Rate

Policy = Literal["wait_all", "ship_available", "cancel_after_days"]
CANCEL_BACKORDER = "cancel_backorder"

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


class Tell(Struct, frozen=True):
    """A message for the order itself, stored with the turn and applied in a later one."""

    message: Message


Effect = (
    Reserve | ReleaseAll | Remind | RequestFulfillment | ShopRates | Buy | Commit | WriteOff
    | Void | Tell
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


Result = (
    Allocated | ReleasedAll | AllocationRefused | FulfillmentQueued | RatesQuoted | LabelBought
    | LabelRefused | CommittedShipment | WrittenOff | Voided
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
            if status != "reserved" and policy == "cancel_after_days" and op_id == "reserve":
                remind = (Remind(CANCEL_BACKORDER, now + timedelta(days=rules.cancel_after_days)),)
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
        case ReminderDue():
            return Decision()
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
            if _shipment(snapshot, shipment_id) is None:
                return Decision()
            why = f"the warehouse refused shipment {shipment_id}: {reason}"
            return Decision((AttentionNeeded(at=now, reason=why),))
        case RatesQuoted(shipment_id=shipment_id, rates=rates, failures=failures):
            return _rates(snapshot, shipment_id, rates, failures, rules, now)
        case BuyLabel(shipment_id=shipment_id):
            found = _shipment(snapshot, shipment_id)
            if found is None or found.status != "packed" or found.rate is None:
                return Decision()  # cancelled or held meanwhile
            if snapshot is not None and snapshot.state is OrderState.NEEDS_ATTENTION:
                return Decision()
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
            return Decision((AttentionNeeded(at=now, reason=why),))
        case CommittedShipment(shipment_id=shipment_id, lines=lines):
            return Decision((Shipped(at=now, shipment_id=shipment_id, lines=lines),))
        case WrittenOff(shipment_id=shipment_id):
            return _reserve_shortfall(snapshot, shipment_id, rules)
        case Voided(shipment_id=shipment_id):
            return Decision((LabelVoided(at=now, shipment_id=shipment_id),))
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
    if snapshot.state is OrderState.NEEDS_ATTENTION:
        return (), ()
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
                AttentionNeeded(at=now, reason=why),
            )
        )
    estimate = found.parcel
    weight = message.weight_g or (estimate.weight_g if estimate else 1)
    sides = message.dimensions_cm or (
        (estimate.length_cm, estimate.width_cm, estimate.height_cm) if estimate else (1, 1, 1)
    )
    parcel = Parcel(weight_g=weight, length_cm=sides[0], width_cm=sides[1], height_cm=sides[2])
    packed = ShipmentPacked(at=now, shipment_id=found.id, parcel=parcel)
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
        return Decision((AttentionNeeded(at=now, reason=why),))
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


# -- evolve ------------------------------------------------------------------------------


def evolve(snapshot: Snapshot | None, event: Event, order_id: str) -> Snapshot:
    """The order after ``event``."""
    current = snapshot or Snapshot(order_id=order_id, state=OrderState.RECEIVED)
    match event:
        case OrderReceived(order=order):
            return structs.replace(current, state=OrderState.RECEIVED, order=order)
        case StockAllocated(status=status, holdings=holdings, policy=policy, op_id=op_id):
            if op_id == "reserve":
                return structs.replace(
                    current, state=OrderState(status), holdings=holdings, policy=policy
                )
            merged = _merged(current.holdings, holdings)
            return structs.replace(current, state=_holding_state(merged), holdings=merged)
        case BackorderFilled(warehouse=warehouse, lines=lines):
            holdings = _filled(current.holdings, warehouse, lines)
            return structs.replace(current, state=_holding_state(holdings), holdings=holdings)
        case NothingToShip():
            return structs.replace(current, state=OrderState.COMPLETED, reason="nothing to ship")
        case OrderCancelled(reason=reason):
            # Shipments not yet labelled go no further; a labelled one was voided first.
            stopped = tuple(
                structs.replace(s, status="cancelled") if s.status in OPEN else s
                for s in current.shipments
            )
            return structs.replace(
                current, state=OrderState.CANCELLED, holdings=(), reason=reason, shipments=stopped
            )
        case AttentionNeeded(reason=reason):
            return structs.replace(current, state=OrderState.NEEDS_ATTENTION, reason=reason)
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
            )
            return structs.replace(
                current,
                state=OrderState.FULFILLMENT_REQUESTED,
                shipments=(*current.shipments, shipment),
                reason=None,
            )
        case ShipmentPicked(shipment_id=shipment_id):
            return _moved(current, shipment_id, OrderState.PICKED, status="picked")
        case ShipmentPacked(shipment_id=shipment_id, parcel=parcel):
            return _moved(
                current, shipment_id, OrderState.PACKED, status="packed", parcel=parcel,
                packed_ok=True, problem=None,
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
                current, shipment_id, current.state, status="short_picked", short=missing,
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
            moved = _moved(current, shipment_id, OrderState.SHIPPED, status="shipped")
            return structs.replace(moved, holdings=_less(current.holdings, warehouse, lines))
        case LabelVoided(shipment_id=shipment_id):
            return _moved(current, shipment_id, current.state, status="voided")
    return current


def _moved(current: Snapshot, shipment_id: str, state: OrderState, **changes: object) -> Snapshot:
    updated = tuple(
        structs.replace(s, **changes) if s.id == shipment_id else s for s in current.shipments
    )
    return structs.replace(current, state=state, shipments=updated)


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
