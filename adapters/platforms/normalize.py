"""Turning a platform's field values into NormalizedOrder values, the same way for every
platform: decimal money, upper-case codes, aware times, stockable lines.

Each helper takes the field's path (e.g. ``line_items[2].sku``) for the error it raises.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import msgspec

from actors.order.types import Line, is_valid_sku
from adapters.platforms.intake import MalformedPayload, malformed_from

MAX_LINES = 1000
MAX_QUANTITY = 1_000_000
_MAX_GRAMS = 10_000_000  # ten tonnes per unit: beyond that the number is wrong, not heavy
_MAX_MONEY = Decimal(10) ** 12
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
# Statuses, topics and cancel reasons are echoed in answers only when they look like one.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./ -]{0,39}")

T = TypeVar("T")


# A JSON \u0000 escape after an even run of backslashes (after an odd run it is text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def require_utf8(body: bytes) -> None:
    """Raise :class:`MalformedPayload` unless ``body`` is UTF-8, as JSON must be (RFC 8259)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("body", "not valid UTF-8") from None


def without_nul(body: bytes) -> bytes:
    """``body`` with every JSON ``\\u0000`` escape taken out of its strings.

    PostgreSQL's text, json and jsonb cannot hold the NUL character, and every string of a
    delivery may end up there (an order's document, its lines, its events). A NUL is never
    meaningful in a name, an address or a note, so it is dropped rather than refusing a paid
    order for it. A raw NUL byte is not JSON at all and is refused by the decoder.
    """
    if b"\\u0000" not in body:
        return body
    return _NUL_ESCAPE.sub(rb"\1", body)


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode ``body``, its strings without NUL characters (see :func:`without_nul`), or
    raise :class:`MalformedPayload` naming the field."""
    try:
        return decoder.decode(without_nul(body))
    except UnicodeDecodeError:
        # msgspec checks the UTF-8 of the strings it reads and says so with this error.
        raise MalformedPayload("body", "not valid UTF-8") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise malformed_from(exc) from None


def token(value: str | None) -> str:
    """``value`` quoted for a reason when it looks like a status or topic, else a stand-in."""
    if value is None or value == "":
        return "(none)"
    return f"'{value}'" if _TOKEN.fullmatch(value) else "(unrecognised)"


def text(value: str | None) -> str:
    """A platform string with the surrounding blanks gone; None becomes ``""``."""
    return value.strip() if value else ""


def optional_text(value: str | None) -> str | None:
    """A platform string with the surrounding blanks gone; blank becomes None."""
    stripped = text(value)
    return stripped or None


def external_id(value: int, field: str) -> str:
    """A platform's numeric order or line id as a string."""
    if not 0 < value < 2**63:
        raise MalformedPayload(field, "must be a positive 64-bit integer")
    return str(value)


def money(value: Decimal | None, field: str) -> Decimal | None:
    """A non-negative, finite amount of money, or None when the platform sent none."""
    if value is None:
        return None
    if not value.is_finite() or not 0 <= value < _MAX_MONEY:
        raise MalformedPayload(field, "must be a non-negative decimal amount")
    return value


def currency_code(value: str | None, field: str) -> str:
    """An ISO 4217 currency code, upper-cased."""
    code = text(value).upper()
    if not _CURRENCY.fullmatch(code):
        raise MalformedPayload(field, "must be a three-letter ISO 4217 currency code")
    return code


def country_code(value: str | None, field: str) -> str:
    """An ISO 3166-1 alpha-2 country code, upper-cased."""
    code = text(value).upper()
    if not _COUNTRY.fullmatch(code):
        raise MalformedPayload(field, "must be a two-letter ISO 3166-1 country code")
    return code


def utc_time(value: datetime | None, field: str, *, naive_is_utc: bool = False) -> datetime | None:
    """An aware time in UTC. A time without an offset is refused unless the platform
    documents the field as UTC (``naive_is_utc``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        if not naive_is_utc:
            raise MalformedPayload(field, "needs a UTC offset")
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class RawLine(msgspec.Struct, frozen=True, kw_only=True):
    """One order line as a platform sent it, before the stock rules are applied."""

    field: str  # e.g. "line_items[3]", for errors
    position: int  # 1-based, for a placeholder SKU when the line has no id
    sku: str | None
    quantity: int
    requires_shipping: bool
    name: str = ""
    external_line_id: str | None = None
    grams: int | None = None
    unit_price: Decimal | None = None
    price_field: str = "price"


NO_SKU_PREFIX = "NOSKU-"


def lines(raw_lines: list[RawLine], field: str) -> tuple[Line, ...]:
    """The order's lines. Shippable lines need a quantity of at least one; one without a
    usable SKU is kept under ``NOSKU-<id>``, a name no catalog holds, so the paid order is
    stored and held for a person instead of refused. Lines that are not shipped (gift cards,
    downloads) are kept, under ``LINE-<id>`` when they have no usable SKU."""
    if len(raw_lines) > MAX_LINES:
        raise MalformedPayload(field, f"more than {MAX_LINES} lines")
    built = tuple(line for raw in raw_lines if (line := _line(raw)) is not None)
    if not built:
        raise MalformedPayload(field, "no lines")
    return built


def _line(raw: RawLine) -> Line | None:
    sku = text(raw.sku)
    if raw.quantity > MAX_QUANTITY:
        raise MalformedPayload(f"{raw.field}.quantity", f"more than {MAX_QUANTITY}")
    if raw.requires_shipping:
        if raw.quantity < 1:
            raise MalformedPayload(f"{raw.field}.quantity", "must be at least 1")
        if not is_valid_sku(sku):
            # A paid order is not refused for a catalog mistake: it is held for a person.
            sku = _placeholder(NO_SKU_PREFIX, raw)
    elif raw.quantity < 1:
        return None  # nothing to record: no stock, no parcel, no money
    elif not is_valid_sku(sku):
        # Line.sku must be stockable-looking even where nothing is stocked.
        sku = _placeholder("LINE-", raw)
    grams = raw.grams or 0
    if not 0 <= grams <= _MAX_GRAMS:
        raise MalformedPayload(f"{raw.field}.grams", f"must be from 0 to {_MAX_GRAMS}")
    return Line(
        sku=sku,
        quantity=raw.quantity,
        name=raw.name,
        external_line_id=raw.external_line_id,
        requires_shipping=raw.requires_shipping,
        grams=grams,
        unit_price=money(raw.unit_price, f"{raw.field}.{raw.price_field}") or Decimal(0),
    )


def _placeholder(prefix: str, raw: RawLine) -> str:
    sku = f"{prefix}{raw.external_line_id}" if raw.external_line_id else ""
    return sku if is_valid_sku(sku) else f"{prefix}{raw.position}"


def first(items: list[T] | None) -> T | None:
    """The first element of a platform array, or None when it is absent or empty."""
    return items[0] if items else None
