"""Who gets which message, where and when: pure rules, no I/O.

- :func:`to_e164` turns the phone numbers platforms pass on (often typed by the customer in
  national format) into E.164, or None when it cannot be sure;
- :func:`channels_for` narrows the store's channel setting to what a customer has and
  allows;
- :func:`quiet_until` keeps SMS out of the customer's night.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

Channels = Literal["email", "sms", "both"]

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_SEPARATORS = re.compile(r"[\s\-.()]")
_NANP_NUMBER = re.compile(r"[2-9][0-9]{2}[2-9][0-9]{6}")
# Something@something: enough to know there is an address to send to.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class _Plan(NamedTuple):
    """How a country writes its numbers at home."""

    calling_code: str
    trunk_prefix: str  # dialled before a national number at home, dropped in E.164
    min_digits: int  # length of the national significant number (without trunk prefix)
    max_digits: int


# Countries whose national format orderd converts. Elsewhere only numbers already written
# internationally (+... or 00...) are accepted. Italy is left out on purpose: its landline
# numbers keep their leading 0 in E.164, so "dropping a leading 0" would be wrong there.
NUMBERING_PLANS: Final[Mapping[str, _Plan]] = {
    "US": _Plan("1", "1", 10, 10),
    "CA": _Plan("1", "1", 10, 10),
    "GB": _Plan("44", "0", 9, 10),
    "IE": _Plan("353", "0", 7, 9),
    "NL": _Plan("31", "0", 9, 9),
    "BE": _Plan("32", "0", 8, 9),
    "LU": _Plan("352", "", 4, 11),
    "DE": _Plan("49", "0", 6, 13),
    "AT": _Plan("43", "0", 4, 13),
    "CH": _Plan("41", "0", 9, 9),
    "FR": _Plan("33", "0", 9, 9),
    "ES": _Plan("34", "", 9, 9),
    "PT": _Plan("351", "", 9, 9),
    "DK": _Plan("45", "", 8, 8),
    "NO": _Plan("47", "", 8, 8),
    "SE": _Plan("46", "0", 7, 9),
    "FI": _Plan("358", "0", 5, 12),
    "PL": _Plan("48", "", 9, 9),
    "AU": _Plan("61", "0", 9, 9),
    "NZ": _Plan("64", "0", 8, 10),
}

# The time zone most of a country's customers live in (the capital's, or the biggest
# city's where that is where most people are). Unknown countries are treated as UTC.
COUNTRY_ZONES: Final[Mapping[str, str]] = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "CO": "America/Bogota",
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "PT": "Europe/Lisbon",
    "ES": "Europe/Madrid",
    "FR": "Europe/Paris",
    "BE": "Europe/Brussels",
    "NL": "Europe/Amsterdam",
    "LU": "Europe/Luxembourg",
    "DE": "Europe/Berlin",
    "AT": "Europe/Vienna",
    "CH": "Europe/Zurich",
    "IT": "Europe/Rome",
    "DK": "Europe/Copenhagen",
    "NO": "Europe/Oslo",
    "SE": "Europe/Stockholm",
    "FI": "Europe/Helsinki",
    "PL": "Europe/Warsaw",
    "CZ": "Europe/Prague",
    "GR": "Europe/Athens",
    "TR": "Europe/Istanbul",
    "IL": "Asia/Jerusalem",
    "AE": "Asia/Dubai",
    "IN": "Asia/Kolkata",
    "SG": "Asia/Singapore",
    "HK": "Asia/Hong_Kong",
    "CN": "Asia/Shanghai",
    "KR": "Asia/Seoul",
    "JP": "Asia/Tokyo",
    "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "ZA": "Africa/Johannesburg",
}


def is_e164(phone: str) -> bool:
    """True when ``phone`` is E.164: "+" then 8 to 15 digits, the first not 0."""
    return _E164.fullmatch(phone) is not None


def to_e164(phone: str | None, country: str | None) -> str | None:
    """``phone`` in E.164, or None when it is missing or not confidently valid.

    Spaces, dashes, dots and parentheses are removed, and the "(0)" some write after a
    country code. Numbers written internationally ("+44 ...", "0044 ...") are kept as they
    are; national numbers are converted for the countries in :data:`NUMBERING_PLANS`
    (``country`` is an ISO 3166-1 alpha-2 code): "(555) 123-4567" in US becomes
    "+15551234567", "07700 900123" in GB becomes "+447700900123".
    """
    if phone is None:
        return None
    text = phone.strip()
    if text.startswith(("+", "00")):
        # "+44 (0)20 ...": the trunk prefix in parentheses is for callers at home only.
        text = text.replace("(0)", "")
    digits = _SEPARATORS.sub("", text)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+"):
        return digits if is_e164(digits) else None
    if not digits.isascii() or not digits.isdigit() or country is None:
        return None
    plan = NUMBERING_PLANS.get(country.strip().upper())
    if plan is None:
        return None
    if plan.calling_code == "1":
        national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
        if not _NANP_NUMBER.fullmatch(national):
            return None
    elif plan.trunk_prefix:
        # Without its trunk prefix a national number is ambiguous (it may be a foreign
        # number missing its "+"): not confident enough to text it.
        if not digits.startswith(plan.trunk_prefix):
            return None
        national = digits[len(plan.trunk_prefix) :]
    else:
        national = digits
    if not plan.min_digits <= len(national) <= plan.max_digits or national.startswith("0"):
        return None
    candidate = f"+{plan.calling_code}{national}"
    return candidate if is_e164(candidate) else None


def channels_for(
    setting: Channels,
    *,
    email: str | None,
    phone: str | None,
    sms_consent: bool,
    sms_enabled: bool,
) -> tuple[str, ...]:
    """The channels to use for one customer, in sending order.

    The store's ``setting`` narrowed to what the customer has and allows: SMS needs an
    E.164 ``phone``, the customer's ``sms_consent`` and a configured SMS sender
    (``sms_enabled``). A store set to SMS only still emails a customer it cannot text;
    a store set to email only never texts. Nothing usable gives ``()``.
    """
    has_email = email is not None and _EMAIL.fullmatch(email.strip()) is not None
    can_text = sms_enabled and sms_consent and phone is not None and is_e164(phone)
    wanted: tuple[str, ...] = {
        "email": ("email",),
        "sms": ("sms",) if can_text else ("email",),
        "both": ("email", "sms"),
    }[setting]
    return tuple(channel for channel in wanted if (has_email if channel == "email" else can_text))


def zone_for(country: str | None, zones: Mapping[str, str] | None = None) -> ZoneInfo:
    """The main time zone of ``country`` (ISO 3166-1 alpha-2): ``zones`` first, then
    :data:`COUNTRY_ZONES`, else UTC."""
    code = (country or "").strip().upper()
    name = (zones or {}).get(code) or COUNTRY_ZONES.get(code) or "UTC"
    return ZoneInfo(name)


def quiet_until(
    now: datetime,
    country: str | None,
    *,
    start: time,
    end: time,
    zones: Mapping[str, str] | None = None,
) -> datetime | None:
    """When quiet hours end for a customer in ``country``, if ``now`` falls within them.

    Quiet hours run from ``start`` to ``end`` in the country's main time zone (see
    :func:`zone_for`; ``zones`` adds or replaces entries) and may span midnight (21:00 to
    08:00). Returns the end as an aware UTC datetime, or None when ``now`` (aware) is
    outside them or ``start == end`` (no quiet hours).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("quiet_until needs an aware datetime")
    if start == end:
        return None
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    zone = zone_for(country, zones)
    local = now.astimezone(zone)
    clock = local.time()
    if start < end:
        if not start <= clock < end:
            return None
        day = local.date()
    elif clock >= start:
        day = local.date() + timedelta(days=1)
    elif clock < end:
        day = local.date()
    else:
        return None
    # The wall-clock end on that day. Should it fall in a DST gap, zoneinfo reads it with
    # the offset from before the change: an hour later, never earlier.
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
