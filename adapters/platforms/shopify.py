"""Shopify order webhooks (topics ``orders/paid``, ``orders/create``, ``orders/updated``,
``orders/cancelled``) parsed into a :data:`~adapters.platforms.intake.Decision`. Pure:
bytes in, decision out.

The body is Shopify's Order object of the REST Admin API (shopify.dev, "Order" resource;
its properties and documented example responses are also generated into Shopify's
shopify-api-js, ``rest/admin/2024-01/order.ts``), as in the order topics' sample payloads
of the "Webhooks" reference. Only these fields are read; every other field is skipped:

- order: ``id`` (integer), ``name`` ("#1001"), ``financial_status``, ``processed_at``
  (falling back to ``created_at``), ``cancelled_at``, ``cancel_reason``, ``currency``,
  ``total_price`` (decimal string), ``email``, ``phone`` (the number for SMS notifications),
  ``customer_locale``, ``note``;
- ``customer``: ``email``, ``phone``, ``first_name``, ``last_name``,
  ``sms_marketing_consent.state`` (``subscribed`` counts as consent; Shopify's
  CustomerSmsMarketingState also has not_subscribed, pending, unsubscribed, redacted),
  ``email_marketing_consent.state`` (the same for email; where absent, the order's
  ``buyer_accepts_marketing``);
- ``shipping_address``: ``name``, ``first_name``, ``last_name``, ``company``, ``address1``,
  ``address2``, ``city``, ``province_code``, ``zip``, ``country_code``, ``phone``;
- ``line_items[]``: ``id``, ``sku``, ``quantity`` (``current_quantity`` when present: a
  line removed by an edit has 0 and is left out), ``requires_shipping``, ``grams``,
  ``price`` (decimal string), ``name`` (falling back to ``title``);
- ``shipping_lines[0]``: ``title`` (falling back to ``code``).

Any of them may be ``null`` in Shopify's documentation, so all but ``id`` are optional here.
The topic comes from the ``X-Shopify-Topic`` header ("About webhooks"). Duplicates are
recognised later, by the orderd order id (the same for every delivery of one order) and by
``X-Shopify-Event-Id`` (shopify.dev, "Ignore duplicate webhooks").
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import Struct

from actors.order.types import Address, Customer, NormalizedOrder
from adapters.platforms.intake import (
    Cancelled,
    Changed,
    Decision,
    Ignored,
    Paid,
    order_id_for,
)
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

TOPIC_HEADER = "X-Shopify-Topic"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"

PAID = "orders/paid"
CREATED = "orders/create"
CANCELLED = "orders/cancelled"
UPDATED = "orders/updated"


class _SmsConsent(Struct, kw_only=True):
    state: str | None = None


class _Customer(Struct, kw_only=True):
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    sms_marketing_consent: _SmsConsent | None = None
    email_marketing_consent: _SmsConsent | None = None


class _Address(Struct, kw_only=True):
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province_code: str | None = None
    zip: str | None = None
    country_code: str | None = None
    phone: str | None = None


class _LineItem(Struct, kw_only=True):
    id: int | None = None
    sku: str | None = None
    quantity: int
    # What is left after edits and removals; absent in older payloads.
    current_quantity: int | None = None
    requires_shipping: bool | None = None
    grams: int | None = None
    price: Decimal | None = None
    name: str | None = None
    title: str | None = None


class _ShippingLine(Struct, kw_only=True):
    title: str | None = None
    code: str | None = None


class _Order(Struct, kw_only=True):
    id: int
    name: str | None = None
    financial_status: str | None = None
    processed_at: datetime | None = None
    created_at: datetime | None = None
    cancelled_at: datetime | None = None
    currency: str | None = None
    total_price: Decimal | None = None
    email: str | None = None
    phone: str | None = None
    customer_locale: str | None = None
    note: str | None = None
    buyer_accepts_marketing: bool | None = None
    customer: _Customer | None = None
    shipping_address: _Address | None = None
    line_items: list[_LineItem] | None = None
    shipping_lines: list[_ShippingLine] | None = None


class _CancelledOrder(Struct, kw_only=True):
    # A cancellation needs only the id: a cancelled order is not refused for its lines.
    id: int
    cancel_reason: str | None = None


_order_decoder = msgspec.json.Decoder(_Order)
_cancelled_decoder = msgspec.json.Decoder(_CancelledOrder)


def parse(body: bytes, topic: str | None) -> Decision:
    """Decide what the Shopify webhook ``body`` delivered under ``topic`` means for orderd.

    ``orders/paid`` is fulfilled; ``orders/create`` only once ``financial_status`` is
    ``paid``; ``orders/updated`` is a change of a known order; ``orders/cancelled``
    cancels. Other topics, unpaid and already cancelled
    orders are ignored. Raises :class:`~adapters.platforms.intake.MalformedPayload`.
    """
    if topic == CANCELLED:
        cancelled = decode(_cancelled_decoder, body)
        reason = "cancelled on Shopify"
        if cancelled.cancel_reason:
            reason += f" (cancel_reason {token(cancelled.cancel_reason)})"
        return Cancelled(
            platform="shopify", external_id=external_id(cancelled.id, "id"), reason=reason
        )
    if topic not in (PAID, CREATED, UPDATED):
        return Ignored(platform="shopify", reason=f"topic {token(topic)} is not an order to ship")
    order = decode(_order_decoder, body)
    order_ref = external_id(order.id, "id")
    if order.cancelled_at is not None:
        return Ignored(platform="shopify", reason="the order is cancelled", external_id=order_ref)
    if topic == UPDATED:
        # Sent for every change (a fulfillment orderd made, a tag): the order compares.
        return Changed(_normalized(order, order_ref))
    if topic == CREATED and order.financial_status != "paid":
        return Ignored(
            platform="shopify",
            reason=f"financial_status is {token(order.financial_status)}, not 'paid'",
            external_id=order_ref,
        )
    return Paid(_normalized(order, order_ref))


def _normalized(order: _Order, order_ref: str) -> NormalizedOrder:
    return NormalizedOrder(
        id=order_id_for("shopify", order_ref),
        platform="shopify",
        external_id=order_ref,
        name=optional_text(order.name),
        paid_at=utc_time(order.processed_at, "processed_at")
        or utc_time(order.created_at, "created_at"),
        currency=currency_code(order.currency, "currency"),
        customer=_customer(order),
        shipping_address=_address(order.shipping_address),
        lines=lines(
            [
                RawLine(
                    field=f"line_items[{index}]",
                    position=index + 1,
                    sku=item.sku,
                    quantity=_quantity(item),
                    # Unknown means shipped: a parcel too many is caught, one too few is not.
                    requires_shipping=item.requires_shipping is not False,
                    name=text(item.name) or text(item.title),
                    external_line_id=None if item.id is None else str(item.id),
                    grams=item.grams,
                    unit_price=item.price,
                )
                for index, item in enumerate(order.line_items or ())
                if _quantity(item) > 0 or item.quantity <= 0  # removed lines are not shipped
            ],
            "line_items",
        ),
        total=money(order.total_price, "total_price"),
        shipping_service=_service(first(order.shipping_lines)),
        note=optional_text(order.note),
    )


def _service(shipping_line: _ShippingLine | None) -> str | None:
    if shipping_line is None:
        return None
    return optional_text(shipping_line.title) or optional_text(shipping_line.code)


def _customer(order: _Order) -> Customer:
    customer = order.customer or _Customer()
    address = order.shipping_address or _Address()
    consent = customer.sms_marketing_consent
    email_consent = customer.email_marketing_consent
    if email_consent is not None and email_consent.state is not None:
        accepts_marketing = email_consent.state == "subscribed"
    else:  # older payloads: the checkout's box
        accepts_marketing = order.buyer_accepts_marketing is True
    return Customer(
        email=optional_text(order.email) or optional_text(customer.email),
        phone=optional_text(order.phone) or optional_text(customer.phone),
        first_name=text(customer.first_name) or text(address.first_name),
        last_name=text(customer.last_name) or text(address.last_name),
        accepts_sms=consent is not None and consent.state == "subscribed",
        accepts_marketing=accepts_marketing,
        locale=optional_text(order.customer_locale),
    )


def _address(address: _Address | None) -> Address | None:
    if address is None:
        return None  # digital-only orders have nowhere to ship
    name = text(address.name) or " ".join(
        part for part in (text(address.first_name), text(address.last_name)) if part
    )
    return Address(
        name=name,
        company=text(address.company),
        line1=text(address.address1),
        line2=text(address.address2),
        city=text(address.city),
        region=text(address.province_code),
        postal_code=text(address.zip),
        country=country_code(address.country_code, "shipping_address.country_code"),
        phone=optional_text(address.phone),
    )


def _quantity(item: _LineItem) -> int:
    """Units still on the line: ``current_quantity`` where Shopify sends it."""
    return item.quantity if item.current_quantity is None else item.current_quantity
