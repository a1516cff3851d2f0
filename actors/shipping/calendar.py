"""The warehouse's business days: when a parcel ships and when it should arrive.

Pure: the clock is never read, ``now`` always comes in. Dates are local to the calendar's
time zone, since that is where the parcel is handed to the carrier.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Struct

_ONE_DAY = timedelta(days=1)


class BusinessCalendar(Struct, frozen=True, kw_only=True):
    timezone: str  # IANA name, e.g. "America/Chicago"
    cutoff: time  # local wall-clock time; paid or packed after it ships the next business day
    holidays: frozenset[date] = frozenset()
    weekend: frozenset[int] = frozenset({5, 6})  # date.weekday() numbers, Monday=0

    def __post_init__(self) -> None:
        if not self.weekend <= frozenset(range(7)):
            raise ValueError("weekend days are numbered 0 (Monday) to 6 (Sunday)")
        if len(self.weekend) == 7:
            raise ValueError("a calendar needs at least one working weekday")
        if self.cutoff.tzinfo is not None:
            raise ValueError("cutoff is a local wall-clock time; give it without a time zone")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def is_business_day(cal: BusinessCalendar, day: date) -> bool:
    """True when the warehouse ships on ``day`` (not a weekend day, not a holiday)."""
    return day.weekday() not in cal.weekend and day not in cal.holidays


def next_business_day(cal: BusinessCalendar, day: date) -> date:
    """The first business day strictly after ``day``."""
    day += _ONE_DAY
    while not is_business_day(cal, day):
        day += _ONE_DAY
    return day


@lru_cache(maxsize=1024)  # every order of a day asks the same few questions
def add_business_days(cal: BusinessCalendar, day: date, days: int) -> date:
    """``day`` moved ``days`` business days on.

    A non-business ``day`` first rolls forward to the next business day, so adding 0 to a
    Saturday gives Monday and adding 1 gives Tuesday.
    """
    if days < 0:
        raise ValueError(f"days must be 0 or more, got {days}")
    if not is_business_day(cal, day):
        day = next_business_day(cal, day)
    for _ in range(days):
        day = next_business_day(cal, day)
    return day


def ship_date(cal: BusinessCalendar, now: datetime) -> date:
    """The local day a parcel paid or packed at ``now`` (timezone-aware) leaves the warehouse."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(_zone(cal.timezone))
    today = local.date()
    if is_business_day(cal, today) and local.time() < cal.cutoff:
        return today
    return next_business_day(cal, today)


def estimated_delivery(
    cal: BusinessCalendar,
    now: datetime,
    *,
    transit_days: int | None,
    carrier_date: date | None,
) -> date | None:
    """The day the parcel should arrive, or None when nothing says.

    The carrier's own date wins: it knows its network; otherwise the ship date plus the
    transit time in business days.
    """
    if carrier_date is not None:
        return carrier_date
    if transit_days is None:
        return None
    return add_business_days(cal, ship_date(cal, now), transit_days)


def promised_by(cal: BusinessCalendar, paid_at: datetime, max_days: int) -> date:
    """The latest delivery day the service level promises for an order paid at ``paid_at``."""
    return add_business_days(cal, ship_date(cal, paid_at), max_days)
