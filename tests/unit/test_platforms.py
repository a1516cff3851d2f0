from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.errors import OrderdError
from actors.order.types import SKU_PATTERN, Address, Customer, Line, NormalizedOrder
from adapters.platforms import (
    Cancelled,
    Changed,
    Decision,
    Ignored,
    MalformedPayload,
    Paid,
    generic,
    order_id_for,
    shopify,
    woocommerce,
)
from adapters.platforms.generic import GenericAddress, GenericCustomer, GenericLine, GenericOrder
from adapters.platforms.signatures import (
    sign_generic,
    sign_shopify,
    sign_woocommerce,
    verify_generic,
    verify_shopify,
    verify_woocommerce,
)

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def payload_data(name: str) -> Any:
    return json.loads(payload(name))


def as_body(data: Any) -> bytes:
    return json.dumps(data).encode()


def paid_order(decision: Decision) -> NormalizedOrder:
    assert isinstance(decision, Paid)
    # The parsers build Structs without running their constraints: decoding the encoded
    # order runs them, so every order a parser returns would also survive the stream.
    checked = msgspec.json.decode(msgspec.json.encode(decision.order), type=NormalizedOrder)
    assert checked == decision.order
    return decision.order


# ---------------------------------------------------------------------------------------
# Signatures

# RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HEX = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

BODY = payload("shopify_orders_paid.json")
SECRET = "shpss_current_0123456789abcdef"
PREVIOUS = "shpss_previous_fedcba9876543210"


