"""The stores' stock counts kept to orderd's: available-to-sell per sku pushed to each
platform that writes back, coalesced.

Level-triggered, not per movement: every ``every_s`` the pusher reads what is available
in every warehouse (on hand less reserved), maps it to each platform's inventory (a
Shopify location per warehouse; WooCommerce's one count per product), and sets only the
figures that differ from what the platform was last told. However many movements a sku
sees between two passes, its platform gets one call with the last figure; a process that
dies between a movement and its push loses nothing, since the next pass (in this process
or another) compares again. What each platform was told is kept in PostgreSQL, so a
restart pushes only what changed while it was down.

One process pushes at a time (a lease), so two processes never race one figure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

from msgspec import Struct

from actors.errors import printable
from actors.loops import drain_repeatedly
from actors.storefront import PlatformError

log = logging.getLogger("orderd.stock_push")

Level = tuple[str, str]  # (sku, the platform's location: "" where it has one count)


class LevelChange(Struct, frozen=True):
    """A figure to set on the platform, and what orderd believes it holds now (its last
    push, or what it answered), which the platform checks first where it can."""

    sku: str
    location: str
    quantity: int
    was: int | None


class LevelResult(Struct, frozen=True):
    """What became of one change: ``set``; ``unknown`` (the platform has no such item, or
    refused it); ``stale`` (the platform's figure was not ``was``: another change came
    first; ``platform_has`` is its figure now); ``retry`` (not applied, because another
    figure of the same call was refused: set again next pass)."""

    sku: str
    location: str
    outcome: Literal["set", "unknown", "stale", "retry"]
    platform_has: int | None = None
    error: str | None = None


class Known(Struct, frozen=True):
    """What a platform was last told of one level, and what it holds as far as known."""

    pushed: int | None  # None: to be set (unknown on the platform, or found stale)
    platform_has: int | None
    retry_at: float = 0.0  # not tried again before this time (real clock)
    error: str | None = None


class Inventory(Protocol):
    """One platform's stock counts."""

    @property
    def batch(self) -> int:
        """How many levels one call sets at most."""
        ...

    def levels(self, available: Mapping[tuple[str, str], int]) -> dict[Level, int]:
        """The platform's levels from available units per (warehouse, sku): pure."""
        ...

    async def set_levels(self, changes: Sequence[LevelChange]) -> list[LevelResult]:
        """Set the levels (at most ``batch``); one result per change. A failure of the
        whole call raises :class:`actors.storefront.PlatformError`."""
        ...

    async def close(self) -> None: ...


class StockFigures(Protocol):
    async def available(self) -> dict[tuple[str, str], int]:
        """Units available to sell per (warehouse, sku), as the allocation core has them."""
        ...


class PushedLevels(Protocol):
    """What each platform was told, kept across restarts."""

    async def load(self, platform: str) -> dict[Level, Known]: ...

    async def record(self, platform: str, levels: Mapping[Level, Known]) -> None: ...


class Lease(Protocol):
    async def hold(self) -> bool:
        """Take or keep the right to push; False while another process has it."""
        ...


class StockPusher:
    def __init__(
        self,
        *,
        figures: StockFigures,
        pushed: PushedLevels,
        platforms: Mapping[str, Inventory],
        lease: Lease,
        stale_wait_s: float = 10.0,
        unknown_wait_s: float = 3600.0,
        retry_max_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._figures = figures
        self._pushed = pushed
        self._platforms = dict(platforms)
        self._lease = lease
        # After a stale figure: time for the platform's own order to reach orderd.
        self._stale_wait_s = stale_wait_s
        self._unknown_wait_s = unknown_wait_s
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._known: dict[str, dict[Level, Known]] = {}
        self._paused: dict[str, float] = {}  # platform -> not before (throttled, down)
        self._failures: dict[str, int] = {}

    async def push_once(self) -> int:
        """One pass: set every level that differs from what its platform was told.
        Returns 0 (a pass is never repeated at once: that is what coalesces)."""
        if not self._platforms:
            return 0
        if not await self._lease.hold():
            self._known.clear()  # another process pushes: reload once it is ours again
            return 0
        available = await self._figures.available()
        for name, platform in self._platforms.items():
            if self._clock() < self._paused.get(name, 0.0):
                continue
            await self._push(name, platform, available)
        return 0

    async def _push(
        self, name: str, platform: Inventory, available: Mapping[tuple[str, str], int]
    ) -> None:
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = await self._pushed.load(name)
        now = self._clock()
        changes = []
        for level, quantity in sorted(platform.levels(available).items()):
            was = known.get(level)
            if was is None:
                changes.append(LevelChange(*level, quantity, None))
            elif was.pushed != quantity and was.retry_at <= now:
                changes.append(LevelChange(*level, quantity, was.platform_has))
        done = 0
        for start in range(0, len(changes), platform.batch):
            chunk = changes[start : start + platform.batch]
            try:
                results = await platform.set_levels(chunk)
            except PlatformError as exc:
                self._pause(name, exc)
                break
            except Exception as exc:
                self._pause(name, PlatformError(type(exc).__name__, temporary=True))
                break
            self._failures.pop(name, None)
            sent = {(c.sku, c.location): c for c in chunk}
            recorded = {
                (r.sku, r.location): self._known_after(r, sent[r.sku, r.location])
                for r in results
                if (r.sku, r.location) in sent
            }
            await self._pushed.record(name, recorded)
            known.update(recorded)
            done += sum(r.outcome == "set" for r in results)
        if done:
            log.info("%s: %d stock level(s) set", name, done)

    def _known_after(self, result: LevelResult, change: LevelChange) -> Known:
        now = self._clock()
        if result.outcome == "stale":
            # Set again after the wait, from the platform's figure, whatever orderd's is.
            return Known(None, result.platform_has, now + self._stale_wait_s, result.error)
        if result.outcome == "unknown":
            return Known(None, None, now + self._unknown_wait_s, result.error)
        if result.outcome == "retry":
            return Known(None, change.was)
        return Known(change.quantity, change.quantity)

    def _pause(self, name: str, exc: PlatformError) -> None:
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        asked = exc.retry_after_s
        wait = min(self._retry_max_s, asked if asked is not None else 2.0 ** min(failures, 16))
        self._paused[name] = self._clock() + wait
        log.warning(
            "pushing stock to %s failed (%d in a row), again in %.1f s: %s",
            name, failures, wait, printable(str(exc)),
        )  # fmt: skip

    async def run(self, stopping: asyncio.Event, every_s: float) -> None:
        """Push until ``stopping`` is set, a pass every ``every_s``."""
        await drain_repeatedly(
            self.push_once,
            stopping,
            every_s=every_s,
            failed="pushing stock to the platforms failed",
            log=log,
        )

    async def close(self) -> None:
        for platform in self._platforms.values():
            await platform.close()
