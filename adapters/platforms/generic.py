"""orderd's own order JSON, for shops and systems without a platform adapter, parsed into
a :data:`~adapters.platforms.intake.Decision`. Pure: bytes in, decision out.

It is POSTed to ``/webhooks/orders``, signed with ``X-Orderd-Signature: sha256=<hex>``, and
mirrors :class:`~actors.order.types.NormalizedOrder`::

    {
      "id": "A-1001",                      required; 1-64 printable characters, no spaces
      "status": "paid",                    required; "paid" is shipped, "cancelled" cancels,
                                           anything else is acknowledged and ignored
      "name": "#1001",                     the order's name as the shop shows it
      "paid_at": "2026-11-26T09:30:00Z",   RFC 3339 with a UTC offset
      "currency": "EUR",                   ISO 4217; required when paid
      "total": "50.00",                    decimal string
      "customer": {"email", "phone", "first_name", "last_name",
                   "accepts_sms": false, "accepts_marketing": false,
                   "locale"},
      "shipping_address": {"name", "company", "line1", "line2", "city", "region",
                           "postal_code", "country" (ISO 3166-1 alpha-2), "phone"},
      "lines": [                           1-1000 lines; required when paid
        {"sku": "MUG-BLK", "quantity": 2, "requires_shipping": true, "grams": 340,
         "unit_price": "12.50", "name": "Mug, black", "id": "line-1"}
      ],
      "shipping_service": "Standard",
      "note": "Leave at the door",
      "backorder_policy": "wait_all" | "ship_available" | "cancel_after_days",
      "cancel_reason": "customer asked"    read when status is "cancelled"
    }

Everything but ``id`` and ``status`` is optional; unknown fields are ignored. A shipped
line (``requires_shipping``, the default) needs a valid SKU; a line that is not shipped
may leave it out and is then recorded as ``LINE-<id>``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import Struct

from actors.order.types import Address, BackorderPolicy, Customer, NormalizedOrder
from adapters.platforms.intake import (
    Cancelled,
    Decision,
    Ignored,
    MalformedPayload,
    Paid,
    order_id_for,
)
from adapters.platforms.normalize import (
    RawLine,
    country_code,
    currency_code,
    decode,
    lines,
    money,
    optional_text,
    text,
    token,
    utc_time,
)

_POLICIES: dict[str, BackorderPolicy] = {
    "wait_all": "wait_all",
    "ship_available": "ship_available",
    "cancel_after_days": "cancel_after_days",
}
_EXTERNAL_ID = re.compile(r"[!-~]{1,64}")
_MAX_REASON = 200


class GenericCustomer(Struct, kw_only=True, omit_defaults=True):
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    accepts_sms: bool = False
    accepts_marketing: bool = False
    locale: str | None = None


class GenericAddress(Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    company: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None


class GenericLine(Struct, kw_only=True, omit_defaults=True):
    sku: str | None = None
    quantity: int
    requires_shipping: bool = True
    grams: int = 0
    unit_price: Decimal | None = None
    name: str | None = None
    id: str | None = None


class GenericOrder(Struct, kw_only=True, omit_defaults=True):
    """orderd's generic order JSON, as described in this module's docstring."""

    id: str
    status: str
    name: str | None = None
    paid_at: datetime | None = None
    currency: str | None = None
    total: Decimal | None = None
    customer: GenericCustomer | None = None
    shipping_address: GenericAddress | None = None
    lines: list[GenericLine] | None = None
    shipping_service: str | None = None
    note: str | None = None
    backorder_policy: str | None = None
    cancel_reason: str | None = None


_decoder = msgspec.json.Decoder(GenericOrder)


def parse(body: bytes) -> Decision:
    """Decide what a generic order ``body`` means for orderd: ``paid`` is shipped,
    ``cancelled`` cancels, other statuses are ignored.
    Raises :class:`~adapters.platforms.intake.MalformedPayload`."""
    order = decode(_decoder, body)
    if not _EXTERNAL_ID.fullmatch(order.id):
        raise MalformedPayload("id", "must be 1-64 printable characters without spaces")
    if order.status == "cancelled":
        return Cancelled(platform="generic", external_id=order.id, reason=_reason(order))
    if order.status != "paid":
        return Ignored(
            platform="generic",
            reason=f"status is {token(order.status)}; only 'paid' is shipped",
            external_id=order.id,
        )
    return Paid(_normalized(order))


def _reason(order: GenericOrder) -> str:
    reason = text(order.cancel_reason)
    if reason and len(reason) <= _MAX_REASON and reason.isprintable():
        return reason
    return "cancelled by the sender"


def _normalized(order: GenericOrder) -> NormalizedOrder:
    customer = order.customer or GenericCustomer()
    return NormalizedOrder(
        id=order_id_for("generic", order.id),
        platform="generic",
        external_id=order.id,
        name=optional_text(order.name),
        paid_at=utc_time(order.paid_at, "paid_at"),
        currency=currency_code(order.currency, "currency"),
        customer=Customer(
            email=optional_text(customer.email),
            phone=optional_text(customer.phone),
            first_name=text(customer.first_name),
            last_name=text(customer.last_name),
            accepts_sms=customer.accepts_sms,
            accepts_marketing=customer.accepts_marketing,
            locale=optional_text(customer.locale),
        ),
        shipping_address=_address(order.shipping_address),
        lines=lines(
            [
                RawLine(
                    field=f"lines[{index}]",
                    position=index + 1,
                    sku=line.sku,
                    quantity=line.quantity,
                    requires_shipping=line.requires_shipping,
                    name=text(line.name),
                    external_line_id=optional_text(line.id),
                    grams=line.grams,
                    unit_price=line.unit_price,
                    price_field="unit_price",
                )
                for index, line in enumerate(order.lines or ())
            ],
            "lines",
        ),
        total=money(order.total, "total"),
        shipping_service=optional_text(order.shipping_service),
        note=optional_text(order.note),
        backorder_policy=_backorder_policy(order.backorder_policy),
    )


def _address(address: GenericAddress | None) -> Address | None:
    if address is None:
        return None
    return Address(
        name=text(address.name),
        company=text(address.company),
        line1=text(address.line1),
        line2=text(address.line2),
        city=text(address.city),
        region=text(address.region),
        postal_code=text(address.postal_code),
        country=country_code(address.country, "shipping_address.country"),
        phone=optional_text(address.phone),
    )


def _backorder_policy(value: str | None) -> BackorderPolicy | None:
    if value is None:
        return None
    policy = _POLICIES.get(value)
    if policy is None:
        raise MalformedPayload("backorder_policy", "must be one of " + ", ".join(_POLICIES))
    return policy
