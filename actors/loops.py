"""The background loops of the daemon: do work until there is none, wait, again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def drain_repeatedly(
    work: Callable[[], Awaitable[int]],
    stopping: asyncio.Event,
    *,
    every_s: float,
    failed: str,
    log: logging.Logger,
    wake: asyncio.Event | None = None,
) -> None:
    """Run ``work`` until it finds nothing to do, then wait ``every_s`` (or until ``wake``
    is set), until ``stopping`` is set. A failure is logged and tried again next time."""
    while not stopping.is_set():
        try:
            while await work() and not stopping.is_set():
                pass
        except Exception as exc:
            log.warning("%s: %s", failed, exc)
        if wake is not None:
            wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((wake or stopping).wait(), every_s)
