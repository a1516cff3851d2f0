"""Coalescing concurrent calls into batches.

Many order actors ask for the same kind of work at once (reserve, write a ledger row).
A :class:`Coalescer` gathers the calls made while earlier batches are in flight, hands
them to one handler call, and fans the results back to each caller. The batch size is
bounded, as is the time a call waits to be joined by others (the linger).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Handler = Callable[[Sequence[T]], Awaitable[Sequence["R | BaseException"]]]


class Coalescer(Generic[T, R]):
    """``await coalescer.submit(item)`` returns that item's result from a batched handler.

    The handler gets a list of items and returns one result per item, in order; a result
    that is an exception is raised to that item's caller only. If the handler itself
    raises, every caller in the batch gets the exception.
    """

    def __init__(
        self,
        handler: Handler[T, R],
        *,
        max_batch: int = 256,
        linger_s: float = 0.0,
        max_in_flight: int = 2,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1 or linger_s < 0:
            raise ValueError("max_batch and max_in_flight must be >= 1, linger_s >= 0")
        self._handler = handler
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        return await self.post(item)

    def post(self, item: T) -> asyncio.Future[R]:
        """Submit ``item`` without waiting: its result, or exception, comes in the future."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._pending or self._in_flight >= self._max_in_flight:
            return
        full = len(self._pending) >= self._max_batch
        if self._scheduled and not (full and self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()  # a full batch does not wait out the linger
            self._timer = None
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if full or self._linger_s == 0:
            # Next loop turn: everything submitted in this one rides along.
            loop.call_soon(self._flush)
        else:
            self._timer = loop.call_later(self._linger_s, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._timer = None
        if not self._pending or self._in_flight >= self._max_in_flight:
            return
        batch, self._pending = (
            self._pending[: self._max_batch],
            self._pending[self._max_batch :],
        )
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._schedule()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._handler([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch handler gave {len(results)} results for {len(batch)}")
        except BaseException as exc:  # every caller must hear of it, even on cancellation
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # the caller gave up waiting
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._schedule()

    async def drain(self) -> None:
        """Wait until every submitted item has been handled."""
        while self._pending or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(self._linger_s)