def base64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def hex_hmac(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Scheme:
    name: str
    sign: Callable[[bytes, str], str]
    verify: Callable[[bytes, str | None, list[str]], bool]
    expected: Callable[[str, bytes], str]


SCHEMES = [
    Scheme("shopify", sign_shopify, verify_shopify, base64_hmac),
    Scheme("woocommerce", sign_woocommerce, verify_woocommerce, base64_hmac),
    Scheme("generic", sign_generic, verify_generic, hex_hmac),
]
schemes = pytest.mark.parametrize("scheme", SCHEMES, ids=[s.name for s in SCHEMES])


def test_signing_matches_the_rfc_4231_vector() -> None:
    digest = bytes.fromhex(RFC4231_HEX)
    assert sign_shopify(RFC4231_DATA, RFC4231_KEY) == base64.b64encode(digest).decode()
    assert sign_woocommerce(RFC4231_DATA, RFC4231_KEY) == base64.b64encode(digest).decode()
    assert sign_generic(RFC4231_DATA, RFC4231_KEY) == "sha256=" + RFC4231_HEX


@schemes
def test_signing_matches_an_independent_hmac(scheme: Scheme) -> None:
    assert scheme.sign(BODY, SECRET) == scheme.expected(SECRET, BODY)


@schemes
def test_a_header_signed_with_the_current_secret_is_verified(scheme: Scheme) -> None:
    assert scheme.verify(BODY, scheme.expected(SECRET, BODY), [SECRET, PREVIOUS]) is True


@schemes
def test_a_header_signed_with_a_previous_secret_is_still_verified(scheme: Scheme) -> None:
    assert scheme.verify(BODY, scheme.expected(PREVIOUS, BODY), [SECRET, PREVIOUS]) is True


@schemes
def test_a_header_signed_with_another_secret_is_refused(scheme: Scheme) -> None:
    assert scheme.verify(BODY, scheme.expected("guessed", BODY), [SECRET, PREVIOUS]) is False


@schemes
def test_a_changed_body_is_refused(scheme: Scheme) -> None:
    header = scheme.expected(SECRET, BODY)
    assert scheme.verify(BODY.replace(b"284.97", b"0.01"), header, [SECRET]) is False


@schemes
def test_without_configured_secrets_nothing_is_verified(scheme: Scheme) -> None:
    assert scheme.verify(BODY, scheme.expected("", BODY), []) is False
    # An empty secret is a blank setting, not a key anyone could sign with.
    assert scheme.verify(BODY, scheme.expected("", BODY), [""]) is False


@schemes
def test_one_string_instead_of_a_list_of_secrets_is_a_programming_error(scheme: Scheme) -> None:
    verify: Callable[..., bool] = scheme.verify
    with pytest.raises(TypeError, match="sequence of secrets"):
        verify(BODY, scheme.expected(SECRET, BODY), SECRET)


def garbled_headers(scheme: Scheme) -> list[str | None]:
    good = scheme.expected(SECRET, BODY)
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    common: list[str | None] = [None, "", "   ", good[:-4], good + "AA==", "é" * 44]
    if scheme.name == "generic":
        return [
            *common,
            good.removeprefix("sha256="),  # no prefix
            "sha1=" + good.removeprefix("sha256="),
            good.upper(),
            "sha256=" + good.removeprefix("sha256=").upper(),
            "sha256=" + good.removeprefix("sha256=")[:-2],
            "sha256=" + base64.b64encode(digest).decode(),
        ]
    return [
        *common,
        digest.hex(),  # hex where base64 is expected
        "!!!not base64!!!",
        base64.b64encode(digest[:31]).decode(),  # decodes, but is not a SHA-256 digest
        "sha256=" + good,
    ]


@pytest.mark.parametrize(
    ("scheme", "header"),
    [(scheme, header) for scheme in SCHEMES for header in garbled_headers(scheme)],
    ids=[f"{scheme.name}-{i}" for scheme in SCHEMES for i in range(len(garbled_headers(scheme)))],
)
def test_a_missing_or_garbled_header_is_not_verified(scheme: Scheme, header: str | None) -> None:
    assert scheme.verify(BODY, header, [SECRET, PREVIOUS]) is False


def test_surrounding_blanks_in_a_header_are_tolerated() -> None:
    assert verify_shopify(BODY, f" {base64_hmac(SECRET, BODY)}\t", [SECRET]) is True
    assert verify_generic(BODY, f" {hex_hmac(SECRET, BODY)} ", [SECRET]) is True


# ---------------------------------------------------------------------------------------
# Order ids


def test_the_order_id_is_derived_from_platform_and_external_id() -> None:
    order_id = order_id_for("shopify", "820982911946154508")
    assert re.fullmatch(r"ord_[a-z2-7]{20}", order_id)
    assert order_id == order_id_for("shopify", "820982911946154508")
    assert order_id != order_id_for("woocommerce", "820982911946154508")
    assert order_id != order_id_for("shopify", "820982911946154509")


def test_a_redelivered_webhook_maps_to_the_same_order() -> None:
    first = paid_order(shopify.parse(payload("shopify_orders_paid.json"), "orders/paid"))
    again = paid_order(shopify.parse(payload("shopify_orders_paid.json"), "orders/create"))
    assert first.id == again.id == order_id_for("shopify", "820982911946154508")


# ---------------------------------------------------------------------------------------
# Shopify


def test_a_shopify_paid_order_is_read_field_by_field() -> None:
    order = paid_order(shopify.parse(payload("shopify_orders_paid.json"), "orders/paid"))
    assert order.id == order_id_for("shopify", "820982911946154508")
    assert order.platform == "shopify"
    assert order.external_id == "820982911946154508"
    assert order.name == "#9999"
    assert order.paid_at == datetime(2022, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert order.currency == "USD"
    assert order.total == Decimal("284.97")
    assert order.shipping_service == "Generic Shipping"
    assert order.note == "Leave the parcel at the back door"
    assert order.backorder_policy is None
    assert order.customer == Customer(
        email="jon@example.com",
        phone="+16135550135",
        first_name="John",
        last_name="Smith",
        accepts_sms=True,
        locale="en",
    )
    assert order.shipping_address == Address(
        name="Steve Shipper",
        company="Shipping Company",
        line1="123 Shipping Street",
        line2="",
        city="Shippington",
        region="KY",
        postal_code="40003",
        country="US",
        phone="555-555-SHIP",
    )
    assert order.lines == (
        Line(
            sku="SKU2006-001",
            quantity=1,
            name="Aviator sunglasses",
            external_line_id="487817672276298554",
            requires_shipping=True,
            grams=100,
            unit_price=Decimal("89.99"),
        ),
        Line(
            sku="SKU2006-020",
            quantity=2,
            name="Mid-century lounger",
            external_line_id="976318377106520349",
            requires_shipping=True,
            grams=500,
            unit_price=Decimal("79.99"),
        ),
        Line(
            sku="LINE-315789986012684393",
            quantity=1,
            name="Gift card - $25",
            external_line_id="315789986012684393",
            requires_shipping=False,
            grams=0,
            unit_price=Decimal("25.00"),
        ),
    )


def test_a_shopify_gift_card_is_kept_but_not_shippable() -> None:
    order = paid_order(shopify.parse(payload("shopify_orders_paid.json"), "orders/paid"))
    assert [line.sku for line in order.shippable_lines()] == ["SKU2006-001", "SKU2006-020"]


def test_shopify_sms_consent_is_only_a_subscribed_state() -> None:
    data = payload_data("shopify_orders_paid.json")
    for state, accepts in [("subscribed", True), ("pending", False), ("unsubscribed", False)]:
        data["customer"]["sms_marketing_consent"]["state"] = state
        order = paid_order(shopify.parse(as_body(data), "orders/paid"))
        assert order.customer.accepts_sms is accepts
    data["customer"]["sms_marketing_consent"] = None
    assert paid_order(shopify.parse(as_body(data), "orders/paid")).customer.accepts_sms is False


def test_shopify_marketing_consent_is_the_customers_email_consent_else_the_checkout_box() -> None:
    data = payload_data("shopify_orders_paid.json")
    assert data["buyer_accepts_marketing"] is True
    for state, accepts in [("subscribed", True), ("not_subscribed", False), ("pending", False)]:
        data["customer"]["email_marketing_consent"]["state"] = state
        order = paid_order(shopify.parse(as_body(data), "orders/paid"))
        assert order.customer.accepts_marketing is accepts
    data["customer"]["email_marketing_consent"] = None
    assert paid_order(shopify.parse(as_body(data), "orders/paid")).customer.accepts_marketing
    data["buyer_accepts_marketing"] = False
    assert not paid_order(shopify.parse(as_body(data), "orders/paid")).customer.accepts_marketing


def test_shopify_contact_falls_back_to_the_customer_and_the_shipping_address() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["email"] = None
    data["phone"] = None
    data["customer_locale"] = None
    customer = paid_order(shopify.parse(as_body(data), "orders/paid")).customer
    assert (customer.email, customer.phone, customer.locale) == (
        "john@example.com",
        "+16135550100",
        None,
    )
    data["customer"] = None
    customer = paid_order(shopify.parse(as_body(data), "orders/paid")).customer
    # The checkout's marketing box still speaks where no customer record does.
    assert customer == Customer(first_name="Steve", last_name="Shipper", accepts_marketing=True)


def test_a_shopify_order_without_shipping_address_has_none() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["shipping_address"] = None
    data["shipping_lines"] = []
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert order.shipping_address is None
    assert order.shipping_service is None


def test_shopify_paid_at_falls_back_to_created_at() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["processed_at"] = None
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert order.paid_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)


def test_a_shopify_created_order_is_fulfilled_once_paid() -> None:
    decision = shopify.parse(payload("shopify_orders_paid.json"), "orders/create")
    assert paid_order(decision).external_id == "820982911946154508"


@pytest.mark.parametrize(
    ("status", "shown"),
    [("pending", "'pending'"), ("authorized", "'authorized'"), (None, "(none)")],
)
def test_a_shopify_created_order_not_yet_paid_is_ignored(status: str | None, shown: str) -> None:
    data = payload_data("shopify_orders_paid.json")
    data["financial_status"] = status
    decision = shopify.parse(as_body(data), "orders/create")
    assert decision == Ignored(
        platform="shopify",
        reason=f"financial_status is {shown}, not 'paid'",
        external_id="820982911946154508",
    )


def test_a_shopify_cancellation_names_the_order() -> None:
    decision = shopify.parse(payload("shopify_orders_cancelled.json"), "orders/cancelled")
    assert decision == Cancelled(
        platform="shopify",
        external_id="820982911946154508",
        reason="cancelled on Shopify (cancel_reason 'customer')",
    )
    assert isinstance(decision, Cancelled)
    assert decision.order_id == order_id_for("shopify", "820982911946154508")


def test_a_shopify_order_update_is_the_order_as_it_stands_now() -> None:
    data = json.loads(payload("shopify_orders_paid.json"))
    data["shipping_address"]["address1"] = "9 Other Street"
    data["line_items"][1]["quantity"] = 3
    decision = shopify.parse(as_body(data), "orders/updated")
    assert isinstance(decision, Changed)
    assert decision.order.id == order_id_for("shopify", "820982911946154508")
    assert decision.order.shipping_address is not None
    assert decision.order.shipping_address.line1 == "9 Other Street"
    assert [(line.sku, line.quantity) for line in decision.order.shippable_lines()] == [
        ("SKU2006-001", 1), ("SKU2006-020", 3),
    ]  # fmt: skip


def test_an_update_of_a_cancelled_shopify_order_is_ignored() -> None:
    decision = shopify.parse(payload("shopify_orders_cancelled.json"), "orders/updated")
    assert isinstance(decision, Ignored)
    assert decision.reason == "the order is cancelled"


def test_a_shopify_cancellation_is_accepted_whatever_its_lines() -> None:
    # The cancelled fixture's line has an empty SKU: that blocks shipping, not cancelling.
    decision = shopify.parse(payload("shopify_orders_cancelled.json"), "orders/cancelled")
    assert isinstance(decision, Cancelled)


def test_a_cancelled_shopify_order_delivered_as_paid_is_ignored() -> None:
    decision = shopify.parse(payload("shopify_orders_cancelled.json"), "orders/paid")
    assert decision == Ignored(
        platform="shopify", reason="the order is cancelled", external_id="820982911946154508"
    )


@pytest.mark.parametrize("topic", ["orders/edited", "orders/fulfilled", "products/create", None])
def test_other_shopify_topics_are_ignored_unread(topic: str | None) -> None:
    decision = shopify.parse(b"not even json", topic)
    assert isinstance(decision, Ignored)
    assert decision.reason.startswith("topic ")


def test_an_odd_topic_is_not_echoed() -> None:
    decision = shopify.parse(b"{}", "orders/paid\r\nX-Injected: yes")
    assert decision == Ignored(
        platform="shopify", reason="topic (unrecognised) is not an order to ship"
    )


def test_a_shopify_line_that_is_not_shipped_and_has_no_quantity_is_dropped() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["line_items"][2]["quantity"] = 0
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert [line.sku for line in order.lines] == ["SKU2006-001", "SKU2006-020"]


def test_a_shopify_line_without_requires_shipping_is_shipped() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["line_items"][0]["requires_shipping"] = None
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert order.lines[0].requires_shipping is True


def test_shopify_skus_and_codes_lose_surrounding_blanks_and_codes_are_upper_cased() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["line_items"][0]["sku"] = " SKU2006-001 "
    data["currency"] = "usd"
    data["shipping_address"]["country_code"] = "us"
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert order.lines[0].sku == "SKU2006-001"
    assert order.currency == "USD"
    assert order.shipping_address is not None
    assert order.shipping_address.country == "US"


# ---------------------------------------------------------------------------------------
# WooCommerce


def test_a_woocommerce_processing_order_is_read_field_by_field() -> None:
    decision = woocommerce.parse(payload("woocommerce_order_processing.json"), "order.updated")
    order = paid_order(decision)
    assert order.id == order_id_for("woocommerce", "727")
    assert order.platform == "woocommerce"
    assert order.external_id == "727"
    assert order.name == "727"
    # date_paid_gmt is GMT written without an offset.
    assert order.paid_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
    assert order.currency == "EUR"
    assert order.total == Decimal("29.35")
    assert order.shipping_service == "Flat Rate"
    assert order.note == "Please ring twice"
    assert order.customer == Customer(
        email="john.doe@example.com",
        phone="(555) 555-5555",
        first_name="John",
        last_name="Doe",
        accepts_sms=False,
    )
    assert order.shipping_address == Address(
        name="John Doe",
        company="",
        line1="969 Market",
        line2="Suite 4",
        city="San Francisco",
        region="CA",
        postal_code="94103",
        country="US",
        phone=None,
    )
    assert order.lines == (
        Line(
            sku="woo-single-1",
            quantity=2,
            name="Woo Single #1",
            external_line_id="315",
            unit_price=Decimal(3),
        ),
        Line(
            sku="Bar3",
            quantity=1,
            name="Ship Your Idea \u2013 Color: Black, Size: M Test",
            external_line_id="316",
            unit_price=Decimal(12),
        ),
    )


def test_woocommerce_lines_are_all_shipped() -> None:
    decision = woocommerce.parse(payload("woocommerce_order_processing.json"), "order.created")
    order = paid_order(decision)
    assert order.shippable_lines() == order.lines


def test_a_woocommerce_price_given_as_a_string_is_read_exactly() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["line_items"][0]["price"] = "2.995"
    order = paid_order(woocommerce.parse(as_body(data), "order.updated"))
    assert order.lines[0].unit_price == Decimal("2.995")


def test_a_woocommerce_line_without_price_takes_its_total_per_unit() -> None:
    data = payload_data("woocommerce_order_processing.json")
    del data["line_items"][0]["price"]
    order = paid_order(woocommerce.parse(as_body(data), "order.updated"))
    assert order.lines[0].unit_price == Decimal(3)


def test_woocommerce_paid_at_falls_back_to_date_created_gmt() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["date_paid_gmt"] = None
    order = paid_order(woocommerce.parse(as_body(data), "order.updated"))
    assert order.paid_at == datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)


