"""How carrier news moves a shipment on, and when a parcel counts as late.

Pure: the clock is never read, ``now`` always comes in.

The statuses are ordered by how far a parcel has got::

    pre_transit < in_transit < available_for_pickup = out_for_delivery < delivered

``returned`` and ``failure`` rank with ``delivered``: they are terminal exceptions, where a
person takes over, and nothing a carrier says afterwards overturns them. ``unknown`` says
nothing about where the parcel is, so it never replaces what is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from msgspec import Struct

from actors.shipping.carriers import TrackingStatus

RANK: Mapping[TrackingStatus, int] = MappingProxyType(
    {
        "unknown": 0,
        "pre_transit": 1,
        "in_transit": 2,
        "available_for_pickup": 3,
        "out_for_delivery": 3,
        "delivered": 4,
        "returned": 4,
        "failure": 4,
    }
)

FINAL: frozenset[TrackingStatus] = frozenset({"delivered", "returned", "failure"})

# Statuses in which a parcel is moving and the carrier scans it as it goes. A parcel
# waiting at a pickup point is not expected to be scanned until it is collected.
_MOVING: frozenset[TrackingStatus] = frozenset({"in_transit", "out_for_delivery"})
# Not yet in the carrier's hands; "unknown" is what carriers say before the first scan.
_NOT_PICKED_UP: frozenset[TrackingStatus] = frozenset({"pre_transit", "unknown"})


def advances(
    current: TrackingStatus | None,
    current_at: datetime | None,
    new: TrackingStatus,
    new_at: datetime,
) -> bool:
    """True when news of ``new`` at ``new_at`` moves a shipment on from ``current``.

    A higher rank is progress whenever it was scanned (carriers deliver late and out of
    order); a lower rank never is. At the same rank, only a newer scan counts: it is the
    parcel seen again, not a repeat. A terminal status changes to no other status.
    Times are aware.
    """
    if new == "unknown":
        return False
    if current is None or current == "unknown":
        return True
    if current in FINAL and new != current:
        return False
    if RANK[new] != RANK[current]:
        return RANK[new] > RANK[current]
    return current_at is None or new_at > current_at


class DelayRules(Struct, frozen=True, kw_only=True):
    """How long a parcel may go unseen before it counts as delayed."""

    no_scan_hours: float = 48  # moving, yet no scan for this long
    pickup_grace_hours: float = 24  # shipped, yet the carrier has not picked it up

    def __post_init__(self) -> None:
        for name, hours in (
            ("no_scan_hours", self.no_scan_hours),
            ("pickup_grace_hours", self.pickup_grace_hours),
        ):
            if not math.isfinite(hours) or hours <= 0:
                raise ValueError(f"{name} must be a positive number of hours")


class ShipmentTrack(Struct, frozen=True, kw_only=True):
    """What the delay rules look at in a shipment."""

    promised_by: date | None  # the date promised to the customer
    shipped_at: datetime
    status: TrackingStatus
    last_scan_at: datetime | None
    carrier_estimate: date | None
    delivered: bool


class DelayCause(StrEnum):
    """Which rule found a parcel late; it decides what ends the delay episode."""

    PROMISE_PASSED = "promise_passed"  # the promised date is over: late until delivered
    LATE_ESTIMATE = "late_estimate"  # the carrier expects it after the promise
    NO_SCAN = "no_scan"  # moving, yet unseen for too long
    NOT_PICKED_UP = "not_picked_up"  # shipped, yet not in the carrier's hands


class Delay(Struct, frozen=True):
    """Why a parcel is late: the rule, and a few words for the customer."""

    cause: DelayCause
    reason: str


def late_estimate(estimate: date, promised: date) -> Delay:
    """The delay of a parcel the carrier now expects after the promised date."""
    reason = f"the carrier now expects {estimate.isoformat()}, after the promised {promised}"
    return Delay(DelayCause.LATE_ESTIMATE, reason)


def detect_delay(
    track: ShipmentTrack, now: datetime, rules: DelayRules, *, local_today: date
) -> Delay | None:
    """Why the shipment is late, or None when it is not.

    The rules are checked in order: the promised date passed (``local_today`` is the date
    where the customer was promised), the carrier's own estimate after the promise, no
    scan of a moving parcel for ``no_scan_hours``, not picked up ``pickup_grace_hours``
    after shipping. ``now`` and the shipment's times are aware.
    """
    if track.delivered or track.status == "delivered":
        return None
    promised = track.promised_by
    if promised is not None and local_today > promised:
        return Delay(DelayCause.PROMISE_PASSED, f"the promised date {promised} has passed")
    estimate = track.carrier_estimate
    if promised is not None and estimate is not None and estimate > promised:
        return late_estimate(estimate, promised)
    if track.status in _MOVING:
        # A parcel marked moving without a recorded scan has been unseen since it shipped.
        unseen = now - (track.last_scan_at or track.shipped_at)
        if unseen >= timedelta(hours=rules.no_scan_hours):
            return Delay(DelayCause.NO_SCAN, f"no scan for {_hours(unseen)}")
    if track.status in _NOT_PICKED_UP:
        waiting = now - track.shipped_at
        if waiting >= timedelta(hours=rules.pickup_grace_hours):
            reason = f"not picked up {_hours(waiting)} after it shipped"
            return Delay(DelayCause.NOT_PICKED_UP, reason)
    return None


def _hours(span: timedelta) -> str:
    whole = int(span.total_seconds() // 3600)
    return "1 hour" if whole == 1 else f"{whole} hours"
