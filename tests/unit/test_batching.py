"""Coalescing concurrent calls into batches: grouping, results, errors and the linger."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors.batching import Coalescer


class Handler:
    """Doubles each item; fails items that are negative, and the whole batch on 13."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.hold = False

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        if self.hold:
            await self.release.wait()
        if 13 in items:
            raise RuntimeError("unlucky batch")
        return [ValueError(f"negative: {i}") if i < 0 else 2 * i for i in items]


async def test_calls_made_together_share_one_batch_and_get_their_own_results() -> None:
    handler = Handler()
    batches = Coalescer(handler)
    results = await asyncio.gather(*(batches.submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert handler.batches == [[0, 1, 2, 3, 4]]


async def test_an_item_error_reaches_its_caller_only_and_a_batch_error_everyone() -> None:
    handler = Handler()
    batches = Coalescer(handler)
    answers = await asyncio.gather(
        batches.submit(1), batches.submit(-1), batches.submit(2), return_exceptions=True
    )
    assert answers[0] == 2
    assert isinstance(answers[1], ValueError)
    assert answers[2] == 4
    failed = await asyncio.gather(batches.submit(13), batches.submit(3), return_exceptions=True)
    assert all(isinstance(a, RuntimeError) for a in failed)


async def test_batches_are_bounded_in_size_and_in_flight() -> None:
    handler = Handler()
    handler.hold = True
    batches = Coalescer(handler, max_batch=2, max_in_flight=1)
    calls = [asyncio.ensure_future(batches.submit(i)) for i in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert handler.batches == [[0, 1]]  # the next waits for this one to finish
    handler.release.set()
    assert await asyncio.gather(*calls) == [0, 2, 4, 6, 8]
    assert handler.batches == [[0, 1], [2, 3], [4]]


async def test_calls_within_the_linger_share_a_batch_that_goes_once_full() -> None:
    handler = Handler()
    # An hour's linger: the batch can only go early, because it is full.
    batches = Coalescer(handler, max_batch=3, linger_s=3600)
    first = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batches.submit(2))
    for _ in range(3):
        await asyncio.sleep(0)
    assert handler.batches == []  # lingering, not lost
    third = asyncio.ensure_future(batches.submit(3))
    done = await asyncio.wait_for(asyncio.gather(first, second, third), timeout=30)
    assert list(done) == [2, 4, 6]
    assert handler.batches == [[1, 2, 3]]


async def test_a_lone_call_goes_when_the_linger_is_over() -> None:
    handler = Handler()
    batches = Coalescer(handler, linger_s=0.01)
    assert await asyncio.wait_for(batches.submit(5), timeout=30) == 10
    assert handler.batches == [[5]]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Handler(), max_batch=0)
    with pytest.raises(ValueError, match="linger_s"):
        Coalescer(Handler(), linger_s=-1)
