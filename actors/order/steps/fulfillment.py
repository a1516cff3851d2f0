"""Fulfillment: shipments for reserved units, and the warehouse picking and packing them.

Holds the choice of what is ready to ship (one shipment per warehouse, by the backorder
policy), the decisions on the warehouse's answers (``FulfillmentQueued``, ``Picked``,
``Packed``, ``ShortPicked``, ``WarehouseRefused``), a corrected address
(``AddressCorrected``), an order its platform changed (``OrderChanged``) and the evolve
cases for ``FulfillmentRequested``, ``ShipmentPicked``, ``ShipmentPacked``,
``PackMismatch``, ``ShortPick``, ``AddressChanged`` and ``LinesChanged``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from msgspec import structs

from actors.order import shipment as shipments
from actors.order.events import (
    AddressChanged,
    AttentionNeeded,
    Event,
    FulfillmentRequested,
    FulfillmentResent,
    HoldReleased,
    LinesChanged,
    NothingToShip,
    PackMismatch,
    ShipmentPacked,
    ShipmentPicked,
    ShortPick,
)
from actors.order.holds import ORDER_HOLD, ShipmentHold
from actors.order.messages import (
    AddressCorrected,
    OrderChanged,
    Packed,
    Picked,
    ResendRequested,
    ShortPicked,
    WarehouseRefused,
)
from actors.order.shipment import OPEN, Shipment
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.common import (
    dead_letters,
    find_shipment,
    less,
    moved,
    policy_of,
    progress,
    released,
)
from actors.order.steps.intake import shippable_units
from actors.order.steps.model import (
    Decision,
    Effect,
    Evolve,
    FulfillmentQueued,
    ReleaseAll,
    RequestFulfillment,
    ResendFulfillment,
    Reserve,
    Rules,
    ShopRates,
    Snapshot,
    WriteOff,
)
from actors.shipping.address import address_problems
from actors.shipping.calendar import promised_by
from actors.shipping.carriers import Parcel
from actors.shipping.selection import needs_signature, service_level_for


def then_fulfil(
    snapshot: Snapshot | None,
    events: tuple[Event, ...],
    rules: Rules,
    now: datetime,
    evolve: Evolve,
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
    if ORDER_HOLD in snapshot.holds or dead_letters(snapshot):
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
        reason = CANNOT_SHIP + "; ".join(problems)
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


# How the reason of an order held for its address starts.
CANNOT_SHIP = "cannot ship: "


def address_corrected(
    snapshot: Snapshot | None, message: AddressCorrected, rules: Rules, now: datetime,
    evolve: Evolve,
) -> Decision:  # fmt: skip
    """Ship to the corrected address, checked again: an order its address held goes on (or
    is held again, saying why). Once a pick list is at the warehouse, the address on it
    stays: the order is held for a person instead."""
    if snapshot is None or snapshot.order is None or snapshot.state in TERMINAL:
        return Decision()
    if snapshot.shipments:
        sent = ", ".join(s.id for s in snapshot.shipments)
        why = f"the shipping address changed after the pick list was sent ({sent})"
        return Decision((AttentionNeeded(at=now, reason=why),))
    events: tuple[Event, ...] = (AddressChanged(at=now, address=message.address, by=message.by),)
    if ORDER_HOLD in snapshot.holds and (snapshot.reason or "").startswith(CANNOT_SHIP):
        events += (HoldReleased(at=now, hold=ORDER_HOLD, by=message.by),)
    return then_fulfil(snapshot, events, rules, now, evolve)


def order_changed(
    snapshot: Snapshot | None, message: OrderChanged, rules: Rules, now: datetime,
    evolve: Evolve,
) -> Decision:  # fmt: skip
    """The platform changed the order. A new address is checked and shipped to; new lines
    give back what the order held and reserve them instead. Once a pick list is at the
    warehouse, nothing on it changes: the order is held for a person, saying what changed.
    A change that leaves the address and the shipped lines as they are (the platform
    recording a fulfillment, a tag) changes nothing."""
    if snapshot is None or snapshot.order is None or snapshot.state in TERMINAL:
        return Decision()
    old, new = snapshot.order, message.order
    moved_to = new.shipping_address != old.shipping_address
    relined = shippable_units(new) != shippable_units(old)
    if not moved_to and not relined:
        return Decision()
    what = " and ".join(
        part for part, changed in (("shipping address", moved_to), ("lines", relined)) if changed
    )
    if snapshot.shipments:
        sent = ", ".join(s.id for s in snapshot.shipments)
        why = f"the {what} changed on {message.by} after the pick list was sent ({sent})"
        if ORDER_HOLD in snapshot.holds and snapshot.reason == why:
            return Decision()  # the same change, delivered again
        return Decision((AttentionNeeded(at=now, reason=why),))
    events: tuple[Event, ...] = ()
    if moved_to and new.shipping_address is not None:
        events += (AddressChanged(at=now, address=new.shipping_address, by=message.by),)
    if ORDER_HOLD in snapshot.holds and (snapshot.reason or "").startswith(CANNOT_SHIP):
        events += (HoldReleased(at=now, hold=ORDER_HOLD, by=message.by),)
    if not relined:
        return then_fulfil(snapshot, events, rules, now, evolve)
    events += (LinesChanged(at=now, lines=new.lines, by=message.by),)
    # Numbered, so that each change's stock operations run once, however often its turn.
    op_id = f"change{snapshot.line_changes + 1}"
    effects: tuple[Effect, ...] = ()
    if snapshot.holdings:
        effects = (ReleaseAll(op_id=f"{op_id}:release"),)
    shippable = shippable_units(new)
    if shippable:
        effects += (Reserve(tuple(shippable.items()), policy_of(snapshot, rules), op_id=op_id),)
    else:
        events += (NothingToShip(at=now),)
    return Decision(events, effects)


def lines_changed(current: Snapshot, event: LinesChanged) -> Snapshot:
    """The order has its new lines and holds nothing until they are reserved."""
    if current.order is None:
        return current
    order = structs.replace(current.order, lines=event.lines)
    return structs.replace(current, order=order, holdings=(), line_changes=current.line_changes + 1)


def address_changed(current: Snapshot, event: AddressChanged) -> Snapshot:
    if current.order is None:
        return current
    order = structs.replace(current.order, shipping_address=event.address)
    return structs.replace(current, order=order)


def queued(message: FulfillmentQueued, now: datetime) -> Decision:
    """The pick list is on its way to the warehouse: the shipment exists."""
    request = message.request
    requested = FulfillmentRequested(
        at=now,
        shipment_id=request.shipment_id,
        warehouse=request.warehouse,
        lines=request.lines,
        service_level=request.service_level,
        promised_by=request.promised_by,
        pick_list=message.pick_list,
        parcel=message.parcel,
        review_after_days=message.review_after_days,
        repeat_after_days=message.repeat_after_days,
    )
    return Decision((requested,))


def picked(snapshot: Snapshot | None, message: Picked, now: datetime) -> Decision:
    """The warehouse picked the shipment."""
    shipment_id = message.shipment_id
    found = find_shipment(snapshot, shipment_id)
    if found is None or found.status != "requested":
        return Decision()  # late or repeated: the shipment is further already
    return Decision((ShipmentPicked(at=now, shipment_id=shipment_id),))


def packed(snapshot: Snapshot | None, message: Packed, rules: Rules, now: datetime) -> Decision:
    """Packed right: shop the parcel's rates; packed wrong: hold the shipment for a person."""
    found = find_shipment(snapshot, message.shipment_id)
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
                AttentionNeeded(at=now, reason=why, hold=ShipmentHold(found.id)),
            )
        )
    estimate = found.parcel
    weight = message.weight_g or (estimate.weight_g if estimate else 1)
    sides = message.dimensions_cm or (
        (estimate.length_cm, estimate.width_cm, estimate.height_cm) if estimate else (1, 1, 1)
    )
    parcel = Parcel(weight_g=weight, length_cm=sides[0], width_cm=sides[1], height_cm=sides[2])
    done = ShipmentPacked(at=now, shipment_id=found.id, parcel=parcel, by=message.by)
    shop = ShopRates(
        shipment_id=found.id,
        warehouse=found.warehouse,
        parcel=parcel,
        ship_to=snapshot.order.shipping_address,
        signature=needs_signature(rules.shipping, snapshot.order.total),
    )
    return Decision((done,), (shop,))


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