def test_a_woocommerce_shipping_phone_is_read_when_the_store_sends_one() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["shipping"]["phone"] = "+1 555 0100"
    order = paid_order(woocommerce.parse(as_body(data), "order.updated"))
    assert order.shipping_address is not None
    assert order.shipping_address.phone == "+1 555 0100"


def test_an_empty_woocommerce_shipping_object_is_no_address() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["shipping"] = {key: "" for key in data["shipping"]}
    order = paid_order(woocommerce.parse(as_body(data), "order.updated"))
    assert order.shipping_address is None


def test_a_woocommerce_cancelled_order_is_a_cancellation() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["status"] = "cancelled"
    decision = woocommerce.parse(as_body(data), "order.updated")
    assert decision == Cancelled(
        platform="woocommerce", external_id="727", reason="cancelled in WooCommerce"
    )


@pytest.mark.parametrize(
    "status", ["pending", "on-hold", "completed", "refunded", "failed", "trash", "checkout-draft"]
)
def test_a_woocommerce_order_not_processing_is_ignored(status: str) -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["status"] = status
    decision = woocommerce.parse(as_body(data), "order.created")
    assert decision == Ignored(
        platform="woocommerce",
        reason=f"status is '{status}'; only 'processing' (paid) is shipped",
        external_id="727",
    )


