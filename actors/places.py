"""The places of the order turns running in one process, and how a turn waiting on a
carrier lends its place to others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from actors.yielding import Yielding


class Places:
    """The places of the turns running: max_turns, and fewer while webhooks press
    (:class:`Yielding`).

    A turn waiting on a carrier (rates, a label bought and its file made durable: half of
    such a turn's time) lends its place to other orders' turns, up to max_turns turns out
    at once; past that it keeps its place while it waits, so the calls to carriers stay
    bounded. Back from the carrier it goes on at once, ahead of the turns waiting to
    start: the place it takes is paid for by the next one given back, so for that moment
    the turns running exceed the bound by at most the turns that were out.
    """

    def __init__(self, limit: int, yielding: Yielding) -> None:
        self._free = asyncio.Semaphore(limit)
        self._limit = limit
        self._yielding = yielding
        self._owed = 0  # places taken by turns back from a carrier, not yet paid for
        self.outside = 0  # turns out at a carrier, their places lent

    def place(self, arrived_s: float) -> Place:
        return Place(self, arrived_s)

    async def take(self, arrived_s: float) -> None:
        await self._free.acquire()
        try:
            await self._yielding.enter(arrived_s)
        except BaseException:
            self._pay()
            raise

    def give_back(self) -> None:
        self._yielding.leave()
        self._pay()

    def lend(self) -> bool:
        """The place of a turn leaving for a carrier goes to others, if fewer than max_turns
        turns are out already."""
        if self.outside >= self._limit:
            return False
        self.outside += 1
        self.give_back()
        return True

    def take_back(self) -> None:
        """A turn back from a carrier goes on at once."""
        self.outside -= 1
        self._owed += 1
        self._yielding.resume()

    def _pay(self) -> None:
        if self._owed:
            self._owed -= 1
        else:
            self._free.release()


class Place:
    """One turn's place (see :class:`Places`): taken, lent while the turn waits on a
    carrier, given back once; safe to give back after a take cut short."""

    def __init__(self, places: Places, arrived_s: float) -> None:
        self._places = places
        self._arrived_s = arrived_s
        self._held = False

    async def take(self) -> None:
        await self._places.take(self._arrived_s)
        self._held = True

    def give_up(self) -> None:
        if self._held:
            self._held = False
            self._places.give_back()

    @contextlib.asynccontextmanager
    async def outside(self) -> AsyncIterator[None]:
        lent = self._held and self._places.lend()
        if lent:
            self._held = False
        try:
            yield
        finally:
            if lent:
                self._places.take_back()
                self._held = True
