"""A process's actor runtimes, one per partition of the order stream, seen as one: ready
only while every one reads, as far behind as the furthest."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from actors.runtime import ActorRuntime


class Runtimes:
    def __init__(self, runtimes: Sequence[ActorRuntime]) -> None:
        if not runtimes:
            raise ValueError("at least one runtime")
        self.all = list(runtimes)

    @property
    def consumer(self) -> str:
        return self.all[0].consumer

    @property
    def reading(self) -> bool:
        return all(r.reading for r in self.all)

    @property
    def oldest_pending_s(self) -> float:
        return max(r.oldest_pending_s for r in self.all)

    @property
    def outages(self) -> int:
        return sum(r.outages for r in self.all)

    @property
    def active_actors(self) -> int:
        return sum(r.active_actors for r in self.all)

    @property
    def turns_done(self) -> int:
        return sum(r.turns_done for r in self.all)

    @property
    def last_progress(self) -> float:
        """When a runtime last moved an order on (a stuck partition shows in
        :attr:`oldest_pending_s`, which readiness reads)."""
        return max(r.last_progress for r in self.all)

    async def wait_started(self) -> None:
        """Until every runtime reads new entries."""
        await asyncio.gather(*(r.started.wait() for r in self.all))

    async def stop(self, grace_s: float) -> bool:
        """Stop every runtime within ``grace_s``; True if all their turns finished."""
        return all(await asyncio.gather(*(r.stop(grace_s) for r in self.all)))

    async def abort(self) -> None:
        await asyncio.gather(*(r.abort() for r in self.all))
