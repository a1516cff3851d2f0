"""The demo's week of orders: when each wave of orders is sent."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.demo import WEEK_DAYS, schedule

START = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("orders", [1, 2, 8, 40, 1000])
def test_every_order_is_sent_once_in_hourly_waves_within_the_week(orders: int) -> None:
    waves = schedule(orders, START, ZoneInfo("UTC"), random.Random(1))
    assert sum(size for _, size in waves) == orders
    moments = [at for at, _ in waves]
    assert moments == sorted(set(moments))
    assert all(START <= at < START + timedelta(days=WEEK_DAYS) for at in moments)
    assert all((at - START) % timedelta(hours=1) == timedelta(0) for at in moments)


def test_the_orders_are_shared_out_over_every_day_of_the_week() -> None:
    waves = schedule(70, START, ZoneInfo("UTC"), random.Random(2))
    per_day = Counter((at - START) // timedelta(days=1) for at, size in waves for _ in range(size))
    assert per_day == {day: 10 for day in range(WEEK_DAYS)}


def test_eight_orders_span_most_of_the_week() -> None:
    waves = schedule(8, START, ZoneInfo("UTC"), random.Random(3))
    assert waves[-1][0] - waves[0][0] > timedelta(days=4)


@pytest.mark.parametrize("zone", ["UTC", "America/Chicago", "Asia/Tokyo"])
def test_evenings_are_busier_than_nights_where_the_warehouse_is(zone: str) -> None:
    waves = schedule(5000, START, ZoneInfo(zone), random.Random(4))
    by_hour = Counter[int]()
    for at, size in waves:
        by_hour[at.astimezone(ZoneInfo(zone)).hour] += size
    night = sum(by_hour[h] for h in range(0, 6))
    evening = sum(by_hour[h] for h in range(18, 24))
    assert evening > 3 * night


def test_the_same_draw_gives_the_same_week() -> None:
    first = schedule(40, START, ZoneInfo("UTC"), random.Random("run"))
    assert first == schedule(40, START, ZoneInfo("UTC"), random.Random("run"))