@pytest.mark.parametrize("topic", ["order.deleted", "product.created", "action.woo", None])
def test_other_woocommerce_topics_are_ignored_unread(topic: str | None) -> None:
    decision = woocommerce.parse(b'{"id": 727}', topic)
    assert isinstance(decision, Ignored)
    assert decision.external_id is None


def test_the_woocommerce_ping_is_recognised() -> None:
    assert woocommerce.is_ping(b"webhook_id=142") is True
    assert woocommerce.is_ping(b"webhook_id=") is False
    assert woocommerce.is_ping(b"webhook_id=142&x=1") is False
    assert woocommerce.is_ping(payload("woocommerce_order_processing.json")) is False


# ---------------------------------------------------------------------------------------
# Generic


def test_a_generic_paid_order_is_read_field_by_field() -> None:
    order = paid_order(generic.parse(payload("generic_order.json")))
    assert order == NormalizedOrder(
        id=order_id_for("generic", "A-1001"),
        platform="generic",
        external_id="A-1001",
        name="#1001",
        paid_at=datetime(2026, 11, 26, 9, 30, tzinfo=UTC),
        currency="EUR",
        customer=Customer(
            email="jon@example.com",
            phone="+31612345678",
            first_name="Jon",
            last_name="Snow",
            accepts_sms=True,
            locale="nl-NL",
        ),
        shipping_address=Address(
            name="Jon Snow",
            company="Night's Watch B.V.",
            line1="Damrak 1",
            line2="3e verdieping",
            city="Amsterdam",
            region="NH",
            postal_code="1012 LG",
            country="NL",
            phone="+31201234567",
        ),
        lines=(
            Line(
                sku="MUG-BLK",
                quantity=2,
                name="Mug, black",
                external_line_id="l-1",
                grams=340,
                unit_price=Decimal("12.50"),
            ),
            Line(
                sku="LINE-l-2",
                quantity=1,
                name="Gift card",
                external_line_id="l-2",
                requires_shipping=False,
                unit_price=Decimal("25.00"),
            ),
        ),
        total=Decimal("54.95"),
        shipping_service="Standard",
        note="Leave at the door",
        backorder_policy="ship_available",
    )