def short_picked(snapshot: Snapshot | None, message: ShortPicked, now: datetime) -> Decision:
    """Units the warehouse could not find are written off the reservation."""
    shipment_id = message.shipment_id
    found = find_shipment(snapshot, shipment_id)
    if found is None or found.status not in ("requested", "picked", "mismatch"):
        return Decision()
    held = dict(found.lines)
    lacking = tuple(
        (sku, min(units, held[sku]))
        for sku, units in sorted(dict(message.missing).items())
        if sku in held
    )
    if not lacking:
        return Decision()  # nothing the shipment holds: a confused callback changes nothing
    short = ShortPick(at=now, shipment_id=shipment_id, missing=lacking)
    write_off = WriteOff(shipment_id=shipment_id, warehouse=found.warehouse, lines=lacking)
    return Decision((short,), (write_off,))


def warehouse_refused(
    snapshot: Snapshot | None, message: WarehouseRefused, now: datetime
) -> Decision:
    """The warehouse system would not take the shipment: a person must look."""
    shipment_id = message.shipment_id
    found = find_shipment(snapshot, shipment_id)
    if found is None or found.status not in ("requested", "picked"):
        return Decision()  # cancelled or further meanwhile: the refusal is moot
    why = f"the warehouse refused shipment {shipment_id}: {message.reason}"
    return Decision((AttentionNeeded(at=now, reason=why, hold=ShipmentHold(shipment_id)),))


