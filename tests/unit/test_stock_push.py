"""The stock pusher: figures compared each pass and only changes set, coalesced; stale,
unknown and throttled answers waited out; one process at a time; a restart pushes only
what changed while it was down."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from actors.stock_push import Known, Level, LevelChange, LevelResult, StockPusher
from actors.storefront import PlatformError


class Figures:
    def __init__(self) -> None:
        self.units: dict[tuple[str, str], int] = {}

    async def available(self) -> dict[tuple[str, str], int]:
        return dict(self.units)


class Store:
    def __init__(self) -> None:
        self.rows: dict[str, dict[Level, Known]] = {}
        self.loads = 0

    async def load(self, platform: str) -> dict[Level, Known]:
        self.loads += 1
        return dict(self.rows.get(platform, {}))

    async def record(self, platform: str, levels: Mapping[Level, Known]) -> None:
        self.rows.setdefault(platform, {}).update(levels)


class Lease:
    def __init__(self) -> None:
        self.ours = True

    async def hold(self) -> bool:
        return self.ours


class Shop:
    """A platform with one count per sku; ``held`` is what it has."""

    batch = 2

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.calls: list[list[LevelChange]] = []
        self.unknown: set[str] = set()
        self.fail: list[PlatformError] = []

    def levels(self, available: Mapping[tuple[str, str], int]) -> dict[Level, int]:
        found: dict[Level, int] = {}
        for (_, sku), units in available.items():
            found[sku, ""] = found.get((sku, ""), 0) + units
        return found

    async def set_levels(self, changes: Sequence[LevelChange]) -> list[LevelResult]:
        self.calls.append(list(changes))
        if self.fail:
            raise self.fail.pop(0)
        results = []
        for c in changes:
            if c.sku in self.unknown:
                results.append(LevelResult(c.sku, "", "unknown", error="no such sku"))
            elif c.was is not None and self.held.get(c.sku) != c.was:
                results.append(LevelResult(c.sku, "", "stale", self.held.get(c.sku)))
            else:
                self.held[c.sku] = c.quantity
                results.append(LevelResult(c.sku, "", "set"))
        return results

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def pusher(
    figures: Figures, store: Store, lease: Lease, clock: Clock, **platforms: Shop
) -> StockPusher:
    return StockPusher(
        figures=figures,
        pushed=store,
        platforms=platforms,
        lease=lease,
        stale_wait_s=10,
        unknown_wait_s=3600,
        clock=clock,
    )


@pytest.fixture
def parts() -> tuple[Figures, Store, Lease, Clock, Shop]:
    return Figures(), Store(), Lease(), Clock(), Shop()


async def test_movements_between_passes_go_as_one_call_with_the_last_figure(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    push = pusher(figures, store, lease, clock, shop=shop)
    figures.units = {("main", "A"): 5, ("east", "A"): 2, ("main", "B"): 1}
    await push.push_once()
    assert shop.held == {"A": 7, "B": 1}
    # Ten movements of A and none of B before the next pass: one figure, A's last.
    for units in range(10):
        figures.units["main", "A"] = units
    shop.calls.clear()
    await push.push_once()
    assert shop.calls == [[LevelChange("A", "", 11, 7)]]
    assert store.rows["shop"]["A", ""] == Known(11, 11)
    # Nothing changed: nothing is sent.
    shop.calls.clear()
    await push.push_once()
    assert shop.calls == []


async def test_changes_go_in_calls_of_the_platforms_batch_size(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    figures.units = {("main", sku): 1 for sku in "ABCDE"}
    await pusher(figures, store, lease, clock, shop=shop).push_once()
    assert [[c.sku for c in call] for call in shop.calls] == [["A", "B"], ["C", "D"], ["E"]]


async def test_a_figure_the_platform_changed_first_is_set_again_after_the_wait_from_its_own(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    push = pusher(figures, store, lease, clock, shop=shop)
    figures.units = {("main", "A"): 5}
    await push.push_once()
    shop.held["A"] = 4  # a sale on the platform, before its order reaches orderd
    figures.units["main", "A"] = 6  # stock received here meanwhile
    await push.push_once()
    assert shop.held["A"] == 4  # refused: not overwritten
    assert store.rows["shop"]["A", ""] == Known(None, 4, clock.now + 10)
    shop.calls.clear()
    await push.push_once()
    assert shop.calls == []  # waiting for the sale's order to arrive
    clock.now += 10
    figures.units["main", "A"] = 5  # the sale's order reserved one
    await push.push_once()
    assert shop.calls == [[LevelChange("A", "", 5, 4)]]
    assert shop.held["A"] == 5


async def test_a_sku_the_platform_does_not_have_is_asked_again_only_after_an_hour(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    push = pusher(figures, store, lease, clock, shop=shop)
    shop.unknown = {"GONE"}
    figures.units = {("main", "GONE"): 3, ("main", "A"): 1}
    await push.push_once()
    assert store.rows["shop"]["GONE", ""].error == "no such sku"
    figures.units["main", "GONE"] = 2
    shop.calls.clear()
    await push.push_once()
    assert shop.calls == []
    clock.now += 3600
    await push.push_once()
    assert [c.sku for c in shop.calls[0]] == ["GONE"]


async def test_a_throttled_platform_waits_as_long_as_it_asked_while_another_goes_on(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    other = Shop()
    push = pusher(figures, store, lease, clock, shop=shop, other=other)
    shop.fail = [PlatformError("Shopify throttled the call", temporary=True, retry_after_s=7)]
    figures.units = {("main", "A"): 3}
    await push.push_once()
    assert shop.held == {}
    assert other.held == {"A": 3}
    figures.units["main", "A"] = 2
    await push.push_once()
    clock.now += 6.9
    await push.push_once()
    assert len(shop.calls) == 1
    assert other.held == {"A": 2}
    clock.now += 0.1
    await push.push_once()
    assert shop.held == {"A": 2}  # the last figure, once


async def test_a_platform_that_fails_backs_off_longer_each_time(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    push = pusher(figures, store, lease, clock, shop=shop)
    shop.fail = [PlatformError("down", temporary=True) for _ in range(3)]
    figures.units = {("main", "A"): 3}
    waits = []
    for _ in range(3):
        start = clock.now
        calls = len(shop.calls)
        while len(shop.calls) == calls:
            await push.push_once()
            clock.now += 0.5
        waits.append(clock.now - start)
    assert waits[0] < waits[1] < waits[2]


async def test_only_the_process_holding_the_lease_pushes_and_reloads_when_it_gets_it_back(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    push = pusher(figures, store, lease, clock, shop=shop)
    figures.units = {("main", "A"): 3}
    lease.ours = False
    await push.push_once()
    assert shop.calls == []
    assert store.loads == 0
    lease.ours = True
    await push.push_once()
    lease.ours = False
    await push.push_once()
    # Another process pushed meanwhile, and recorded it.
    store.rows["shop"]["A", ""] = Known(9, 9)
    shop.held["A"] = 9
    figures.units["main", "A"] = 9
    lease.ours = True
    shop.calls.clear()
    await push.push_once()
    assert shop.calls == []
    assert store.loads == 2


async def test_a_new_process_pushes_only_what_changed_since_the_last_push(
    parts: tuple[Figures, Store, Lease, Clock, Shop],
) -> None:
    figures, store, lease, clock, shop = parts
    figures.units = {("main", "A"): 3, ("main", "B"): 4}
    await pusher(figures, store, lease, clock, shop=shop).push_once()
    figures.units["main", "B"] = 1  # while no process runs
    shop.calls.clear()
    await pusher(figures, store, lease, clock, shop=shop).push_once()
    assert shop.calls == [[LevelChange("B", "", 1, 4)]]
