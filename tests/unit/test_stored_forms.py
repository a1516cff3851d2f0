"""Holds, reminder keys and delay causes as types, and what earlier versions stored.

The JSON literals are exactly what the version before typed holds, reminder scopes and
delay causes wrote (its own encoders' output): orders stored then must load and go on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from actors.order.behaviour import Decision, Rules, Snapshot, decide, evolve
from actors.order.events import (
    AttentionNeeded,
    DelayDetected,
    DelayEnded,
    Event,
    FollowUpsScheduled,
    HoldReleased,
    decode_event,
    encode_event,
)
from actors.order.holds import (
    ORDER_HOLD,
    DeadLetterHold,
    Hold,
    OrderHold,
    ShipmentHold,
    describe,
)
from actors.order.legacy import cause_from_reason, hold_from_text
from actors.order.messages import (
    HoldRelease,
    Message,
    ReminderDue,
    TrackingUpdated,
    decode_message,
    encode_message,
)
from actors.order.reminder import ReminderKey, ReminderKind, ReminderScope
from actors.order.shipment import Shipment
from actors.order.states import OrderState
from actors.order.steps.common import dead_letters
from actors.order.steps.model import decode_holds, decode_snapshot
from actors.order.types import Customer, Line, NormalizedOrder
from actors.shipping.tracking import DelayCause

AT = datetime(2027, 1, 13, tzinfo=UTC)

# An order stored with a delay the carrier's estimate caused, held by a dead letter (its
# message 4) and then as a whole.
OLD_SNAPSHOT = (
    '{"order_id":"ord_1","state":"needs_attention","order":null,"holdings":[],'
    '"policy":"wait_all","reason":"refund asked: look first","shipments":[{"id":"ord_1-1",'
    '"seq":1,"warehouse":"main","lines":[["A",1]],"status":"shipped",'
    '"service_level":"standard","promised_by":"2026-11-06","parcel":{"weight_g":100,'
    '"length_cm":10,"width_cm":10,"height_cm":10},"rate":{"carrier":"sandbox",'
    '"carrier_account":"Sandbox Post","service":"standard","amount":"4.50","currency":"EUR",'
    '"delivery_days":null,"delivery_date":null,"rate_id":"r1","quote_id":"q1"},'
    '"estimated_delivery":"2026-11-05","tracking_number":"SB1","tracking_url":null,'
    '"label_format":"pdf","label_path":"l.pdf","purchase_id":"p1","packed_ok":true,'
    '"problem":null,"short":[],"shipped_at":"2026-11-03T09:00:00Z",'
    '"tracking_status":"in_transit","tracking_detail":"in_transit",'
    '"tracking_at":"2026-11-03T12:00:00Z","carrier_estimate":"2026-11-09","scans":1,'
    '"delayed":true,"delay_episode":1,"delay_reason":"the carrier now expects 2026-11-09,'
    ' after the promised 2026-11-06","delivered_at":null,"review_after_days":null,'
    '"repeat_after_days":null}],"follow_ups":[],"holds":["dead:4","order"]}'
)


# -- holds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hold", "stored", "said"),
    [
        (OrderHold(), b'{"kind":"order"}', "order"),
        (ShipmentHold("S1"), b'{"kind":"shipment","shipment_id":"S1"}', "shipment S1"),
        (DeadLetterHold(seq=12), b'{"kind":"dead_letter","seq":12}', "dead letter 12"),
        (
            DeadLetterHold(message="order_paid"),
            b'{"kind":"dead_letter","message":"order_paid"}',
            "dead letter order_paid",
        ),
    ],
)
def test_a_hold_is_stored_with_its_kind_and_read_out_in_words(
    hold: Hold, stored: bytes, said: str
) -> None:
    assert msgspec.json.encode(hold) == stored
    assert decode_holds(b"[" + stored + b"]") == (hold,)
    assert describe(hold) == said


@pytest.mark.parametrize(
    ("text", "hold"),
    [
        ("order", ORDER_HOLD),
        ("ord_1-2", ShipmentHold("ord_1-2")),
        ("dead:12", DeadLetterHold(seq=12)),
        # Before messages were numbered, a dead letter held its order by its type.
        ("dead:order_paid", DeadLetterHold(message="order_paid")),
    ],
)
def test_a_hold_stored_as_a_string_reads_as_its_type(text: str, hold: Hold) -> None:
    assert hold_from_text(text) == hold
    assert decode_holds(msgspec.json.encode([text])) == (hold,)


def test_dead_letters_are_found_by_the_kind_of_hold() -> None:
    held = Snapshot(order_id="ord_1", state=OrderState.NEEDS_ATTENTION)
    assert not dead_letters(msgspec.structs.replace(held, holds=(ShipmentHold("dead:4"),)))
    assert dead_letters(msgspec.structs.replace(held, holds=(ORDER_HOLD, DeadLetterHold(seq=4))))


# -- snapshots -------------------------------------------------------------------------


def test_an_old_snapshot_loads_with_typed_holds_and_the_cause_of_its_delay() -> None:
    snapshot = decode_snapshot(OLD_SNAPSHOT)
    assert snapshot.holds == (DeadLetterHold(seq=4), ORDER_HOLD)
    [shipment] = snapshot.shipments
    assert shipment.delay_cause is DelayCause.LATE_ESTIMATE
    assert (
        shipment.delay_reason == "the carrier now expects 2026-11-09, after the promised 2026-11-06"
    )
    # Saved again, it is in today's form, and reads back the same.
    saved = msgspec.json.encode(snapshot)
    assert msgspec.json.decode(saved)["holds"] == [
        {"kind": "dead_letter", "seq": 4},
        {"kind": "order"},
    ]
    assert decode_snapshot(saved) == snapshot


def test_an_old_delay_ends_by_the_cause_its_words_name() -> None:
    snapshot = decode_snapshot(OLD_SNAPSHOT)
    now = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)  # before the promised day

    def scan(at: datetime, estimate: date) -> TrackingUpdated:
        return TrackingUpdated(
            order_id="ord_1", shipment_id="ord_1-1", status="in_transit",
            carrier_status="in_transit", at=at, estimated_delivery=estimate,
        )  # fmt: skip

    # A scan with the estimate still after the promise: the estimate's delay goes on.
    decision = decide(snapshot, scan(now, date(2026, 11, 9)), Rules(), now)
    assert not any(isinstance(e, DelayEnded) for e in decision.events)
    # The estimate back within the promise ends it (a missing scan would end with any scan).
    decision = decide(snapshot, scan(now, date(2026, 11, 5)), Rules(), now)
    assert DelayEnded(at=now, shipment_id="ord_1-1", episode=1) in decision.events


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("the promised date 2026-11-06 has passed", DelayCause.PROMISE_PASSED),
        (
            "the carrier now expects 2026-11-09, after the promised 2026-11-06",
            DelayCause.LATE_ESTIMATE,
        ),
        ("no scan for 50 hours", DelayCause.NO_SCAN),
        ("not picked up 25 hours after it shipped", DelayCause.NOT_PICKED_UP),
        # No rule wrote this: it ended with any scan, as a missing scan does.
        ("the parcel is late", DelayCause.NO_SCAN),
    ],
)
def test_a_delay_stored_in_words_gets_the_cause_of_the_rule_that_wrote_them(
    reason: str, cause: DelayCause
) -> None:
    assert cause_from_reason(reason) is cause
    shipment = Shipment(
        id="S1", seq=1, warehouse="main", lines=(), service_level="standard", delay_reason=reason
    )
    assert shipment.delay_cause is cause


def test_a_shipment_never_delayed_has_no_cause() -> None:
    assert (
        Shipment(id="S1", seq=1, warehouse="main", lines=(), service_level="s").delay_cause is None
    )


# -- events ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "event"),
    [
        (
            '{"type":"needs_attention","reason":"message 3 dead-lettered after 5 deliveries",'
            '"hold":"dead:3","at":"2027-01-13T00:00:00Z"}',
            AttentionNeeded(
                at=AT,
                reason="message 3 dead-lettered after 5 deliveries",
                hold=DeadLetterHold(seq=3),
            ),
        ),
        (
            '{"type":"needs_attention","reason":"no label for shipment ord_old-2: address '
            'refused","hold":"ord_old-2","at":"2027-01-13T00:00:00Z"}',
            AttentionNeeded(
                at=AT,
                reason="no label for shipment ord_old-2: address refused",
                hold=ShipmentHold("ord_old-2"),
            ),
        ),
        (
            '{"type":"needs_attention","reason":"cannot ship: no address","hold":null,'
            '"at":"2027-01-13T00:00:00Z"}',
            AttentionNeeded(at=AT, reason="cannot ship: no address", hold=ORDER_HOLD),
        ),
        (
            '{"type":"hold_released","hold":"ord_old-2","by":"operator",'
            '"at":"2027-01-13T00:00:00Z"}',
            HoldReleased(at=AT, hold=ShipmentHold("ord_old-2"), by="operator"),
        ),
        (
            '{"type":"delayed","shipment_id":"ord_old-1","episode":1,'
            '"reason":"not picked up 30 hours after it shipped","at":"2027-01-13T00:00:00Z"}',
            DelayDetected(
                at=AT,
                shipment_id="ord_old-1",
                episode=1,
                reason="not picked up 30 hours after it shipped",
                cause=DelayCause.NOT_PICKED_UP,
            ),
        ),
        (
            '{"type":"follow_ups_scheduled","kinds":["review_request","repeat_purchase"],'
            '"at":"2027-01-13T00:00:00Z"}',
            FollowUpsScheduled(
                at=AT, kinds=(ReminderKind.REVIEW_REQUEST, ReminderKind.REPEAT_PURCHASE)
            ),
        ),
    ],
)
def test_an_old_event_loads_in_todays_form(stored: str, event: Event) -> None:
    assert decode_event(stored) == event
    assert decode_event(encode_event(event)) == event


def test_an_old_event_applies_as_it_did() -> None:
    stored = (
        '{"type":"needs_attention","reason":"message 3 dead-lettered after 5 deliveries",'
        '"hold":"dead:3","at":"2027-01-13T00:00:00Z"}'
    )
    snapshot = evolve(None, decode_event(stored), "ord_old")
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.holds == (DeadLetterHold(seq=3),)


# -- messages --------------------------------------------------------------------------

_DUE = datetime(2027, 1, 18, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            '{"type":"hold_release","hold":"dead:3","by":"operator","order_id":"ord_old"}',
            HoldRelease(order_id="ord_old", hold=DeadLetterHold(seq=3)),
        ),
        (
            '{"type":"reminder_due","kind":"no_scan","key":"ord_old:no_scan:ord_old-1:2",'
            '"due_at":"2027-01-18T09:00:00Z","scope":"ord_old-1:2","order_id":"ord_old"}',
            ReminderDue(
                order_id="ord_old",
                kind=ReminderKind.NO_SCAN,
                key="ord_old:no_scan:ord_old-1:2",
                due_at=_DUE,
                scope=ReminderScope("ord_old-1", 2),
            ),
        ),
        (
            '{"type":"reminder_due","kind":"pickup_check","key":"ord_old:pickup_check:ord_old-1",'
            '"due_at":"2027-01-18T09:00:00Z","scope":"ord_old-1","order_id":"ord_old"}',
            ReminderDue(
                order_id="ord_old",
                kind=ReminderKind.PICKUP_CHECK,
                key="ord_old:pickup_check:ord_old-1",
                due_at=_DUE,
                scope=ReminderScope("ord_old-1"),
            ),
        ),
        (
            '{"type":"reminder_due","kind":"review_request","key":"ord_old:review_request",'
            '"due_at":"2027-01-18T09:00:00Z","scope":"","order_id":"ord_old"}',
            ReminderDue(
                order_id="ord_old",
                kind=ReminderKind.REVIEW_REQUEST,
                key="ord_old:review_request",
                due_at=_DUE,
            ),
        ),
    ],
)
def test_an_old_message_loads_in_todays_form(stored: str, message: Message) -> None:
    assert decode_message(stored) == message
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        ('{"type":"hold_release","hold":7,"order_id":"o"}', r"\$\.hold"),
        ('{"type":"hold_release","order_id":"o"}', "missing required field `hold`"),
        ('{"type":"hold_release","hold":null,"order_id":"o"}', r"\$\.hold"),
        ('{"type":"hold_release","hold":{"kind":"lost"},"order_id":"o"}', "'lost'"),
        (
            '{"type":"reminder_due","kind":"delivery_check","key":"o:delivery_check",'
            '"due_at":"2027-01-18T09:00:00Z","scope":"","order_id":"o"}',
            "'delivery_check'",
        ),
        (
            '{"type":"reminder_due","kind":"no_scan","key":"o:no_scan:S",'
            '"due_at":"2027-01-18T09:00:00Z","scope":"S","order_id":"o"}',
            r"\$\.scope",
        ),
    ],
)
def test_what_no_version_wrote_is_still_refused(stored: str, error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        decode_message(stored)


@pytest.mark.parametrize(
    ("holds", "error"),
    [
        ('[{"kind":"lost"}]', "'lost'"),
        ('[{"kind":"dead_letter"}]', "by number or by type"),
        ('[{"kind":"shipment"}]', "shipment_id"),
    ],
)
def test_a_snapshot_with_a_hold_no_version_wrote_is_refused(holds: str, error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        decode_snapshot(f'{{"order_id":"o","state":"received","holds":{holds}}}')


# -- reminder keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (ReminderKey("ord_1", ReminderKind.CANCEL_BACKORDER), "ord_1:cancel_backorder"),
        (ReminderKey("ord_1", ReminderKind.REVIEW_REQUEST), "ord_1:review_request"),
        (
            ReminderKey("ord_1", ReminderKind.PICKUP_CHECK, ReminderScope("ord_1-1")),
            "ord_1:pickup_check:ord_1-1",
        ),
        (
            ReminderKey("ord_1", ReminderKind.PROMISE_CHECK, ReminderScope("ord_1-1")),
            "ord_1:promise_check:ord_1-1",
        ),
        (
            ReminderKey("ord_1", ReminderKind.NO_SCAN, ReminderScope("ord_1-1", 3)),
            "ord_1:no_scan:ord_1-1:3",
        ),
        (
            ReminderKey("ord_1", ReminderKind.TRACK_POLL, ReminderScope("ord_1-2", 1)),
            "ord_1:track_poll:ord_1-2:1",
        ),
    ],
)
def test_a_reminder_key_keeps_the_shape_stored_keys_have(key: ReminderKey, text: str) -> None:
    # The same shape as before: scheduling a reminder an old key names again is a no-op.
    assert key.text() == text
    assert ReminderKey.parse(text) == key


def test_reminder_kinds_keep_their_stored_names() -> None:
    assert [kind.value for kind in ReminderKind] == [
        "cancel_backorder", "pickup_check", "promise_check", "no_scan", "track_poll",
        "review_request", "repeat_purchase",
    ]  # fmt: skip


_NUMBERED = (ReminderKind.NO_SCAN, ReminderKind.TRACK_POLL)
_KIND_NAMES = {kind.value for kind in ReminderKind}


@st.composite
def reminder_keys(draw: st.DrawFn) -> ReminderKey:
    order_id = draw(st.text(min_size=1, max_size=30))
    # An order id with a kind's name between colons would read back differently.
    assume(not _KIND_NAMES & set(order_id.split(":")))
    kind = draw(st.sampled_from(list(ReminderKind)))
    shipment_id = draw(st.text(min_size=1, max_size=30))
    if kind in _NUMBERED:
        return ReminderKey(order_id, kind, ReminderScope(shipment_id, draw(st.integers(0, 10**6))))
    scoped = draw(st.booleans())
    return ReminderKey(order_id, kind, ReminderScope(shipment_id) if scoped else None)


@given(reminder_keys())
def test_a_reminder_key_reads_back_as_it_was_built(key: ReminderKey) -> None:
    assert ReminderKey.parse(key.text()) == key


@pytest.mark.parametrize("text", ["ord_1", "ord_1:delivery_check", "no_scan", "ord_1:no_scan:S"])
def test_a_key_of_no_known_kind_or_shape_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="reminder"):
        ReminderKey.parse(text)


def test_a_reminder_key_numbers_only_the_kinds_that_are_numbered() -> None:
    with pytest.raises(ValueError, match="scope"):
        ReminderKey("ord_1", ReminderKind.NO_SCAN, ReminderScope("ord_1-1"))
    with pytest.raises(ValueError, match="scope"):
        ReminderKey("ord_1", ReminderKind.PICKUP_CHECK, ReminderScope("ord_1-1", 2))
    with pytest.raises(ValueError, match="shipment"):
        ReminderScope("")


def test_an_old_no_scan_check_still_finds_its_scan() -> None:
    ended = DelayEnded(at=AT, shipment_id="ord_1-1", episode=1)
    snapshot = evolve(decode_snapshot(OLD_SNAPSHOT), ended, "ord_1")  # one scan so far
    later = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)  # 48 working hours after it

    def stored(scan: int) -> str:
        return (
            f'{{"type":"reminder_due","kind":"no_scan","key":"ord_1:no_scan:ord_1-1:{scan}",'
            f'"due_at":"2026-11-05T12:00:00Z","scope":"ord_1-1:{scan}","order_id":"ord_1"}}'
        )

    assert decide(snapshot, decode_message(stored(0)), Rules(), later) == Decision()  # stale
    decision = decide(snapshot, decode_message(stored(1)), Rules(), later)
    [detected] = [e for e in decision.events if isinstance(e, DelayDetected)]
    # Still late by the carrier's estimate, the first rule that holds: a second episode.
    assert (detected.episode, detected.cause) == (2, DelayCause.LATE_ESTIMATE)


def test_an_order_is_written_without_its_defaults_and_one_stored_in_full_still_loads() -> None:
    order = NormalizedOrder(
        id="ord_1", platform="shopify", external_id="1", currency="EUR",
        customer=Customer(email="c@example.com"), lines=(Line(sku="A", quantity=2),),
    )  # fmt: skip
    written = msgspec.json.decode(msgspec.json.encode(order))
    assert written == {
        "id": "ord_1", "platform": "shopify", "external_id": "1", "currency": "EUR",
        "customer": {"email": "c@example.com"}, "lines": [{"sku": "A", "quantity": 2}],
    }  # fmt: skip
    # As the version that wrote every field stored it.
    full = (
        '{"id":"ord_1","platform":"shopify","external_id":"1","name":null,"paid_at":null,'
        '"currency":"EUR","customer":{"email":"c@example.com","phone":null,"first_name":"",'
        '"last_name":"","accepts_sms":false,"locale":null},"shipping_address":null,'
        '"lines":[{"sku":"A","quantity":2,"name":"","external_line_id":null,'
        '"requires_shipping":true,"grams":0,"unit_price":"0"}],"total":null,'
        '"shipping_service":null,"note":null,"backorder_policy":null}'
    )
    assert msgspec.json.decode(full, type=NormalizedOrder) == order


def test_a_snapshot_is_written_without_its_defaults() -> None:
    snapshot = evolve(None, AttentionNeeded(at=datetime(2026, 12, 1, tzinfo=UTC), reason="x"), "o")
    written = msgspec.json.decode(msgspec.json.encode(snapshot))
    assert set(written) == {"order_id", "state", "reason", "holds"}
    assert msgspec.json.decode(msgspec.json.encode(snapshot), type=Snapshot) == snapshot
