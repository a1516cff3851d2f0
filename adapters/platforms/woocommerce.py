"""WooCommerce order webhooks (topics ``order.created`` and ``order.updated``) parsed into
a :data:`~adapters.platforms.intake.Decision`. Pure: bytes in, decision out.

WooCommerce delivers the order "exactly the same as if requested via the REST API" (REST
API docs, "Webhooks - Delivery/payload"), i.e. the v3 Order object ("Orders - Order
properties"). Only these fields are read; every other field is skipped unread:

- order: ``id`` (integer), ``number`` (string), ``status`` (pending, processing, on-hold,
  completed, cancelled, refunded, failed, trash), ``currency``, ``total`` (decimal string),
  ``date_paid_gmt`` (falling back to ``date_created_gmt``; GMT, written without an offset),
  ``customer_note``;
- ``billing``: ``email``, ``phone``, ``first_name``, ``last_name``;
- ``shipping``: ``first_name``, ``last_name``, ``company``, ``address_1``, ``address_2``,
  ``city``, ``state``, ``postcode``, ``country``, and ``phone`` where the store sends it
  (it is not in the documented property table);
- ``line_items[]``: ``id``, ``name``, ``sku``, ``quantity``, ``price`` (documented as a
  string, a number in the documented examples: both are read exactly), ``total``;
- ``shipping_lines[0]``: ``method_title`` (falling back to ``method_id``).

``processing`` is WooCommerce's "paid, awaiting fulfilment" and is the only status that is
fulfilled; ``cancelled`` cancels; every other status is ignored. The order object does not
say whether a product is virtual or downloadable, so every line is taken as shipped.
The topic comes from the ``X-WC-Webhook-Topic`` header.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import Struct

from actors.order.types import Address, Customer, NormalizedOrder
from adapters.platforms.intake import Cancelled, Decision, Ignored, Paid, order_id_for
from adapters.platforms.normalize import (
    RawLine,
    country_code,
    currency_code,
    decode,
    external_id,
    first,
    lines,
    money,
    optional_text,
    text,
    token,
    utc_time,
)

TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_ID_HEADER = "X-WC-Webhook-Delivery-ID"

ORDER_TOPICS = frozenset({"order.created", "order.updated"})

# WC_Webhook::deliver_ping() posts this form body, unsigned, when a webhook is saved.
_PING = re.compile(rb"webhook_id=[0-9]{1,20}")


class _Billing(Struct, kw_only=True):
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class _Shipping(Struct, kw_only=True):
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    postcode: str | None = None
    country: str | None = None
    phone: str | None = None


class _LineItem(Struct, kw_only=True):
    id: int | None = None
    name: str | None = None
    sku: str | None = None
    quantity: int
    price: Decimal | None = None
    total: Decimal | None = None


class _ShippingLine(Struct, kw_only=True):
    method_title: str | None = None
    method_id: str | None = None


class _Order(Struct, kw_only=True):
    id: int
    number: str | None = None
    status: str | None = None
    currency: str | None = None
    total: Decimal | None = None
    date_paid_gmt: datetime | None = None
    date_created_gmt: datetime | None = None
    customer_note: str | None = None
    billing: _Billing | None = None
    shipping: _Shipping | None = None
    line_items: list[_LineItem] | None = None
    shipping_lines: list[_ShippingLine] | None = None


_order_decoder = msgspec.json.Decoder(_Order)


def is_ping(body: bytes) -> bool:
    """True for the unsigned ``webhook_id=<n>`` ping WooCommerce sends when a webhook is
    saved; it expects a 200 and carries no order."""
    return _PING.fullmatch(body) is not None


def parse(body: bytes, topic: str | None) -> Decision:
    """Decide what the WooCommerce webhook ``body`` delivered under ``topic`` means for orderd.

    An order in ``processing`` is fulfilled, one in ``cancelled`` cancels, any other status
    and any other topic is ignored. Raises :class:`~adapters.platforms.intake.MalformedPayload`.
    """
    if topic not in ORDER_TOPICS:
        return Ignored(
            platform="woocommerce", reason=f"topic {token(topic)} is not an order to ship"
        )
    order = decode(_order_decoder, body)
    order_ref = external_id(order.id, "id")
    if order.status == "cancelled":
        return Cancelled(
            platform="woocommerce", external_id=order_ref, reason="cancelled in WooCommerce"
        )
    if order.status != "processing":
        return Ignored(
            platform="woocommerce",
            reason=f"status is {token(order.status)}; only 'processing' (paid) is shipped",
            external_id=order_ref,
        )
    return Paid(_normalized(order, order_ref))


def _normalized(order: _Order, order_ref: str) -> NormalizedOrder:
    billing = order.billing or _Billing()
    return NormalizedOrder(
        id=order_id_for("woocommerce", order_ref),
        platform="woocommerce",
        external_id=order_ref,
        name=optional_text(order.number),
        paid_at=utc_time(order.date_paid_gmt, "date_paid_gmt", naive_is_utc=True)
        or utc_time(order.date_created_gmt, "date_created_gmt", naive_is_utc=True),
        currency=currency_code(order.currency, "currency"),
        customer=Customer(
            email=optional_text(billing.email),
            phone=optional_text(billing.phone),
            first_name=text(billing.first_name),
            last_name=text(billing.last_name),
        ),
        shipping_address=_address(order.shipping),
        lines=lines(
            [_raw_line(index, item) for index, item in enumerate(order.line_items or ())],
            "line_items",
        ),
        total=money(order.total, "total"),
        shipping_service=_service(first(order.shipping_lines)),
        note=optional_text(order.customer_note),
    )


def _raw_line(index: int, item: _LineItem) -> RawLine:
    unit_price = item.price
    if unit_price is None and item.total is not None and item.quantity > 0:
        unit_price = item.total / item.quantity
    return RawLine(
        field=f"line_items[{index}]",
        position=index + 1,
        sku=item.sku,
        quantity=item.quantity,
        requires_shipping=True,
        # Names arrive HTML-escaped ("Ship Your Idea &ndash; Color: Black" in the docs).
        name=html.unescape(text(item.name)),
        external_line_id=None if item.id is None else str(item.id),
        unit_price=unit_price,
    )


def _service(shipping_line: _ShippingLine | None) -> str | None:
    if shipping_line is None:
        return None
    return optional_text(shipping_line.method_title) or optional_text(shipping_line.method_id)


def _address(shipping: _Shipping | None) -> Address | None:
    if shipping is None:
        return None
    fields = (shipping.address_1, shipping.address_2, shipping.city, shipping.postcode)
    if not text(shipping.country) and not any(text(value) for value in fields):
        return None  # no address given: the object is there, with every field empty
    name = " ".join(part for part in (text(shipping.first_name), text(shipping.last_name)) if part)
    return Address(
        name=name,
        company=text(shipping.company),
        line1=text(shipping.address_1),
        line2=text(shipping.address_2),
        city=text(shipping.city),
        region=text(shipping.state),
        postal_code=text(shipping.postcode),
        country=country_code(shipping.country, "shipping.country"),
        phone=optional_text(shipping.phone),
    )
