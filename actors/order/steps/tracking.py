"""Tracking: a parcel on its way, its scans, its delays and its delivery.

Holds what a shipment that left sets going (confirmation, pickup and promise checks,
tracking polls), the decisions on ``TrackingUpdated`` and on the delay-check and poll
reminders, and the evolve cases for ``ShipmentTracked``, ``EstimateMoved``,
``DelayDetected``, ``DelayEnded``, ``ShipmentDelivered`` and ``DeliveryFailed``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import assert_never
from zoneinfo import ZoneInfo

from msgspec import structs

from actors.order import shipment as shipments
from actors.order.events import (
    AttentionNeeded,
    DelayDetected,
    DelayEnded,
    DeliveryFailed,
    EstimateMoved,
    Event,
    ShipmentDelivered,
    ShipmentTracked,
    TrackingNumberChanged,
)
from actors.order.holds import ShipmentHold
from actors.order.messages import ReminderDue, TrackingCorrected, TrackingUpdated
from actors.order.reminder import ReminderKind, ReminderScope
from actors.order.shipment import OPEN, Shipment
from actors.order.states import TERMINAL, OrderState
from actors.order.steps.common import find_shipment, moved
from actors.order.steps.followup import then_complete
from actors.order.steps.model import (
    Decision,
    Effect,
    Evolve,
    Notify,
    Remind,
    Rules,
    Snapshot,
    TellPlatform,
    Track,
)
from actors.shipping.calendar import is_business_day, ship_date
from actors.shipping.tracking import (
    Delay,
    DelayCause,
    ShipmentTrack,
    advances,
    detect_delay,
    late_estimate,
)
from actors.storefront import ParcelDelivered, TrackingChanged

# The order's state for a carrier's status; other statuses leave it where it is.
TRACKED_STATE = {
    "in_transit": OrderState.IN_TRANSIT,
    "out_for_delivery": OrderState.OUT_FOR_DELIVERY,
    "available_for_pickup": OrderState.OUT_FOR_DELIVERY,
}


def watch(
    snapshot: Snapshot | None, shipment_id: str, rules: Rules, now: datetime
) -> tuple[Effect, ...]:
    """What a shipment that just left sets going: the confirmation and its delay checks."""
    found = find_shipment(snapshot, shipment_id)
    effects: list[Effect] = [Notify(kind="shipping_confirmation", shipment_id=shipment_id)]
    if found is None:
        return tuple(effects)
    grace = timedelta(hours=rules.delays.pickup_grace_hours)
    pickup = _pickup(rules, found.warehouse, now)
    scope = ReminderScope(shipment_id)
    effects.append(Remind(ReminderKind.PICKUP_CHECK, pickup + grace, scope))
    if found.promised_by is not None:
        zone = ZoneInfo(rules.calendar(found.warehouse).timezone)
        # The promise is broken once the promised day is over where the parcel left from.
        over = datetime.combine(found.promised_by + timedelta(days=1), time(0), zone)
        effects.append(Remind(ReminderKind.PROMISE_CHECK, over.astimezone(UTC), scope))
    if found.rate is not None and found.rate.carrier in rules.poll_carriers:
        due = now + timedelta(seconds=rules.poll_interval_s)
        effects.append(Remind(ReminderKind.TRACK_POLL, due, ReminderScope(shipment_id, 1)))
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


def _late_estimate(found: Shipment, estimate: date | None) -> Delay | None:
    """The delay of a carrier estimate after the promise, if it is one."""
    promised = found.promised_by
    if estimate is None or promised is None or estimate <= promised:
        return None
    return late_estimate(estimate, promised)


def _delayed(found: Shipment, delay: Delay, now: datetime) -> tuple[DelayDetected, Notify]:
    """A new delay episode of the shipment, and the customer's alert of it."""
    episode = found.delay_episode + 1
    detected = DelayDetected(
        at=now, shipment_id=found.id, episode=episode, reason=delay.reason, cause=delay.cause
    )
    return detected, Notify(kind="delay_alert", shipment_id=found.id, episode=episode)


