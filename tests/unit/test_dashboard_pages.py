"""The dashboard's pure parts: the charts' SVG, an order's events in words, the session
cookie, the window's days."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from adapters.postgres.dashboard import DayCount
from daemon import charts
from daemon.dashboard import (
    back_to,
    day_columns,
    days_of,
    session_valid,
    session_value,
    state_chart,
    when,
)
from daemon.timeline import describe


def _values(svg: str, attribute: str = "data-value") -> list[str]:
    return re.findall(rf'{attribute}="([^"]*)"', svg)


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (250, 500), (0.3, 0.5)]
)
def test_the_axis_tops_at_one_two_or_five_times_a_power_of_ten(value: float, top: float) -> None:
    assert charts.nice_max(value) == pytest.approx(top)


def test_stacked_bars_carry_each_part_and_each_total() -> None:
    svg = charts.stacked_bars(
        ["Mon", "Tue"],
        [("shipped", "#5b8", [3, 0]), ("held", "#d33", [1, 2]), ("never", "#000", [0, 0])],
        title="Orders",
    )
    parts = re.findall(r'data-column="(\w+)" data-series="(\w+)" data-value="(\d+)"', svg)
    assert parts == [("Mon", "shipped", "3"), ("Mon", "held", "1"), ("Tue", "held", "2")]
    assert _values(svg, "data-total") == ["4", "2"]
    assert ">never<" not in svg  # a series with nothing is left out of the legend
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")


def test_the_charts_escape_what_they_are_given() -> None:
    svg = charts.bars(['<script>"x"</script>'], [1], title="a & b", colour='red" onload="x')
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert 'onload="x' not in svg
    assert "a &amp; b" in svg


def test_a_line_of_shares_leaves_a_gap_where_there_is_no_figure() -> None:
    svg = charts.shares(["a", "b", "c", "d", "e"], [0.5, 1.0, None, 0.25, None], title="CSAT")
    assert _values(svg) == ["0.5000", "1.0000", "0.2500"]
    # One line through the first two points; the lone point after the gap has none.
    assert len(re.findall("<polyline", svg)) == 1


def test_bars_need_one_value_per_label() -> None:
    with pytest.raises(ValueError, match="shorter"):
        charts.bars(["a", "b"], [1], title="t", colour="#000")


def test_orders_by_state_chart_puts_unknown_states_last_and_days_outside_aside() -> None:
    days = [date(2026, 12, 1), date(2026, 12, 2)]
    counts = [
        DayCount(date(2026, 12, 1), "shipped", 2),
        DayCount(date(2026, 12, 2), "needs_attention", 1),
        DayCount(date(2026, 12, 2), "mystery", 4),
        DayCount(date(2026, 11, 30), "shipped", 9),  # outside the window's days
    ]
    svg = state_chart(counts, days)
    series = re.findall(r'data-series="([a-z ]+)" data-value="(\d+)"', svg)
    assert series == [("shipped", "2"), ("needs attention", "1"), ("mystery", "4")]


def test_the_window_has_each_utc_day_it_touches() -> None:
    since = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    until = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert day_columns(since, until) == [date(2026, 11, 28), date(2026, 11, 29), date(2026, 11, 30)]


@pytest.mark.parametrize("bad", ["0", "91", "-1", "x", "7.5", " 7", "٣"])
def test_days_is_a_whole_number_from_1_to_90(bad: str) -> None:
    with pytest.raises(ValueError, match="days: a whole number from 1 to 90"):
        days_of(bad)


def test_days_default_to_a_week() -> None:
    assert (days_of(None), days_of(""), days_of("1"), days_of("90")) == (7, 7, 1, 90)


def test_a_session_is_signed_with_the_token_and_expires() -> None:
    value = session_value("secret", 2_000)
    assert session_valid("secret", value, 1_999)
    assert not session_valid("secret", value, 2_000)  # expired
    assert not session_valid("another", value, 1_000)  # the token changed: sessions end
    assert not session_valid("", value, 1_000)
    forged = value.replace("2000.", "9999.")  # a later expiry under the old tag
    assert not session_valid("secret", forged, 1_000)
    for junk in ("", ".", "abc", "1e9.x", "9" * 40 + ".00"):
        assert not session_valid("secret", junk, 1_000)


def test_moments_show_in_utc_to_the_minute() -> None:
    assert when("2026-12-05T08:30:59+02:00") == "2026-12-05 06:30"
    assert when(None) == "-"


EVENTS = [
    ({"type": "received", "order": {"platform": "shopify", "lines": [{"sku": "A", "quantity": 2}]}},
     "paid order received from shopify: 2 x A"),
    ({"type": "stock_allocated", "status": "partially_reserved", "policy": "wait_all",
      "holdings": [["main", "A", 1, 1]]},
     "stock partially reserved under the wait all policy: A: 1 reserved, 1 waiting in main"),
    ({"type": "needs_attention", "reason": "unknown sku ('X')"},
     "held for a person: unknown sku ('X')"),
    ({"type": "carrier_chosen", "shipment_id": "S1", "reason": "cheapest on time",
      "rate": {"carrier": "easypost", "service": "Priority", "amount": "5.10", "currency": "USD"},
      "alternatives": [{}]},
     "shipment S1: easypost Priority chosen at 5.10 USD over 1 other rate, because cheapest "
     "on time"),
    ({"type": "pack_mismatch", "shipment_id": "S1", "difference": "1 x B too many"},
     "shipment S1 packed wrong, held: 1 x B too many"),
    ({"type": "delayed", "shipment_id": "S1", "reason": "no scan for 2 days"},
     "shipment S1 late: no scan for 2 days"),
    ({"type": "tracked", "shipment_id": "S1", "status": "out_for_delivery", "detail": ""},
     "shipment S1: out for delivery"),
    ({"type": "short_picked", "shipment_id": "S1", "missing": [["A", 2]]},
     "shipment S1 short-picked, missing 2 x A: asked for again"),
    ({"type": "message_queued", "kind": "delay_alert", "channels": ["email", "sms"]},
     "delay alert message queued by email, sms"),
    ({"type": "cancelled", "reason": "customer asked", "by": "operator"},
     "cancelled by operator: customer asked"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "words"), EVENTS)
def test_each_event_in_words_says_why(event: dict[str, object], words: str) -> None:
    assert describe({"at": "2026-12-05T00:00:00Z", **event}) == words


def test_an_event_not_known_here_is_shown_by_its_fields() -> None:
    event = {"type": "new_kind", "at": "x", "shipment_id": "S1", "nested": {"a": 1}}
    assert describe(event) == "new kind: shipment_id S1"
    # An event of a known type whose fields are not what its words expect still shows.
    assert describe({"type": "stock_allocated", "holdings": 5}) == "stock allocated: holdings 5"


@pytest.mark.parametrize(
    ("asked", "back"),
    [
        ("/dashboard?days=30", "/dashboard?days=30"),
        ("/dashboard/orders/ord_1", "/dashboard/orders/ord_1"),
        ("/dashboard/orders/%231001", "/dashboard/orders/%231001"),
        ("//elsewhere.example/dashboard", "/dashboard"),
        ("https://elsewhere.example/dashboard", "/dashboard"),
        ("/dashboard/../metrics", "/dashboard"),
        ("/dashboard\\x", "/dashboard"),
        ("/metrics", "/dashboard"),
        (None, "/dashboard"),
        (5, "/dashboard"),
    ],
)
def test_sign_in_goes_back_only_to_a_page_of_the_dashboard(asked: object, back: str) -> None:
    assert back_to(asked) == back
