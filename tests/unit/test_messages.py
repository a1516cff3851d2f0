from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from actors.order.holds import DeadLetterHold, ShipmentHold
from actors.order.messages import (
    BackorderFilled,
    CancelRequested,
    HoldRelease,
    Message,
    OrderPaid,
    ReminderDue,
    decode_message,
    encode_message,
)
from actors.order.reminder import ReminderKind, ReminderScope
from actors.order.states import TERMINAL, OrderState
from actors.order.types import Address, Customer, Line, NormalizedOrder, is_valid_sku

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def an_order(**changes: object) -> NormalizedOrder:
    order = NormalizedOrder(
        id="ord_1",
        platform="shopify",
        external_id="820982911946154508",
        name="#1001",
        paid_at=NOW,
        currency="EUR",
        customer=Customer(email="jon@example.com", phone="+31612345678", first_name="Jon"),
        shipping_address=Address(
            name="Jon Snow", line1="Damrak 1", city="Amsterdam", postal_code="1012 LG", country="NL"
        ),
        lines=(
            Line(sku="MUG-BLK", quantity=2, grams=340, unit_price=Decimal("12.50")),
            Line(sku="GIFT-25", quantity=1, requires_shipping=False, unit_price=Decimal(25)),
        ),
        total=Decimal("50.00"),
        shipping_service="Standard",
    )
    return msgspec.structs.replace(order, **changes)


@pytest.mark.parametrize(
    "message",
    [
        OrderPaid(order_id="ord_1", order=an_order(), received_at=NOW),
        CancelRequested(order_id="ord_1", reason="customer asked", requested_by="shopify"),
        BackorderFilled(order_id="ord_1", warehouse="main", lines=(("MUG-BLK", 2),)),
        ReminderDue(
            order_id="ord_1",
            kind=ReminderKind.NO_SCAN,
            key="ord_1:no_scan:ord_1-1:1",
            due_at=NOW,
            scope=ReminderScope("ord_1-1", 1),
        ),
        HoldRelease(order_id="ord_1", hold=DeadLetterHold(seq=12)),
        HoldRelease(order_id="ord_1", hold=ShipmentHold("ord_1-2"), by="orderd"),
    ],
)
def test_every_message_round_trips_with_its_type_tag(message: Message) -> None:
    data = encode_message(message)
    assert msgspec.json.decode(data)["type"] == type(message).__struct_config__.tag
    assert decode_message(data) == message


def test_an_unknown_message_type_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'order_lost'"):
        decode_message(b'{"type": "order_lost", "order_id": "x"}')


def test_a_message_with_a_bad_sku_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"lines\[0\]\[0\]"):
        decode_message(
            b'{"type":"backorder_filled","order_id":"x","warehouse":"main","lines":[["a b",1]]}'
        )


def test_an_order_without_lines_is_rejected() -> None:
    data = encode_message(OrderPaid(order_id="ord_1", order=an_order(), received_at=NOW))
    raw = msgspec.json.decode(data)
    raw["order"]["lines"] = []
    with pytest.raises(msgspec.ValidationError, match="lines"):
        decode_message(msgspec.json.encode(raw))


def test_only_lines_that_need_shipping_are_shippable() -> None:
    assert [line.sku for line in an_order().shippable_lines()] == ["MUG-BLK"]


@pytest.mark.parametrize(
    ("sku", "valid"),
    [
        ("MUG-BLK", True),
        ("a.b/c+d#1_2", True),
        ("9", True),
        ("A" * 64, True),
        ("A" * 65, False),
        ("", False),
        ("-LEAD", False),
        ("HAS SPACE", False),
        ("brace{x}", False),
        ("co:lon", False),
        ("tab\t", False),
        ("é", False),
    ],
)
def test_sku_rules(sku: str, valid: bool) -> None:
    assert is_valid_sku(sku) is valid


def test_terminal_states_are_the_ends_of_the_pipeline() -> None:
    assert {OrderState.COMPLETED, OrderState.CANCELLED, OrderState.IGNORED} == TERMINAL
    assert OrderState("partially_reserved") is OrderState.PARTIALLY_RESERVED