def tracked(
    snapshot: Snapshot | None,
    news: TrackingUpdated,
    rules: Rules,
    now: datetime,
    evolve: Evolve,
) -> Decision:
    """The carrier's news: a scan, a delay begun or over, a delivery or a failure."""
    found = find_shipment(snapshot, news.shipment_id)
    if snapshot is None or found is None or found.status != "shipped":
        return Decision()  # not on its way (any more): late news changes nothing
    if snapshot.state in TERMINAL:
        return Decision()
    if not advances(found.tracking_status, found.tracking_at, news.status, news.at):
        return _estimate_only(found, news, now)
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
        effects.extend(_tell_delivered(snapshot, found, news.at, rules))
        return then_complete(snapshot, tuple(events), tuple(effects), rules, now, news.at, evolve)
    if news.status in ("failure", "returned"):
        detail = news.detail or news.carrier_status
        events.append(DeliveryFailed(at=now, shipment_id=sid, status=news.status, detail=detail))
        events.append(
            AttentionNeeded(
                at=now,
                reason=f"shipment {sid} {news.status.replace('_', ' ')}: {detail}",
                hold=ShipmentHold(sid),
            )
        )
        effects.append(Notify(kind="delivery_exception", shipment_id=sid))
        return Decision(tuple(events), tuple(effects))
    still_delayed = found.delayed and not any(isinstance(e, DelayEnded) for e in events)
    late = None if still_delayed else _late_estimate(found, estimate)
    if late is not None:
        detected, alert = _delayed(found, late, now)
        events.append(detected)
        effects.append(alert)
    if news.status != "pre_transit":
        due = _scan_due(rules, found.warehouse, news.at)
        scan = ReminderScope(sid, found.scans + 1)
        effects.append(Remind(ReminderKind.NO_SCAN, max(due, now), scan))
    return Decision(tuple(events), tuple(effects))


def _tell_delivered(
    snapshot: Snapshot, found: Shipment, delivered_at: datetime, rules: Rules
) -> tuple[TellPlatform, ...]:
    """The arrival, for a platform that records it (one told of the parcel already)."""
    order = snapshot.order
    if order is None or not order.external_id or not found.tracking_number:
        return ()
    if order.platform not in rules.write_back or order.platform not in rules.delivery_events:
        return ()
    delivered = ParcelDelivered(
        platform=order.platform,
        order_id=snapshot.order_id,
        external_order_id=order.external_id,
        shipment_id=found.id,
        tracking_number=found.tracking_number,
        delivered_at=delivered_at,
    )
    return (TellPlatform(delivered),)


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


def _estimate_only(found: Shipment, news: TrackingUpdated, now: datetime) -> Decision:
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
    late = None if found.delayed else _late_estimate(found, estimate)
    if late is not None:
        detected, alert = _delayed(found, late, now)
        events.append(detected)
        effects = (alert,)
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
    cause = found.delay_cause
    match cause:
        case DelayCause.LATE_ESTIMATE:
            return _late_estimate(found, estimate) is None
        case DelayCause.NOT_PICKED_UP:
            return status not in ("pre_transit", "unknown")
        case DelayCause.PROMISE_PASSED | DelayCause.NO_SCAN | None:
            return True
        case _:
            assert_never(cause)


def check_delay(
    snapshot: Snapshot | None, due: ReminderDue, rules: Rules, now: datetime
) -> Decision:
    """A pickup, promise or no-scan check fell due: a delay begins if the parcel is late."""
    if due.scope is None:
        return Decision()  # every check names its shipment
    found = find_shipment(snapshot, due.scope.shipment_id)
    if snapshot is None or found is None or found.status != "shipped" or found.delayed:
        return Decision()
    if due.kind is ReminderKind.NO_SCAN and due.scope.number != found.scans:
        return Decision()  # scanned again since: this check is stale
    last_scan = found.tracking_at
    if due.kind is ReminderKind.NO_SCAN and last_scan is not None:
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
    delay = detect_delay(track, at, rules.delays, local_today=at.astimezone(zone).date())
    if delay is None:
        return Decision()
    detected, alert = _delayed(found, delay, now)
    return Decision((detected,), (alert,))


def poll(snapshot: Snapshot | None, due: ReminderDue, rules: Rules, now: datetime) -> Decision:
    """Ask the carrier for the parcel's tracking, and again later while it may still move."""
    if due.scope is None:
        return Decision()  # every poll names its shipment
    shipment_id, number = due.scope.shipment_id, due.scope.number or 0
    found = find_shipment(snapshot, shipment_id)
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
        next_poll = ReminderScope(shipment_id, number + 1)
        effects.append(Remind(ReminderKind.TRACK_POLL, again, next_poll))
    return Decision((), tuple(effects))


