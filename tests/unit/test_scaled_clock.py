"""The daemon's clock for demos and tests: ahead of the wall clock, and faster."""

from __future__ import annotations

from daemon.run import scaled


class Wall:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_unscaled_clock_without_offset_is_the_wall_clock() -> None:
    wall = Wall()
    assert scaled(wall, 1.0) is wall


def test_a_scaled_clock_runs_faster_from_its_start() -> None:
    wall = Wall()
    clock = scaled(wall, 3600.0)
    wall.now += 2
    assert clock() == 1_000 + 7_200


def test_an_offset_clock_starts_ahead_and_runs_at_its_scale() -> None:
    wall = Wall()
    ahead = scaled(wall, 1.0, offset_s=86_400)
    assert ahead() == 1_000 + 86_400
    wall.now += 5
    assert ahead() == 1_005 + 86_400
    fast = scaled(wall, 10.0, offset_s=100)
    wall.now += 1
    assert fast() == 1_005 + 100 + 10