def test_the_smallest_generic_order_is_an_id_a_status_a_currency_and_a_line() -> None:
    body = b'{"id":"7","status":"paid","currency":"EUR","lines":[{"sku":"A","quantity":1}]}'
    order = paid_order(generic.parse(body))
    assert order.customer == Customer()
    assert order.shipping_address is None
    assert order.paid_at is None
    assert order.lines == (Line(sku="A", quantity=1),)


@pytest.mark.parametrize(
    ("line_id", "sku"), [(None, "LINE-2"), ("gift card 1", "LINE-2"), ("g-1", "LINE-g-1")]
)
def test_a_generic_line_not_shipped_without_sku_is_named_after_its_id_or_place(
    line_id: str | None, sku: str
) -> None:
    data = payload_data("generic_order.json")
    data["lines"][1]["id"] = line_id
    order = paid_order(generic.parse(as_body(data)))
    assert order.lines[1].sku == sku
    assert order.lines[1].external_line_id == line_id


def test_a_generic_cancellation_carries_its_reason() -> None:
    body = b'{"id": "A-1001", "status": "cancelled", "cancel_reason": "customer asked"}'
    assert generic.parse(body) == Cancelled(
        platform="generic", external_id="A-1001", reason="customer asked"
    )


def test_a_generic_cancellation_without_a_usable_reason_gets_one() -> None:
    body = as_body({"id": "A-1001", "status": "cancelled", "cancel_reason": "x" * 201})
    decision = generic.parse(body)
    assert isinstance(decision, Cancelled)
    assert decision.reason == "cancelled by the sender"


