from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from actors.notify.feedback import (
    issue_token,
    not_found_page,
    rating_page,
    read_token,
    thank_you_page,
    token_id,
)
from actors.shipping.carriers import TrackingStatus
from actors.shipping.tracking import (
    RANK,
    Delay,
    DelayCause,
    DelayRules,
    ShipmentTrack,
    advances,
    detect_delay,
)
from adapters.carriers.webhooks import (
    EASYPOST_HEADER,
    SHIPPO_AUTH_PARAM,
    TrackingUpdate,
    parse_easypost,
    parse_shippo,
    sign_easypost,
    verify_easypost,
    verify_shippo,
)
from adapters.platforms import MalformedPayload

T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


def as_body(data: Any) -> bytes:
    return json.dumps(data).encode()


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


# --- EasyPost signatures ---------------------------------------------------------------


def easypost_expected(body: bytes, secret: str) -> str:
    """The documented scheme, spelled out as EasyPost's client libraries compute it."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def test_easypost_header_is_the_documented_name() -> None:
    assert EASYPOST_HEADER == "X-Hmac-Signature"


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        (b'{"description":"tracker.updated"}', "whsec-A1B2C3"),
        (b"", "s3cr3t"),
        ('{"city": "Zürich"}'.encode(), "ünïcödé-secret"),
    ],
)
def test_easypost_signature_is_hmac_sha256_hex_of_the_raw_body(body: bytes, secret: str) -> None:
    expected = easypost_expected(body, secret)
    assert sign_easypost(body, secret) == expected
    assert verify_easypost(body, expected, [secret])


def test_easypost_secret_is_normalised_to_nfkd_before_keying() -> None:
    body = b'{"id":"evt_1"}'
    composed = "caf\u00e9"  # é as one code point
    decomposed = "cafe\u0301"  # e and a combining accent: what NFKD makes of it
    header = "hmac-sha256-hex=" + hmac.new(decomposed.encode(), body, hashlib.sha256).hexdigest()
    assert verify_easypost(body, header, [composed])
    assert sign_easypost(body, composed) == header


def test_easypost_accepts_any_configured_secret_during_rotation() -> None:
    body = b'{"id":"evt_2"}'
    signed_with_old = sign_easypost(body, "old-secret")
    assert verify_easypost(body, signed_with_old, ["new-secret", "old-secret"])
    assert not verify_easypost(body, signed_with_old, ["new-secret"])


def test_easypost_rejects_a_tampered_body() -> None:
    header = sign_easypost(b'{"status":"in_transit"}', "secret")
    assert not verify_easypost(b'{"status":"delivered"}', header, ["secret"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "hmac-sha256-hex=",
        "hmac-sha256-hex=zz" + "0" * 62,
        "hmac-sha256-hex=" + "0" * 63,
        "sha256=" + "0" * 64,
        "0" * 64,
    ],
)
def test_easypost_rejects_a_missing_or_garbled_header(header: str | None) -> None:
    assert not verify_easypost(b"{}", header, ["secret"])


def test_easypost_never_treats_an_empty_secret_as_a_key() -> None:
    body = b"{}"
    assert not verify_easypost(body, sign_easypost(body, ""), ["", ""])
    assert not verify_easypost(body, sign_easypost(body, "secret"), [])


def test_easypost_refuses_one_string_as_the_secrets() -> None:
    with pytest.raises(TypeError):
        verify_easypost(b"{}", sign_easypost(b"{}", "s"), "s")


# --- Shippo authentication -------------------------------------------------------------


def test_shippo_token_travels_as_the_documented_query_parameter() -> None:
    assert SHIPPO_AUTH_PARAM == "token"


def test_shippo_token_matches_any_configured_token() -> None:
    assert verify_shippo("fresh-token", ["fresh-token", "retiring-token"])
    assert verify_shippo("retiring-token", ["fresh-token", "retiring-token"])


@pytest.mark.parametrize("token", [None, "", "fresh-toke", "fresh-token ", "FRESH-TOKEN"])
def test_shippo_rejects_a_missing_or_wrong_token(token: str | None) -> None:
    assert not verify_shippo(token, ["fresh-token"])


def test_shippo_never_accepts_against_an_empty_configured_token() -> None:
    assert not verify_shippo("", [""])
    assert not verify_shippo("anything", ["", ""])
    with pytest.raises(TypeError):
        verify_shippo("t", "t")


# --- EasyPost parsing ------------------------------------------------------------------


def easypost_detail(
    status: str, message: str, at: str, city: str | None = None, state: str | None = None
) -> dict[str, Any]:
    return {
        "object": "TrackingDetail",
        "message": message,
        "description": None,
        "status": status,
        "status_detail": "status_update",
        "datetime": at,
        "source": "USPS",
        "carrier_code": None,
        "tracking_location": {
            "object": "TrackingLocation",
            "city": city,
            "state": state,
            "country": None,
            "zip": "77063" if city else None,
        },
    }


def easypost_tracker(**overrides: Any) -> dict[str, Any]:
    tracker: dict[str, Any] = {
        "id": "trk_52af8b25ec1a4ca687a9691e0dc2198b",
        "object": "Tracker",
        "mode": "test",
        "tracking_code": "9400110898825022579493",
        "status": "in_transit",
        "status_detail": "arrived_at_facility",
        "created_at": "2024-05-06T15:00:00Z",
        "updated_at": "2024-05-07T09:12:00Z",
        "signed_by": None,
        "weight": None,
        "est_delivery_date": "2024-05-09T00:00:00Z",
        "shipment_id": "shp_a5b1348307694736aaqqqq8fqda53f93",
        "carrier": "USPS",
        "tracking_details": [
            easypost_detail("pre_transit", "Shipping Label Created", "2024-05-06T15:02:00Z"),
            easypost_detail(
                "in_transit",
                "Arrived at USPS Regional Facility",
                "2024-05-07T04:10:00-05:00",
                city="HOUSTON",
                state="TX",
            ),
        ],
        "carrier_detail": {
            "object": "CarrierDetail",
            "service": "First-Class Package Service",
            "container_type": None,
            "est_delivery_date_local": None,
            "est_delivery_time_local": None,
        },
        "finalized": False,
        "is_return": False,
        "public_url": "https://track.easypost.com/djE6dHJrXzUyYWY4YjI1",
        "fees": [],
    }
    tracker.update(overrides)
    return tracker


def easypost_event(result: dict[str, Any], description: str = "tracker.updated") -> dict[str, Any]:
    return {
        "id": "evt_6a2cf14e0b3611efa1b8b5ab4e3c5f42",
        "object": "Event",
        "mode": "test",
        "description": description,
        "previous_attributes": {"status": "pre_transit"},
        "pending_urls": ["https://orderd.example.com/webhooks/carriers/easypost"],
        "completed_urls": [],
        "created_at": "2024-05-07T09:12:03Z",
        "updated_at": "2024-05-07T09:12:03Z",
        "result": result,
    }


def test_easypost_tracker_updated_event_becomes_an_update_from_its_latest_scan() -> None:
    update = parse_easypost(as_body(easypost_event(easypost_tracker())))
    assert update == TrackingUpdate(
        carrier="easypost",
        tracking_number="9400110898825022579493",
        status="in_transit",
        carrier_status="in_transit",
        detail="Arrived at USPS Regional Facility",
        at=datetime(2024, 5, 7, 9, 10, tzinfo=UTC),  # 04:10 at -05:00
        estimated_delivery=date(2024, 5, 9),
        event_id="evt_6a2cf14e0b3611efa1b8b5ab4e3c5f42",
        location="HOUSTON, TX, 77063",
    )


def test_easypost_latest_scan_is_found_whatever_the_order_of_the_details() -> None:
    details = list(reversed(easypost_tracker()["tracking_details"]))
    update = parse_easypost(as_body(easypost_event(easypost_tracker(tracking_details=details))))
    assert update is not None
    assert update.detail == "Arrived at USPS Regional Facility"


def test_easypost_tracker_without_scans_takes_its_updated_at() -> None:
    tracker = easypost_tracker(status="pre_transit", tracking_details=[], est_delivery_date=None)
    update = parse_easypost(as_body(easypost_event(tracker)))
    assert update is not None
    assert update.at == datetime(2024, 5, 7, 9, 12, tzinfo=UTC)
    assert (update.status, update.detail, update.location) == ("pre_transit", "", "")
    assert update.estimated_delivery is None


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("delivered", "delivered"),
        ("out_for_delivery", "out_for_delivery"),
        ("return_to_sender", "returned"),
        ("failure", "failure"),
        ("something_new", "unknown"),
    ],
)
def test_easypost_status_words_are_normalised(word: str, status: TrackingStatus) -> None:
    update = parse_easypost(as_body(easypost_event(easypost_tracker(status=word))))
    assert update is not None
    assert (update.status, update.carrier_status) == (status, word)


def test_easypost_event_of_another_kind_is_ignored() -> None:
    batch = {"id": "batch_1", "object": "Batch", "state": "purchased", "shipments": []}
    assert parse_easypost(as_body(easypost_event(batch, description="batch.created"))) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[]", "body"),
        (as_body({**easypost_event(easypost_tracker()), "object": "Tracker"}), "object"),
        (as_body(without(easypost_event({}), "description")), "description"),
        (as_body(without(easypost_event({}), "id")), "id"),
        (as_body(without(easypost_event({}), "result")), "result"),
        (as_body(easypost_event({"object": "Batch", "id": "batch_1"})), "result.object"),
        (as_body(easypost_event(easypost_tracker(tracking_code=" "))), "result.tracking_code"),
        (
            as_body(easypost_event(without(easypost_tracker(), "status"))),
            "result.status",
        ),
        (
            as_body(easypost_event(easypost_tracker(tracking_details=[], updated_at=None))),
            "result.updated_at",
        ),
    ],
)
def test_easypost_malformed_body_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        parse_easypost(body)
    assert caught.value.field == field


def test_easypost_malformed_reason_does_not_repeat_the_value() -> None:
    tracker = easypost_tracker(tracking_code=["555-0100 Jane Doe"])
    with pytest.raises(MalformedPayload) as caught:
        parse_easypost(as_body(easypost_event(tracker)))
    assert caught.value.field == "result.tracking_code"
    assert "Jane" not in caught.value.reason


# --- Shippo parsing --------------------------------------------------------------------


def shippo_status(
    status: str, details: str, at: str, code: str | None, object_id: str
) -> dict[str, Any]:
    return {
        "object_created": at,
        "object_updated": at,
        "object_id": object_id,
        "status": status,
        "status_details": details,
        "status_date": at,
        "substatus": ({"code": code, "text": details, "action_required": False} if code else None),
        "location": {"city": "Las Vegas", "state": "NV", "zip": "89101", "country": "US"},
    }


def shippo_track_updated(**overrides: Any) -> dict[str, Any]:
    history = [
        shippo_status(
            "PRE_TRANSIT", "Label created", "2024-05-06T15:02:00Z", None, "a1b2c3d4e5f60001"
        ),
        shippo_status(
            "TRANSIT",
            "Your shipment has arrived at the post office.",
            "2024-05-08T06:40:00Z",
            None,
            "a1b2c3d4e5f60002",
        ),
        shippo_status(
            "TRANSIT",
            "Out for delivery in LAS VEGAS, NV 89101.",
            "2024-05-09T12:31:00Z",
            "out_for_delivery",
            "a1b2c3d4e5f60003",
        ),
    ]
    data: dict[str, Any] = {
        "messages": [],
        "carrier": "usps",
        "tracking_number": "9205590164917312751089",
        "address_from": {"city": "Houston", "state": "TX", "zip": "77063", "country": "US"},
        "address_to": {"city": "Las Vegas", "state": "NV", "zip": "89101", "country": "US"},
        "eta": "2024-05-09T20:00:00Z",
        "original_eta": "2024-05-10T00:00:00Z",
        "servicelevel": {"token": "usps_priority", "name": "Priority Mail"},
        "metadata": "Order 000123",
        "tracking_status": history[-1],
        "tracking_history": history,
        "transaction": "915d94940ea54c3a80cbfa328722f5a1",
    }
    data.update(overrides)
    return {"event": "track_updated", "test": False, "data": data}


def test_shippo_track_updated_becomes_an_update_from_its_tracking_status() -> None:
    update = parse_shippo(as_body(shippo_track_updated()))
    assert update == TrackingUpdate(
        carrier="shippo",
        tracking_number="9205590164917312751089",
        status="out_for_delivery",  # TRANSIT refined by its substatus
        carrier_status="TRANSIT",
        detail="Out for delivery in LAS VEGAS, NV 89101.",
        at=datetime(2024, 5, 9, 12, 31, tzinfo=UTC),
        estimated_delivery=date(2024, 5, 9),
        event_id="a1b2c3d4e5f60003:2024-05-09",
        location="Las Vegas, NV, 89101, US",
    )


def test_shippo_transit_without_substatus_is_in_transit() -> None:
    current = shippo_status(
        "TRANSIT", "In transit", "2024-05-08T06:40:00Z", None, "a1b2c3d4e5f60002"
    )
    update = parse_shippo(as_body(shippo_track_updated(tracking_status=current, eta=None)))
    assert update is not None
    assert (update.status, update.estimated_delivery) == ("in_transit", None)


def test_shippo_delivered_is_delivered() -> None:
    current = shippo_status(
        "DELIVERED", "Delivered, in mailbox", "2024-05-09T17:05:00Z", None, "a1b2c3d4e5f60004"
    )
    update = parse_shippo(as_body(shippo_track_updated(tracking_status=current)))
    assert update is not None
    assert update.status == "delivered"


def test_shippo_without_tracking_status_takes_the_newest_history_entry() -> None:
    update = parse_shippo(as_body(shippo_track_updated(tracking_status=None)))
    assert update is not None
    assert update.event_id == "a1b2c3d4e5f60003:2024-05-09"


def test_shippo_status_without_a_scan_time_takes_shippos_own_record_of_it() -> None:
    current = {
        **shippo_status("UNKNOWN", "", "2024-05-06T15:02:00Z", None, "a1b2c3d4e5f60000"),
        "status_date": None,
        "location": None,
    }
    update = parse_shippo(as_body(shippo_track_updated(tracking_status=current)))
    assert update is not None
    assert (update.status, update.at) == ("unknown", datetime(2024, 5, 6, 15, 2, tzinfo=UTC))


@pytest.mark.parametrize("event", ["transaction_created", "transaction_updated", "batch_created"])
def test_shippo_other_events_are_ignored(event: str) -> None:
    body = {"event": event, "test": True, "data": {"object_id": "915d94940ea54c3a"}}
    assert parse_shippo(as_body(body)) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "body"),
        (as_body({"test": False}), "event"),
        (as_body({"event": "track_updated", "test": False}), "data"),
        (
            as_body(shippo_track_updated(tracking_number="")),
            "data.tracking_number",
        ),
        (
            as_body({"event": "track_updated", "data": {"carrier": "usps"}}),
            "data.tracking_number",
        ),
        (
            as_body(shippo_track_updated(tracking_status=None, tracking_history=[])),
            "data.tracking_status",
        ),
        (
            as_body(shippo_track_updated(tracking_status={"status_details": "x"})),
            "data.tracking_status.status",
        ),
        (
            as_body(
                shippo_track_updated(
                    tracking_status={"status": "TRANSIT", "status_date": "yesterday"}
                )
            ),
            "data.tracking_status.status_date",
        ),
    ],
)
def test_shippo_malformed_body_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        parse_shippo(body)
    assert caught.value.field == field


# --- The monotonic rule ----------------------------------------------------------------


def test_rank_orders_the_statuses_as_documented() -> None:
    assert RANK["unknown"] < RANK["pre_transit"] < RANK["in_transit"]
    assert RANK["in_transit"] < RANK["available_for_pickup"] == RANK["out_for_delivery"]
    assert RANK["out_for_delivery"] < RANK["delivered"] == RANK["returned"] == RANK["failure"]
    assert set(RANK) == {
        "unknown",
        "pre_transit",
        "in_transit",
        "available_for_pickup",
        "out_for_delivery",
        "delivered",
        "returned",
        "failure",
    }


LATER = T0 + timedelta(hours=3)
EARLIER = T0 - timedelta(hours=3)


@pytest.mark.parametrize(
    ("current", "new", "new_at", "expected"),
    [
        # Forward, whenever it was scanned: carriers report late and out of order.
        ("pre_transit", "in_transit", LATER, True),
        ("in_transit", "out_for_delivery", LATER, True),
        ("in_transit", "delivered", EARLIER, True),
        ("out_for_delivery", "failure", LATER, True),
        ("in_transit", "returned", LATER, True),
        # Never back.
        ("out_for_delivery", "in_transit", LATER, False),
        ("in_transit", "pre_transit", LATER, False),
        ("delivered", "in_transit", LATER, False),
        ("delivered", "out_for_delivery", LATER, False),
        ("delivered", "pre_transit", EARLIER, False),
        # Same rank: a newer scan is progress, an older or repeated one is not.
        ("in_transit", "in_transit", LATER, True),
        ("in_transit", "in_transit", T0, False),
        ("in_transit", "in_transit", EARLIER, False),
        ("out_for_delivery", "available_for_pickup", LATER, True),
        ("available_for_pickup", "out_for_delivery", EARLIER, False),
        ("delivered", "delivered", LATER, True),
        ("delivered", "delivered", EARLIER, False),
        # Terminal statuses are final: nothing else overturns them.
        ("delivered", "returned", LATER, False),
        ("delivered", "failure", LATER, False),
        ("failure", "delivered", LATER, False),
        ("returned", "delivered", LATER, False),
        ("returned", "returned", LATER, True),
        # Unknown says nothing and never replaces what is known.
        ("in_transit", "unknown", LATER, False),
        ("pre_transit", "unknown", LATER, False),
        ("delivered", "unknown", LATER, False),
        # Anything known replaces nothing or unknown.
        (None, "pre_transit", EARLIER, True),
        (None, "delivered", EARLIER, True),
        ("unknown", "in_transit", EARLIER, True),
        (None, "unknown", LATER, False),
    ],
)
def test_advances_matrix(
    current: TrackingStatus | None, new: TrackingStatus, new_at: datetime, expected: bool
) -> None:
    current_at = None if current is None else T0
    assert advances(current, current_at, new, new_at) is expected


def test_same_status_without_a_recorded_time_is_progress() -> None:
    assert advances("in_transit", None, "in_transit", T0)


def test_times_in_other_zones_compare_as_instants() -> None:
    chicago_summer = timezone(timedelta(hours=-5))
    # 08:00 at -05:00 is 13:00 UTC: an hour after T0, so a newer scan.
    later_elsewhere = datetime(2024, 5, 6, 8, 0, tzinfo=chicago_summer)
    assert advances("in_transit", T0, "in_transit", later_elsewhere)


# --- Delay rules -----------------------------------------------------------------------

RULES = DelayRules()
SHIPPED = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)


def track(**overrides: Any) -> ShipmentTrack:
    fields: dict[str, Any] = {
        "promised_by": date(2024, 5, 10),
        "shipped_at": SHIPPED,
        "status": "in_transit",
        "last_scan_at": SHIPPED + timedelta(hours=6),
        "carrier_estimate": date(2024, 5, 9),
        "delivered": False,
    }
    fields.update(overrides)
    return ShipmentTrack(**fields)


def test_delay_rules_defaults() -> None:
    assert (RULES.no_scan_hours, RULES.pickup_grace_hours) == (48, 24)


@pytest.mark.parametrize(
    "bad", [{"no_scan_hours": 0}, {"pickup_grace_hours": -1}, {"no_scan_hours": float("nan")}]
)
def test_delay_rules_need_positive_hours(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        DelayRules(**bad)


def test_on_time_shipment_has_no_delay() -> None:
    now = SHIPPED + timedelta(hours=20)
    assert detect_delay(track(), now, RULES, local_today=date(2024, 5, 7)) is None


def test_promised_date_passed() -> None:
    now = datetime(2024, 5, 11, 9, 0, tzinfo=UTC)
    reason = detect_delay(
        track(last_scan_at=now - timedelta(hours=1)), now, RULES, local_today=date(2024, 5, 11)
    )
    assert reason == Delay(DelayCause.PROMISE_PASSED, "the promised date 2024-05-10 has passed")


def test_promised_day_itself_is_not_late() -> None:
    now = datetime(2024, 5, 10, 22, 0, tzinfo=UTC)
    reason = detect_delay(
        track(last_scan_at=now - timedelta(hours=1)), now, RULES, local_today=date(2024, 5, 10)
    )
    assert reason is None


def test_carrier_estimate_after_the_promise() -> None:
    now = SHIPPED + timedelta(hours=20)
    reason = detect_delay(
        track(carrier_estimate=date(2024, 5, 13)), now, RULES, local_today=date(2024, 5, 7)
    )
    assert reason == Delay(
        DelayCause.LATE_ESTIMATE,
        "the carrier now expects 2024-05-13, after the promised 2024-05-10",
    )


def test_no_scan_for_too_long_while_moving() -> None:
    last_scan = SHIPPED + timedelta(hours=6)
    today = date(2024, 5, 8)
    assert (
        detect_delay(track(), last_scan + timedelta(hours=47, minutes=59), RULES, local_today=today)
        is None
    )
    reason = detect_delay(track(), last_scan + timedelta(hours=48), RULES, local_today=today)
    assert reason == Delay(DelayCause.NO_SCAN, "no scan for 48 hours")
    later = detect_delay(
        track(status="out_for_delivery"),
        last_scan + timedelta(hours=50, minutes=30),
        RULES,
        local_today=today,
    )
    assert later == Delay(DelayCause.NO_SCAN, "no scan for 50 hours")


def test_a_parcel_waiting_at_a_pickup_point_is_not_expected_to_be_scanned() -> None:
    now = SHIPPED + timedelta(hours=80)
    reason = detect_delay(
        track(status="available_for_pickup"), now, RULES, local_today=date(2024, 5, 9)
    )
    assert reason is None


def test_not_picked_up_after_the_grace_period() -> None:
    pending = track(status="pre_transit", last_scan_at=None)
    today = date(2024, 5, 7)
    assert detect_delay(pending, SHIPPED + timedelta(hours=23), RULES, local_today=today) is None
    reason = detect_delay(pending, SHIPPED + timedelta(hours=25), RULES, local_today=today)
    assert reason == Delay(DelayCause.NOT_PICKED_UP, "not picked up 25 hours after it shipped")


def test_custom_thresholds_apply() -> None:
    rules = DelayRules(no_scan_hours=12, pickup_grace_hours=1)
    pending = track(status="pre_transit", last_scan_at=None)
    reason = detect_delay(
        pending, SHIPPED + timedelta(hours=1), rules, local_today=date(2024, 5, 6)
    )
    assert reason == Delay(DelayCause.NOT_PICKED_UP, "not picked up 1 hour after it shipped")


def test_delay_rules_are_checked_in_order() -> None:
    # Every rule holds at once: the promised date is named first.
    stuck = track(status="pre_transit", last_scan_at=None, carrier_estimate=date(2024, 5, 14))
    now = datetime(2024, 5, 12, 9, 0, tzinfo=UTC)
    assert detect_delay(stuck, now, RULES, local_today=date(2024, 5, 12)) == Delay(
        DelayCause.PROMISE_PASSED, "the promised date 2024-05-10 has passed"
    )
    # Before the promised date, the carrier's later estimate comes next.
    now = datetime(2024, 5, 9, 9, 0, tzinfo=UTC)
    assert detect_delay(stuck, now, RULES, local_today=date(2024, 5, 9)) == Delay(
        DelayCause.LATE_ESTIMATE,
        "the carrier now expects 2024-05-14, after the promised 2024-05-10",
    )
    # Without a promise, the scan rules speak.
    unpromised = track(promised_by=None, carrier_estimate=date(2024, 5, 14))
    now = SHIPPED + timedelta(hours=60)
    assert detect_delay(unpromised, now, RULES, local_today=date(2024, 5, 8)) == Delay(
        DelayCause.NO_SCAN, "no scan for 54 hours"
    )


def test_delivered_is_never_late() -> None:
    now = datetime(2024, 5, 20, 9, 0, tzinfo=UTC)
    today = date(2024, 5, 20)
    assert detect_delay(track(delivered=True), now, RULES, local_today=today) is None
    assert detect_delay(track(status="delivered"), now, RULES, local_today=today) is None


# --- Feedback tokens and pages ---------------------------------------------------------

SECRET = "feedback-secret-2024"
EXPIRES = datetime(2024, 6, 1, tzinfo=UTC)
BEFORE = datetime(2024, 5, 1, tzinfo=UTC)
ORDER = "ord_4f2k7q9x3m1c8v5b6n0z"


def test_a_token_serves_only_the_purpose_it_was_issued_for() -> None:
    rating = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    leaving = issue_token(ORDER, SECRET, expires_at=EXPIRES, purpose="unsubscribe")
    assert rating != leaving
    assert read_token(leaving, [SECRET], now=BEFORE, purpose="unsubscribe") == ORDER
    assert read_token(leaving, [SECRET], now=BEFORE) is None
    assert read_token(rating, [SECRET], now=BEFORE, purpose="unsubscribe") is None


def test_token_round_trips_the_order_id() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    assert read_token(token, [SECRET], now=EXPIRES - timedelta(days=20)) == ORDER


def test_token_is_url_safe_compact_and_unpadded() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    assert token.replace("-", "").replace("_", "").isalnum()
    assert "=" not in token
    assert len(token) <= 64


def test_token_is_signed_with_hmac_sha256_over_its_content() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert ORDER.encode() in raw
    tag = raw[-16:]
    assert hmac.compare_digest(
        tag,
        hmac.new(
            SECRET.encode(), b"orderd feedback token\x00" + raw[:-16], hashlib.sha256
        ).digest()[:16],
    )


def test_token_expires_at_its_expiry() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    assert read_token(token, [SECRET], now=EXPIRES - timedelta(seconds=1)) == ORDER
    assert read_token(token, [SECRET], now=EXPIRES) is None
    assert read_token(token, [SECRET], now=EXPIRES + timedelta(days=1)) is None


def test_token_signed_with_another_secret_is_refused() -> None:
    forged = issue_token(ORDER, "someone-elses-secret", expires_at=EXPIRES)
    assert read_token(forged, [SECRET], now=EXPIRES - timedelta(days=1)) is None


def test_token_with_a_changed_order_id_is_refused() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[6] ^= 0x01  # the first byte of the order id
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert read_token(tampered, [SECRET], now=EXPIRES - timedelta(days=1)) is None


def test_token_survives_a_rotation_of_secrets() -> None:
    token = issue_token(ORDER, "old-secret", expires_at=EXPIRES)
    now = EXPIRES - timedelta(days=1)
    assert read_token(token, ["new-secret", "old-secret"], now=now) == ORDER
    assert read_token(token, ["new-secret"], now=now) is None
    assert read_token(token, [], now=now) is None
    assert read_token(token, ["", ""], now=now) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "a",
        "not a token",
        "%%%%",
        "ab==",
        "AAAA",
        "A" * 10_000,
        "é" * 40,
        "\x00" * 40,
        base64.urlsafe_b64encode(b"\x01" + b"\x00" * 30).rstrip(b"=").decode(),
    ],
)
def test_garbage_tokens_read_as_nothing(garbage: str) -> None:
    assert read_token(garbage, [SECRET], now=T0) is None


def test_a_second_spelling_of_a_valid_token_is_refused() -> None:
    # A token whose length leaves spare bits in its last character: setting them spells
    # the same bytes differently, which must not be a second valid token.
    order = next(o for o in (f"ord_{n}" for n in range(10)) if (5 + len(o) + 16) % 3)
    token = issue_token(order, SECRET, expires_at=EXPIRES)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    respelled = token[:-1] + alphabet[last | 1 if last % 2 == 0 else last & ~1]
    assert respelled != token
    assert read_token(respelled, [SECRET], now=EXPIRES - timedelta(days=1)) is None


def test_issue_token_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="secret"):
        issue_token(ORDER, "", expires_at=EXPIRES)
    with pytest.raises(ValueError, match="order id"):
        issue_token("", SECRET, expires_at=EXPIRES)
    with pytest.raises(ValueError, match="order id"):
        issue_token("x" * 201, SECRET, expires_at=EXPIRES)
    with pytest.raises(ValueError, match="time zone"):
        issue_token(ORDER, SECRET, expires_at=datetime(2024, 6, 1))


def test_token_id_is_short_stable_and_not_the_token() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    assert token_id(token) == token_id(token)
    assert token_id(token) == hashlib.sha256(token.encode()).hexdigest()[:32]
    assert token not in token_id(token)
    other = issue_token(ORDER, SECRET, expires_at=EXPIRES + timedelta(days=1))
    assert token_id(other) != token_id(token)


@pytest.mark.parametrize("score", [1, 3, 5])
def test_thank_you_page_is_self_contained_html(score: int) -> None:
    page = thank_you_page(score)
    assert page.startswith("<!doctype html>")
    assert "</html>" in page
    assert f"{score} out of 5" in page
    for external in ("http://", "https://", "<script", "<link", "<img", "src="):
        assert external not in page


def test_thank_you_page_refuses_a_score_outside_one_to_five() -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        thank_you_page(6)


def test_not_found_page_says_nothing_about_why() -> None:
    page = not_found_page()
    assert page.startswith("<!doctype html>")
    assert "not found" in page.lower()
    for telling in ("expired", "signature", "invalid token", "order", "http"):
        assert telling not in page.lower()


def test_a_rating_page_posts_its_score_to_its_own_link_and_fetches_nothing() -> None:
    token = issue_token(ORDER, SECRET, expires_at=EXPIRES)
    page = rating_page(token, 4)
    assert f'<form method="post" action="/feedback/{token}">' in page
    assert '<input type="hidden" name="score" value="4">' in page
    assert "Rate it 4 out of 5</button>" in page
    for external in ("http://", "https://", "<script", "<link", "<img", "src="):
        assert external not in page
    # A token is the link's own text: whatever it holds, it cannot leave the attribute.
    assert 'action="/feedback/&quot;&gt;&lt;b&gt;"' in rating_page('"><b>', 1)
    with pytest.raises(ValueError, match="1 to 5"):
        rating_page(token, 0)
