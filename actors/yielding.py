"""Order turns yielding to a burst of webhooks, for a bounded time.

A platform's burst (a flash sale) must be answered quickly: an unanswered webhook is
retried and, after enough failures, switched off by the platform. Orders can wait a
little. While intake says it is pressed, at most ``limit`` turns run at once; the rest
wait, but no message waits longer than ``max_defer_s`` past its arrival (its stream entry
id is its arrival time), so a sustained load is shared, not starved.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Yielding:
    def __init__(
        self,
        *,
        limit: int,
        pressed: Callable[[], bool],
        max_defer_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._limit = limit
        self._pressed = pressed
        self._max_defer_s = max_defer_s
        self._clock = clock
        self.running = 0
        self._waiting: deque[tuple[asyncio.Future[None], float]] = deque()

    def _may_run(self, arrived_s: float, pressed: bool) -> bool:
        if not pressed or self.running < self._limit:
            return True
        return self._clock() - arrived_s >= self._max_defer_s

    async def enter(self, arrived_s: float) -> None:
        """Wait until a turn for a message that arrived at ``arrived_s`` may run."""
        if self._may_run(arrived_s, self._pressed()):
            self.running += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((future, arrived_s))
        try:
            await future  # leave() counted this turn as running when it let it in
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.leave()  # let in, then cancelled before running: give the place back
            raise

    def resume(self) -> None:
        """A turn that ran, left (its place lent while it waited on a carrier) and is back
        goes on at once: counted as running again, beyond the limit if need be."""
        self.running += 1

    def leave(self) -> None:
        """A turn ended: let in whoever may run now. Once the pressure is off, each turn
        that ends lets in two: the turns held back come back doubling, not all at once
        (which would bring the pressure straight back)."""
        self.running -= 1
        pressed = self._pressed()
        ramp = 2
        while self._waiting:
            future, arrived_s = self._waiting[0]
            if future.done():
                self._waiting.popleft()  # its turn was cancelled while waiting
                continue
            if pressed and not self._may_run(arrived_s, pressed):
                break
            if not pressed:
                if ramp == 0:
                    break
                ramp -= 1
            self._waiting.popleft()
            self.running += 1
            future.set_result(None)

    @property
    def waiting(self) -> int:
        return sum(1 for future, _ in self._waiting if not future.done())