@pytest.mark.parametrize("status", ["pending", "refunded", ""])
def test_a_generic_order_with_another_status_is_ignored(status: str) -> None:
    data = payload_data("generic_order.json")
    data["status"] = status
    decision = generic.parse(as_body(data))
    assert isinstance(decision, Ignored)
    assert decision.external_id == "A-1001"


# ---------------------------------------------------------------------------------------
# Bad input, per platform


@dataclass(frozen=True)
class Platform:
    name: str
    parse: Callable[[bytes], Decision]
    fixture: str
    lines: str
    price: str
    total: str
    address: str
    country: str


PLATFORMS = [
    Platform(
        "shopify",
        lambda body: shopify.parse(body, "orders/paid"),
        "shopify_orders_paid.json",
        "line_items",
        "price",
        "total_price",
        "shipping_address",
        "country_code",
    ),
    Platform(
        "woocommerce",
        lambda body: woocommerce.parse(body, "order.updated"),
        "woocommerce_order_processing.json",
        "line_items",
        "price",
        "total",
        "shipping",
        "country",
    ),
    Platform(
        "generic",
        generic.parse,
        "generic_order.json",
        "lines",
        "unit_price",
        "total",
        "shipping_address",
        "country",
    ),
]


def truncated(data: Any, p: Platform) -> str:
    data["_body"] = as_body(data)[:60]
    return "body"


def top_level_array(data: Any, p: Platform) -> str:
    data["_body"] = b"[" + as_body(data) + b"]"
    return "body"


def top_level_string(data: Any, p: Platform) -> str:
    data["_body"] = b'"an order"'
    return "body"


def empty_body(data: Any, p: Platform) -> str:
    data["_body"] = b""
    return "body"


def id_of_the_wrong_type(data: Any, p: Platform) -> str:
    data["id"] = True
    return "id"


def missing_id(data: Any, p: Platform) -> str:
    del data["id"]
    return "id"


def quantity_as_text(data: Any, p: Platform) -> str:
    data[p.lines][0]["quantity"] = "2"
    return f"{p.lines}[0].quantity"


def lines_not_a_list(data: Any, p: Platform) -> str:
    data[p.lines] = {"sku": "MUG"}
    return p.lines


def quantity_zero(data: Any, p: Platform) -> str:
    data[p.lines][0]["quantity"] = 0
    return f"{p.lines}[0].quantity"


def quantity_absurd(data: Any, p: Platform) -> str:
    data[p.lines][0]["quantity"] = 10**12
    return f"{p.lines}[0].quantity"


def too_many_lines(data: Any, p: Platform) -> str:
    data[p.lines] = [data[p.lines][0]] * 1001
    return p.lines


def no_lines(data: Any, p: Platform) -> str:
    data[p.lines] = []
    return p.lines


def bad_country(data: Any, p: Platform) -> str:
    data[p.address][p.country] = "Shippington Street"
    return f"{p.address}.{p.country}"


