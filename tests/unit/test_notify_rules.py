"""Customer-message rules and templates: phone numbers, channel choice, quiet hours,
rendering. Pure: no network, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import msgspec
import pytest

from actors.notify.model import Kind, Outgoing
from actors.notify.rules import (
    COUNTRY_ZONES,
    NUMBERING_PLANS,
    Channels,
    channels_for,
    is_e164,
    quiet_until,
    to_e164,
)
from adapters.notify.templates import SMS_MAX_CHARS, TemplateError, Templates

KINDS: tuple[Kind, ...] = get_args(Kind)

# ---- E.164 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("+15552345678", True),
        ("+447700900123", True),
        ("+12345678", True),  # 8 digits, the shortest allowed
        ("+123456789012345", True),  # 15 digits, the longest
        ("+1234567", False),
        ("+1234567890123456", False),
        ("+0447700900123", False),  # no country code starts with 0
        ("15552345678", False),
        ("+1 555 234 5678", False),
        ("+1555234567\N{ARABIC-INDIC DIGIT EIGHT}", False),
        ("", False),
    ],
)
def test_is_e164_accepts_only_plus_and_8_to_15_digits(phone: str, valid: bool) -> None:
    assert is_e164(phone) is valid


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("(555) 234-5678", "US", "+15552345678"),
        ("555.234.5678", "us", "+15552345678"),
        ("1-555-234-5678", "US", "+15552345678"),
        ("416 555 0199", "CA", "+14165550199"),
        ("07700 900123", "GB", "+447700900123"),
        ("+44 (0)7700 900123", None, "+447700900123"),
        ("0044 7700 900123", "US", "+447700900123"),
        ("+1 (555) 234-5678", "GB", "+15552345678"),
        ("06 12345678", "NL", "+31612345678"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("0470 12 34 56", "BE", "+32470123456"),
        ("612 345 678", "ES", "+34612345678"),
        ("0412 345 678", "AU", "+61412345678"),
    ],
)
def test_to_e164_normalises_national_and_international_formats(
    phone: str, country: str | None, expected: str
) -> None:
    assert to_e164(phone, country) == expected


@pytest.mark.parametrize(
    ("phone", "country"),
    [
        (None, "US"),
        ("", "US"),
        ("call me", "US"),
        ("12345", "US"),
        ("055 234 5678", "US"),  # area codes never start with 0 or 1
        ("555 134 5678", "US"),  # nor do exchanges
        ("7700 900123", "GB"),  # no trunk prefix: maybe a foreign number without its "+"
        ("06 1234 5678 99", "NL"),  # too long for a Dutch number
        ("0612345678", None),  # national, and no country to read it with
        ("0612345678", "ZZ"),
        ("+0 123 456 789", None),
        ("+44 7700", None),
    ],
)
def test_to_e164_gives_none_when_not_confident(phone: str | None, country: str | None) -> None:
    assert to_e164(phone, country) is None


def test_every_numbering_plan_produces_valid_e164() -> None:
    for country, plan in NUMBERING_PLANS.items():
        national = plan.trunk_prefix + "9" * plan.max_digits
        if plan.calling_code == "1":
            national = "2125550199"
        result = to_e164(national, country)
        assert result is not None, country
        assert is_e164(result)


# ---- channel choice -----------------------------------------------------------------------

EMAIL = "ada@example.com"
PHONE = "+15552345678"


@pytest.mark.parametrize(
    ("setting", "email", "phone", "consent", "enabled", "expected"),
    [
        ("email", EMAIL, PHONE, True, True, ("email",)),
        ("email", None, PHONE, True, True, ()),  # email only never texts
        ("sms", EMAIL, PHONE, True, True, ("sms",)),
        ("sms", EMAIL, None, True, True, ("email",)),  # falls back to email
        ("sms", EMAIL, PHONE, False, True, ("email",)),
        ("sms", EMAIL, PHONE, True, False, ("email",)),
        ("sms", EMAIL, "555-234-5678", True, True, ("email",)),  # not E.164: unusable
        ("sms", None, None, True, True, ()),
        ("sms", None, PHONE, True, True, ("sms",)),
        ("both", EMAIL, PHONE, True, True, ("email", "sms")),
        ("both", EMAIL, None, True, True, ("email",)),
        ("both", EMAIL, PHONE, False, True, ("email",)),
        ("both", None, PHONE, True, True, ("sms",)),
        ("both", "  ", None, False, False, ()),
        ("both", "not an address", None, True, True, ()),
        ("both", None, None, True, True, ()),
    ],
)
def test_channels_are_the_setting_narrowed_to_what_the_customer_allows(
    setting: Channels,
    email: str | None,
    phone: str | None,
    consent: bool,
    enabled: bool,
    expected: tuple[str, ...],
) -> None:
    chosen = channels_for(
        setting, email=email, phone=phone, sms_consent=consent, sms_enabled=enabled
    )
    assert chosen == expected


# ---- quiet hours --------------------------------------------------------------------------

NIGHT_START, NIGHT_END = time(21, 0), time(8, 0)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _night(now: str, country: str | None, zones: dict[str, str] | None = None) -> str | None:
    """When 21:00-08:00 quiet hours end for ``now`` (UTC), as a UTC ISO string."""
    until = quiet_until(_utc(now), country, start=NIGHT_START, end=NIGHT_END, zones=zones)
    return None if until is None else until.replace(tzinfo=None).isoformat(timespec="minutes")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2025-01-15T02:00", "2025-01-15T13:00"),  # 21:00 EST, the first quiet minute
        ("2025-01-15T03:00", "2025-01-15T13:00"),  # 22:00 EST, before midnight
        ("2025-01-15T10:00", "2025-01-15T13:00"),  # 05:00 EST, after midnight
        ("2025-01-15T13:00", None),  # 08:00 EST, quiet hours just over
        ("2025-01-15T15:00", None),  # 10:00 EST
        ("2025-01-15T01:59", None),  # 20:59 EST
    ],
)
def test_quiet_hours_span_midnight_in_the_customers_zone(now: str, expected: str | None) -> None:
    assert _night(now, "US") == expected


def test_quiet_hours_follow_daylight_saving_time() -> None:
    # New York in summer is UTC-4: 22:00 EDT is 02:00 UTC, 08:00 EDT is 12:00 UTC.
    assert _night("2025-07-01T02:00", "US") == "2025-07-01T12:00"
    # The night clocks go forward: it starts at 22:00 EST and ends at 08:00 EDT.
    assert _night("2025-03-09T03:00", "US") == "2025-03-09T12:00"
    # Sydney is on summer time (UTC+11) in January.
    assert _night("2025-01-15T12:00", "AU") == "2025-01-15T21:00"


@pytest.mark.parametrize("country", [None, "ZZ", ""])
def test_unknown_countries_keep_quiet_hours_in_utc(country: str | None) -> None:
    assert _night("2025-01-15T22:00", country) == "2025-01-16T08:00"
    assert _night("2025-01-15T12:00", country) is None


def test_quiet_hours_use_the_operators_zone_over_the_built_in_one() -> None:
    # 04:00 UTC is 23:00 in New York but 20:00 in Los Angeles.
    assert _night("2025-01-15T04:00", "US") == "2025-01-15T13:00"
    assert _night("2025-01-15T04:00", "us", zones={"US": "America/Los_Angeles"}) is None


def test_quiet_hours_within_one_day_and_none_at_all() -> None:
    noon, two = time(12, 0), time(14, 0)
    inside = quiet_until(_utc("2025-01-15T13:00"), None, start=noon, end=two)
    assert inside == _utc("2025-01-15T14:00")
    assert quiet_until(_utc("2025-01-15T14:00"), None, start=noon, end=two) is None
    assert quiet_until(_utc("2025-01-15T08:00"), None, start=NIGHT_END, end=NIGHT_END) is None


def test_quiet_hours_answer_in_utc_whatever_zone_now_is_in() -> None:
    now = datetime(2025, 1, 15, 23, 0, tzinfo=timezone(timedelta(hours=1)))  # 22:00 UTC
    until = quiet_until(now, "GB", start=NIGHT_START, end=NIGHT_END)
    assert until == _utc("2025-01-16T08:00")
    assert until is not None
    assert until.tzinfo is UTC


def test_quiet_hours_refuse_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(datetime(2025, 1, 15, 22, 0), "US", start=NIGHT_START, end=NIGHT_END)


def test_every_built_in_country_zone_exists() -> None:
    for country, zone in COUNTRY_ZONES.items():
        assert ZoneInfo(zone).key == zone, country


# ---- templates ----------------------------------------------------------------------------

CONTEXT = {
    "store_name": "Example Goods",
    "customer_name": "<script>alert(1)</script>",
    "order_name": "#1001",
    "carrier": "UPS",
    "service": "Ground",
    "tracking_number": "1Z999AA10123456784",
    "tracking_url": "https://track.example/1Z999AA10123456784?a=1&b=2",
    "estimated_delivery": "Friday 14 March",
    "expected_line": "We expect them by 20 March.",
    "new_estimate_line": "It should now arrive by 18 March.",
    "reason": "Address not found",
    "delivered_at": "14 March, 14:05",
    "shop_url": "https://shop.example/",
}
ITEMS = (("MUG-BLK", "Mug & Saucer", 2), ("TEE-M", "T-shirt", 1))
RATINGS = tuple((str(n), f"https://orderd.example/feedback/tok?score={n}&x=1") for n in range(1, 6))


def _message(kind: Kind = "shipping_confirmation", **changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "idempotency_key": f"order-1001:{kind}",
        "kind": kind,
        "channel": "email",
        "to": EMAIL,
        "context": dict(CONTEXT),
        "items": ITEMS,
        "links": RATINGS if kind == "review_request" else (),
    }
    fields.update(changes)
    return Outgoing(**fields)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_email_and_sms(templates: Templates, kind: Kind) -> None:
    message = _message(kind)
    subject, text, body = templates.render_email(message)
    sms = templates.render_sms(message)
    for part in (subject, text, body, sms):
        assert part.strip()
        assert "$" not in part
    assert "\n" not in subject
    assert "#1001" in subject or "Example Goods" in subject
    assert "#1001" in text
    assert "#1001" in body
    assert body.lstrip().startswith("<!DOCTYPE html>")
    assert len(sms) <= SMS_MAX_CHARS


@pytest.mark.parametrize("kind", KINDS)
def test_html_escapes_every_value(templates: Templates, kind: Kind) -> None:
    _, _, body = templates.render_email(_message(kind))
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_shipping_confirmation_carries_tracking_and_items(templates: Templates) -> None:
    subject, text, body = templates.render_email(_message())
    assert subject == "Your Example Goods order #1001 is on its way"
    assert "Tracking number: 1Z999AA10123456784" in text
    assert "https://track.example/1Z999AA10123456784?a=1&b=2" in text
    assert "Friday 14 March" in text
    assert "2 x Mug & Saucer (MUG-BLK)\n1 x T-shirt (TEE-M)" in text
    assert 'href="https://track.example/1Z999AA10123456784?a=1&amp;b=2"' in body
    assert "<table" in body
    assert "Mug &amp; Saucer" in body
    assert "MUG-BLK" in body
    sms = templates.render_sms(_message(channel="sms", to=PHONE))
    assert "1Z999AA10123456784" in sms
    assert "https://track.example/" in sms


def test_review_request_offers_one_click_ratings(templates: Templates) -> None:
    _, text, body = templates.render_email(_message("review_request"))
    for score in range(1, 6):
        assert f"{score}: https://orderd.example/feedback/tok?score={score}&x=1" in text
        assert f'href="https://orderd.example/feedback/tok?score={score}&amp;x=1"' in body
        assert f">{score}</a>" in body


def test_an_empty_optional_sentence_leaves_no_gap(templates: Templates) -> None:
    context = {**CONTEXT, "expected_line": "", "new_estimate_line": ""}
    for kind in ("backorder_notice", "delay_alert"):
        _, text, _ = templates.render_email(_message(kind, context=context))
        assert "\n\n\n" not in text
        assert not any(line != line.rstrip() for line in text.splitlines())
        sms = templates.render_sms(_message(kind, context=context))
        assert "  " not in sms


def test_a_value_with_a_line_break_keeps_the_subject_on_one_line(templates: Templates) -> None:
    context = {**CONTEXT, "store_name": "Example\r\nBcc: someone@example.org"}
    subject, _, _ = templates.render_email(_message(context=context))
    assert "\n" not in subject
    assert "\r" not in subject


def test_a_missing_value_names_the_template_and_the_key(templates: Templates) -> None:
    context = {k: v for k, v in CONTEXT.items() if k != "tracking_number"}
    with pytest.raises(TemplateError, match=r"shipping_confirmation\.txt.*'tracking_number'"):
        templates.render_email(_message(context=context))
    with pytest.raises(TemplateError, match="'tracking_number'"):
        templates.render_sms(_message(context=context))


def test_a_link_that_is_not_http_is_refused(templates: Templates) -> None:
    message = _message("review_request", links=(("5", "javascript:alert(1)"),))
    with pytest.raises(TemplateError, match="'5'"):
        templates.render_email(message)


def test_sms_longer_than_480_characters_is_cut_with_an_ellipsis(templates: Templates) -> None:
    context = {**CONTEXT, "reason": "The parcel was damaged in transit. " * 30}
    sms = templates.render_sms(_message("delivery_exception", channel="sms", context=context))
    assert len(sms) <= SMS_MAX_CHARS
    assert len(sms) >= SMS_MAX_CHARS - 2
    assert sms.endswith("…")
    short = templates.render_sms(_message("delivered", channel="sms"))
    assert not short.endswith("…")


def test_an_override_replaces_only_its_own_template(tmp_path: Path) -> None:
    (tmp_path / "shipping_confirmation.subject.txt").write_text("Shipped: $order_name\n")
    templates = Templates(tmp_path)
    subject, text, _ = templates.render_email(_message())
    assert subject == "Shipped: #1001"
    assert text == Templates().render_email(_message())[1]


def test_a_localised_override_is_chosen_by_locale_then_language(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "delivered.subject.txt").write_text("Ihre Bestellung $order_name ist da")
    templates = Templates(str(tmp_path))
    assert templates.render_email(_message("delivered", locale="de-AT"))[0] == (
        "Ihre Bestellung #1001 ist da"
    )
    assert templates.render_email(_message("delivered", locale="de"))[0].startswith("Ihre")
    english = templates.render_email(_message("delivered", locale="en-GB"))[0]
    assert english == "Your Example Goods order #1001 has arrived"
    assert templates.render_email(_message("delivered", locale="../de"))[0] == english


def test_a_misspelt_override_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shiping_confirmation.txt").write_text("Hello")
    with pytest.raises(TemplateError, match=r"shiping_confirmation\.txt"):
        Templates(tmp_path)


def test_a_stray_dollar_in_an_override_is_refused(tmp_path: Path) -> None:
    (tmp_path / "repeat_purchase.txt").write_text("Save $5 on your next order: $shop_url")
    with pytest.raises(TemplateError, match=r"repeat_purchase\.txt.*\$\$"):
        Templates(tmp_path)


def test_a_missing_override_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        Templates(tmp_path / "nowhere")


def test_outgoing_survives_a_json_round_trip() -> None:
    message = _message("review_request", locale="en-GB")
    encoded = msgspec.json.encode(message)
    assert msgspec.json.decode(encoded, type=Outgoing) == message


def test_a_split_order_s_confirmation_names_its_parcel(templates: Templates) -> None:
    split = {"parcel_of": " (parcel 1 of 2)",
             "parcel_note": " This is parcel 1 of 2; the rest comes separately."}  # fmt: skip
    message = _message(context={**CONTEXT, **split})
    subject, text, body = templates.render_email(message)
    assert subject == "Your Example Goods order #1001 is on its way (parcel 1 of 2)"
    assert "(Ground). This is parcel 1 of 2; the rest comes separately." in text
    assert "This is parcel 1 of 2; the rest comes separately." in body
    sms = templates.render_sms(_message(channel="sms", to=PHONE, context={**CONTEXT, **split}))
    assert "order #1001 (parcel 1 of 2) has shipped" in sms
    # A message queued before parcels were named (no such keys) says nothing of them.
    assert "parcel 1 of" not in templates.render_email(_message())[1]
