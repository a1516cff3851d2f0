"""Another server holding the stream (a replica promoted, a server restarted with its data)
may lack the last entries added before: the runtime streams again what is not applied."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from actors.order.actor import OrderTurns
from actors.ports.stream import ConsumerGroup, DeadLetters, Entry
from actors.runtime import ActorRuntime, RuntimeSettings
from adapters.outages import is_outage


class _Streams:
    """An empty stream whose server changes once, after the runtime has seen it twice."""

    stream = "test:stream"

    def __init__(self, masters: list[str], enough: int) -> None:
        self.masters = masters
        self.asked = 0
        self.enough = enough
        self.asked_enough = asyncio.Event()
        self.closed = asyncio.Event()

    async def master_id(self) -> str:
        self.asked += 1
        if self.asked >= self.enough:
            self.asked_enough.set()
        return self.masters[min(self.asked, len(self.masters)) - 1]

    async def ensure_group(self) -> bool:
        return False

    async def read(
        self, consumer: str, *, count: int, block_ms: int | None, own_pending: bool = False,
        after: str = "0",
    ) -> tuple[list[Entry], list[str]]:  # fmt: skip
        if not own_pending:
            await self.closed.wait()
        return [], []

    async def ack(self, ids: Sequence[str]) -> None:
        pass

    async def claim_idle(
        self, consumer: str, min_idle_ms: int, *, start: str = "0-0", count: int = 100
    ) -> tuple[list[Entry], str]:
        return [], "0-0"

    async def oldest_unfinished_ms(self) -> int | None:
        return None

    async def trim(self) -> int:
        return 0

    async def forget_idle_consumers(self, idle_ms: int) -> list[str]:
        return []


async def _run(streams: _Streams) -> int:
    """Run a runtime until it has asked for the stream's server often enough; how often
    it streamed its backlog again meanwhile."""
    rebuilt = 0

    async def rebuild() -> None:
        nonlocal rebuilt
        rebuilt += 1

    runtime = ActorRuntime(
        streams=cast(ConsumerGroup, streams),
        turns=cast(OrderTurns, None),
        dead_letters=cast(DeadLetters, None),
        is_outage=is_outage,
        consumer="test",
        settings=RuntimeSettings(janitor_every_s=0.001),
        on_group_lost=rebuild,
    )
    reading = asyncio.create_task(runtime.run())
    await asyncio.wait_for(streams.asked_enough.wait(), timeout=30)
    await runtime.stop(grace_s=5)
    streams.closed.set()
    await asyncio.wait_for(reading, timeout=30)
    return rebuilt


async def test_a_new_server_holding_the_stream_has_the_backlog_streamed_again_once() -> None:
    assert await _run(_Streams(["a", "a", "b", "b", "b"], enough=6)) == 1


async def test_the_same_server_throughout_streams_nothing_again() -> None:
    assert await _run(_Streams(["a"], enough=5)) == 0


async def test_a_failover_before_the_janitors_first_look_is_noticed() -> None:
    # The runtime notes the server as it starts; another one at the first look is news.
    assert await _run(_Streams(["a", "b", "b", "b"], enough=4)) == 1