def bad_currency(data: Any, p: Platform) -> str:
    data["currency"] = "Euro"
    return "currency"


def negative_price(data: Any, p: Platform) -> str:
    data[p.lines][0][p.price] = "-1.00"
    return f"{p.lines}[0].{p.price}"


def total_not_a_number(data: Any, p: Platform) -> str:
    data[p.total] = "NaN"
    return p.total


def total_not_decimal(data: Any, p: Platform) -> str:
    data[p.total] = "twelve"
    return p.total


BAD_INPUT = [
    truncated,
    top_level_array,
    top_level_string,
    empty_body,
    id_of_the_wrong_type,
    missing_id,
    quantity_as_text,
    lines_not_a_list,
    quantity_zero,
    quantity_absurd,
    too_many_lines,
    no_lines,
    bad_country,
    bad_currency,
    negative_price,
    total_not_a_number,
    total_not_decimal,
]


@pytest.mark.parametrize(
    ("platform", "spoil"),
    [(platform, spoil) for platform in PLATFORMS for spoil in BAD_INPUT],
    ids=[f"{platform.name}-{spoil.__name__}" for platform in PLATFORMS for spoil in BAD_INPUT],
)
def test_bad_input_is_malformed_and_the_reason_names_the_field(
    platform: Platform, spoil: Callable[[Any, Platform], str]
) -> None:
    data = payload_data(platform.fixture)
    field = spoil(data, platform)
    body = data.pop("_body") if "_body" in data else as_body(data)
    with pytest.raises(MalformedPayload) as caught:
        platform.parse(body)
    assert caught.value.field == field
    assert caught.value.reason.startswith(f"{field}: ")
    # Reasons go back to the sender and into logs: never a value from the payload.
    for personal in ("@", "Street", "Shippington", "Damrak", "Market", "Doe", "{BLACK}"):
        assert personal not in caught.value.reason


def test_a_shopify_line_removed_by_an_edit_is_not_shipped() -> None:
    data = payload_data("shopify_orders_paid.json")
    kept = data["line_items"][1]["sku"]
    data["line_items"][0]["current_quantity"] = 0
    data["line_items"][1]["current_quantity"] = 1
    order = paid_order(shopify.parse(as_body(data), "orders/paid"))
    assert [(line.sku, line.quantity) for line in order.shippable_lines()] == [(kept, 1)]


@pytest.mark.parametrize("sku", ["", "MUG {BLACK}"])
@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_a_shipped_line_without_a_usable_sku_is_kept_for_a_person(
    platform: Platform, sku: str
) -> None:
    data = payload_data(platform.fixture)
    data[platform.lines][0]["sku"] = sku
    result = platform.parse(as_body(data))
    assert isinstance(result, Paid)
    first = result.order.lines[0]
    assert first.sku.startswith("NOSKU-")
    assert first.requires_shipping


def test_a_malformed_payload_is_an_operator_error_with_one_line() -> None:
    with pytest.raises(OrderdError, match=r"^body: not valid JSON"):
        generic.parse(b"{")


def test_a_shopify_order_id_that_is_not_positive_is_malformed() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["id"] = 0
    with pytest.raises(MalformedPayload, match=r"^id: must be a positive"):
        shopify.parse(as_body(data), "orders/paid")


def test_a_shopify_time_without_offset_is_malformed() -> None:
    data = payload_data("shopify_orders_paid.json")
    data["processed_at"] = "2021-12-31T19:00:05"
    with pytest.raises(MalformedPayload, match=r"^processed_at: needs a UTC offset"):
        shopify.parse(as_body(data), "orders/paid")


def test_a_shopify_cancellation_without_id_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match=r"^id: missing"):
        shopify.parse(b'{"cancel_reason": "customer"}', "orders/cancelled")


def test_a_woocommerce_order_with_an_address_but_no_country_is_malformed() -> None:
    data = payload_data("woocommerce_order_processing.json")
    data["shipping"]["country"] = ""
    with pytest.raises(MalformedPayload, match=r"^shipping\.country: "):
        woocommerce.parse(as_body(data), "order.updated")


@pytest.mark.parametrize("external_id", ["", "has space", "x" * 65, "tab\there"])
def test_a_generic_id_must_be_printable_and_short(external_id: str) -> None:
    data = payload_data("generic_order.json")
    data["id"] = external_id
    with pytest.raises(MalformedPayload, match=r"^id: "):
        generic.parse(as_body(data))


