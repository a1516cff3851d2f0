"""What the runtime and its senders report as they work, for the daemon's metrics.

Each call is a few additions in memory: it never waits and never fails. The daemon's
``/metrics`` turns them into counters and histograms (:mod:`daemon.metrics`); without one,
:data:`UNOBSERVED` takes them and keeps nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")

# Who was called: a carrier's API, the warehouse system, a customer message's sender, a
# store's platform.
Target = Literal["carrier", "wms", "notifier", "platform"]


class Observer(Protocol):
    def turn(self, seconds: float) -> None:
        """An order's turn was applied (or found repeated), taking ``seconds``."""
        ...

    def call(self, target: Target, name: str, outcome: str, seconds: float) -> None:
        """A call to ``target`` (its adapter ``name``: ``sandbox``, ``easypost``, ``http``,
        ``email``, ``shopify``...) ended in ``outcome`` (``ok``, ``temporary``,
        ``refused``) after ``seconds``."""
        ...

    def batch(self, operation: str, size: int, seconds: float) -> None:
        """The allocation core ran one batch of ``size`` calls of ``operation``."""
        ...


class _Unobserved:
    def turn(self, seconds: float) -> None:
        pass

    def call(self, target: Target, name: str, outcome: str, seconds: float) -> None:
        pass

    def batch(self, operation: str, size: int, seconds: float) -> None:
        pass


UNOBSERVED: Observer = _Unobserved()


async def timed(observer: Observer, target: Target, name: str, call: Awaitable[T]) -> T:
    """``call``'s result, its time and outcome told to ``observer``: ``ok``, ``temporary``
    or ``refused`` by the error's own ``temporary``, else ``error``."""
    started = time.monotonic()
    try:
        result = await call
    except BaseException as exc:
        temporary = getattr(exc, "temporary", None)
        outcome = "error" if temporary is None else ("temporary" if temporary else "refused")
        observer.call(target, name, outcome, time.monotonic() - started)
        raise
    observer.call(target, name, "ok", time.monotonic() - started)
    return result