def delivery_state(snapshot: Snapshot) -> OrderState:
    """Delivered once every shipment that left has arrived and nothing more is to come."""
    left = [s for s in snapshot.shipments if s.status in ("shipped", *OPEN)]
    waiting = any(h.backordered or h.reserved for h in snapshot.holdings)
    if left or waiting or snapshot.holds:
        return snapshot.state
    return OrderState.DELIVERED


def shipment_tracked(current: Snapshot, event: ShipmentTracked) -> Snapshot:
    """The parcel's latest scan, and the order's state by it."""
    found = shipments.find(current.shipments, event.shipment_id)
    state = TRACKED_STATE.get(event.status, current.state)
    known = found.carrier_estimate if found else None
    return moved(
        current, event.shipment_id, state, tracking_status=event.status,
        tracking_detail=event.detail or event.carrier_status,
        tracking_at=event.scanned_at, carrier_estimate=event.estimated_delivery or known,
        scans=(found.scans + 1) if found else 1,
    )  # fmt: skip


def corrected(
    snapshot: Snapshot | None, message: TrackingCorrected, rules: Rules, now: datetime
) -> Decision:
    """A shipped parcel's new tracking number: watched from now on; the customer gets the
    shipping confirmation again with it, and the order's platform is told (when it is
    written back to)."""
    found = find_shipment(snapshot, message.shipment_id)
    if snapshot is None or found is None or found.status != "shipped":
        return Decision()  # not on its way: a label bought later carries its own number
    if message.tracking_number == found.tracking_number:
        return Decision()
    changed = TrackingNumberChanged(
        at=now, shipment_id=found.id, tracking_number=message.tracking_number,
        tracking_url=message.tracking_url, was=found.tracking_number, by=message.by,
    )  # fmt: skip
    effects: list[Effect] = [
        Notify(
            kind="shipping_confirmation",
            shipment_id=found.id,
            episode=found.tracking_changes + 1,
        )
    ]
    order = snapshot.order
    if order is not None and order.external_id and order.platform in rules.write_back:
        told = TrackingChanged(
            platform=order.platform, order_id=snapshot.order_id,
            external_order_id=order.external_id, shipment_id=found.id,
            was=found.tracking_number, tracking_number=message.tracking_number,
            tracking_url=message.tracking_url,
            carrier=found.rate.carrier_account if found.rate is not None else None,
            parcel=found.seq, parcels=len(snapshot.shipments),
        )  # fmt: skip
        effects.append(TellPlatform(told))
    return Decision((changed,), tuple(effects))


def tracking_number_changed(current: Snapshot, event: TrackingNumberChanged) -> Snapshot:
    found = shipments.find(current.shipments, event.shipment_id)
    return moved(
        current, event.shipment_id, current.state, tracking_number=event.tracking_number,
        tracking_url=event.tracking_url,
        tracking_changes=(found.tracking_changes + 1) if found else 1,
    )  # fmt: skip


def estimate_moved(current: Snapshot, event: EstimateMoved) -> Snapshot:
    return moved(
        current, event.shipment_id, current.state, carrier_estimate=event.estimated_delivery
    )


def delay_detected(current: Snapshot, event: DelayDetected) -> Snapshot:
    return moved(
        current, event.shipment_id, current.state, delayed=True, delay_episode=event.episode,
        delay_reason=event.reason, delay_cause=event.cause,
    )  # fmt: skip


def delay_ended(current: Snapshot, event: DelayEnded) -> Snapshot:
    return moved(current, event.shipment_id, current.state, delayed=False)


def delivered(current: Snapshot, event: ShipmentDelivered) -> Snapshot:
    """The parcel arrived; the order is delivered when its last one has."""
    after = moved(
        current, event.shipment_id, current.state, status="delivered",
        delivered_at=event.delivered_at,
    )  # fmt: skip
    return structs.replace(after, state=delivery_state(after))


def delivery_failed(current: Snapshot, event: DeliveryFailed) -> Snapshot:
    return moved(current, event.shipment_id, current.state, status=event.status)