def resend(snapshot: Snapshot | None, message: ResendRequested, now: datetime) -> Decision:
    """Deliver a shipment's request again, one the warehouse has not started on (it
    refused it, or lost it); a hold its refusal put on the shipment ends."""
    found = find_shipment(snapshot, message.shipment_id)
    if snapshot is None or found is None or found.status != "requested":
        return Decision()  # picked or further, cancelled, or unknown: nothing to send
    if snapshot.state in TERMINAL:
        return Decision()
    events: tuple[Event, ...] = (FulfillmentResent(at=now, shipment_id=found.id, by=message.by),)
    hold = ShipmentHold(found.id)
    if hold in snapshot.holds:
        events += (HoldReleased(at=now, hold=hold, by=message.by),)
    return Decision(events, (ResendFulfillment(shipment_id=found.id, due_at=now),))


def requested(current: Snapshot, event: FulfillmentRequested) -> Snapshot:
    """A new shipment, in the warehouse's hands."""
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
        state=progress(current, OrderState.FULFILLMENT_REQUESTED),
        shipments=(*current.shipments, shipment),
        reason=current.reason if current.holds else None,
    )


def shipment_picked(current: Snapshot, event: ShipmentPicked) -> Snapshot:
    return moved(current, event.shipment_id, OrderState.PICKED, status="picked")


def shipment_packed(current: Snapshot, event: ShipmentPacked) -> Snapshot:
    # Packed right (again, after a mismatch): the shipment's hold is over.
    shipment_id = event.shipment_id
    return moved(
        released(current, ShipmentHold(shipment_id)), shipment_id, OrderState.PACKED,
        status="packed", parcel=event.parcel, packed_ok=True, problem=None,
    )  # fmt: skip


def pack_mismatch(current: Snapshot, event: PackMismatch) -> Snapshot:
    return moved(
        current, event.shipment_id, current.state, status="mismatch", packed_ok=False,
        problem=f"packed wrong: {event.difference}", mispacked=True,
    )  # fmt: skip


def short_pick(current: Snapshot, event: ShortPick) -> Snapshot:
    """The missing units leave the shipment's warehouse holdings; a person must look."""
    shipment_id, missing = event.shipment_id, event.missing
    found = shipments.find(current.shipments, shipment_id)
    warehouse = found.warehouse if found else ""
    holdings = less(current.holdings, warehouse, missing)
    after = moved(
        released(current, ShipmentHold(shipment_id)), shipment_id, current.state,
        status="short_picked", short=missing,
        problem="short pick: " + ", ".join(f"{sku} x{n}" for sku, n in missing),
    )  # fmt: skip
    return structs.replace(after, holdings=holdings)