def test_a_generic_paid_at_without_offset_is_malformed() -> None:
    data = payload_data("generic_order.json")
    data["paid_at"] = "2026-11-26T10:30:00"
    with pytest.raises(MalformedPayload, match=r"^paid_at: needs a UTC offset"):
        generic.parse(as_body(data))


def test_a_generic_unknown_backorder_policy_is_malformed() -> None:
    data = payload_data("generic_order.json")
    data["backorder_policy"] = "whenever"
    with pytest.raises(MalformedPayload, match=r"^backorder_policy: must be one of wait_all"):
        generic.parse(as_body(data))


def test_a_generic_line_missing_its_quantity_names_the_line() -> None:
    data = payload_data("generic_order.json")
    del data["lines"][1]["quantity"]
    with pytest.raises(MalformedPayload, match=r"^lines\[1\]\.quantity: missing$"):
        generic.parse(as_body(data))


# ---------------------------------------------------------------------------------------
# Generic round trip

# Without NUL: parsing drops it (PostgreSQL cannot store it), so no order holds one.
characters = st.characters(codec="utf-8", exclude_characters="\x00")
stripped = st.text(characters, max_size=12).map(str.strip)
maybe_text = st.none() | stripped.filter(bool)
skus = st.from_regex(SKU_PATTERN, fullmatch=True)
amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))]),
)


@st.composite
def normalized_orders(draw: st.DrawFn) -> NormalizedOrder:
    external_id = draw(st.from_regex(r"[!-~]{1,64}", fullmatch=True))
    address = draw(
        st.none()
        | st.builds(
            Address,
            name=stripped,
            company=stripped,
            line1=stripped,
            line2=stripped,
            city=stripped,
            region=stripped,
            postal_code=stripped,
            country=st.from_regex(r"[A-Z]{2}", fullmatch=True),
            phone=maybe_text,
        )
    )
    line = st.builds(
        Line,
        sku=skus,
        quantity=st.integers(1, 1_000_000),
        name=stripped,
        external_line_id=maybe_text,
        requires_shipping=st.booleans(),
        grams=st.integers(0, 10_000_000),
        unit_price=amounts,
    )
    return NormalizedOrder(
        id=order_id_for("generic", external_id),
        platform="generic",
        external_id=external_id,
        name=draw(maybe_text),
        paid_at=draw(st.none() | times.map(lambda t: t.astimezone(UTC))),
        currency=draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        customer=draw(
            st.builds(
                Customer,
                email=maybe_text,
                phone=maybe_text,
                first_name=stripped,
                last_name=stripped,
                accepts_sms=st.booleans(),
                locale=maybe_text,
            )
        ),
        shipping_address=address,
        lines=tuple(draw(st.lists(line, min_size=1, max_size=5))),
        total=draw(st.none() | amounts),
        shipping_service=draw(maybe_text),
        note=draw(maybe_text),
        backorder_policy=draw(
            st.sampled_from([None, "wait_all", "ship_available", "cancel_after_days"])
        ),
    )


def as_generic(order: NormalizedOrder) -> bytes:
    """What a sender of orderd's generic JSON posts for ``order``."""
    address = order.shipping_address
    return msgspec.json.encode(
        GenericOrder(
            id=order.external_id,
            status="paid",
            name=order.name,
            paid_at=order.paid_at,
            currency=order.currency,
            total=order.total,
            customer=GenericCustomer(**msgspec.structs.asdict(order.customer)),
            shipping_address=None
            if address is None
            else GenericAddress(**msgspec.structs.asdict(address)),
            lines=[
                GenericLine(
                    id=line.external_line_id,
                    sku=line.sku,
                    quantity=line.quantity,
                    requires_shipping=line.requires_shipping,
                    grams=line.grams,
                    unit_price=line.unit_price,
                    name=line.name,
                )
                for line in order.lines
            ],
            shipping_service=order.shipping_service,
            note=order.note,
            backorder_policy=order.backorder_policy,
        )
    )


@given(normalized_orders())
def test_any_normalized_order_round_trips_through_the_generic_format(
    order: NormalizedOrder,
) -> None:
    assert paid_order(generic.parse(as_generic(order))) == order
