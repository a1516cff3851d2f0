"""Turns yielding to a burst of webhooks: a few at a time, and never for too long."""

from __future__ import annotations

import asyncio

import pytest

from actors.yielding import Yielding

NOW = 1_000_000.0


def gate(pressed: list[bool], limit: int = 2) -> Yielding:
    return Yielding(limit=limit, pressed=lambda: pressed[0], max_defer_s=30, clock=lambda: NOW)


async def started(waiters: list[asyncio.Task[None]]) -> int:
    for _ in range(5):
        await asyncio.sleep(0)  # let every waiter that was let in resume
    return sum(task.done() for task in waiters)


async def test_while_pressed_only_the_limit_runs_and_each_end_lets_one_in() -> None:
    pressed = [True]
    yielding = gate(pressed)
    await yielding.enter(NOW)
    await yielding.enter(NOW)
    waiters = [asyncio.create_task(yielding.enter(NOW)) for _ in range(3)]
    assert await started(waiters) == 0
    yielding.leave()
    assert await started(waiters) == 1
    assert yielding.running == 2


async def test_when_the_pressure_is_off_the_waiting_come_back_doubling() -> None:
    pressed = [True]
    yielding = gate(pressed)
    await yielding.enter(NOW)
    await yielding.enter(NOW)
    waiters = [asyncio.create_task(yielding.enter(NOW)) for _ in range(5)]
    assert await started(waiters) == 0
    pressed[0] = False
    yielding.leave()  # one ends, two come in
    assert await started(waiters) == 2
    yielding.leave()
    assert await started(waiters) == 4
    yielding.leave()
    assert await started(waiters) == 5
    assert yielding.running == 4
    await asyncio.wait_for(yielding.enter(NOW), timeout=1)  # nobody waiting, not pressed: at once
    assert yielding.running == 5


async def test_a_message_older_than_the_deferral_does_not_wait() -> None:
    yielding = gate([True], limit=1)
    await yielding.enter(NOW)
    await asyncio.wait_for(yielding.enter(NOW - 31), timeout=1)
    assert yielding.running == 2


async def test_a_cancelled_waiter_takes_no_place() -> None:
    yielding = gate([True], limit=1)
    await yielding.enter(NOW)
    cancelled = asyncio.create_task(yielding.enter(NOW))
    waiting = asyncio.create_task(yielding.enter(NOW))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert yielding.waiting == 1
    yielding.leave()
    await waiting
    assert yielding.running == 1
