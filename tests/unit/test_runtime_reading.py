"""How the actor runtime reads the stream: a trickle is gathered, a flood read at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import cast

from actors.order.actor import OrderTurns, Outcome, Outside
from actors.order.messages import CancelRequested, Message, encode_message
from actors.ports.stream import ConsumerGroup, DeadLetters, Entry
from actors.runtime import ActorRuntime, RuntimeSettings
from adapters.outages import is_outage

READ_COUNT = 16


def _entries(first: int, count: int) -> list[Entry]:
    made = []
    for n in range(first, first + count):
        order_id = f"o{n}"
        body = encode_message(CancelRequested(order_id=order_id, reason="t", requested_by="t"))
        made.append(Entry(f"{int(time.time() * 1000)}-{n}", order_id, 1, body))
    return made


class _Streams:
    """A stream that hands out scripted reads, then blocks like an empty stream."""

    stream = "test:stream"

    async def master_id(self) -> str:
        return "the-only-server"

    def __init__(self, reads: list[list[Entry]]) -> None:
        self.reads = reads
        self.calls = 0
        self.called = asyncio.Event()
        self.closed = asyncio.Event()

    async def ensure_group(self) -> bool:
        return False

    async def read(
        self,
        consumer: str,
        *,
        count: int,
        block_ms: int | None,
        own_pending: bool = False,
        after: str = "0",
    ) -> tuple[list[Entry], list[str]]:
        if own_pending:
            return [], []
        self.calls += 1
        self.called.set()
        if self.reads:
            return self.reads.pop(0), []
        await self.closed.wait()  # an empty stream: the read blocks until the test ends
        return [], []

    async def ack(self, ids: Sequence[str]) -> None:
        pass


class _Turns:
    async def apply(
        self, order_id: str, seq: int, message: Message, outside: Outside = nullcontext
    ) -> Outcome:
        return Outcome.APPLIED


def _runtime(streams: _Streams, gather_s: float) -> ActorRuntime:
    return ActorRuntime(
        streams=cast(ConsumerGroup, streams),
        turns=cast(OrderTurns, _Turns()),
        dead_letters=cast(DeadLetters, None),
        is_outage=is_outage,
        consumer="test",
        settings=RuntimeSettings(read_count=READ_COUNT, gather_s=gather_s),
    )


async def _reads_after(streams: _Streams, passes: int = 50) -> int:
    for _ in range(passes):
        await asyncio.sleep(0)
    return streams.calls


async def test_a_flood_is_read_again_at_once() -> None:
    streams = _Streams([_entries(0, READ_COUNT), _entries(100, READ_COUNT)])
    runtime = _runtime(streams, gather_s=3600)
    reading = asyncio.create_task(runtime.run())
    assert await _reads_after(streams) == 3  # two full reads, then the empty stream
    await runtime.stop(grace_s=5)
    streams.closed.set()
    await asyncio.wait_for(reading, timeout=30)


async def test_after_a_trickle_the_next_read_waits_to_gather_more() -> None:
    streams = _Streams([_entries(0, 2), _entries(100, 2)])
    runtime = _runtime(streams, gather_s=3600)
    reading = asyncio.create_task(runtime.run())
    assert await _reads_after(streams) == 1  # gathering, for up to an hour
    assert runtime.turns_done == 2  # what came was not held back
    await runtime.stop(grace_s=5)  # a stop does not wait for the gathering to end
    await asyncio.wait_for(reading, timeout=30)
    assert streams.calls == 1


async def test_the_gathering_ends_and_reading_goes_on() -> None:
    streams = _Streams([_entries(0, 2), _entries(100, 2)])
    runtime = _runtime(streams, gather_s=0.01)
    reading = asyncio.create_task(runtime.run())
    while streams.calls < 3:  # the second trickle, then the empty stream
        streams.called.clear()
        await asyncio.wait_for(streams.called.wait(), timeout=30)
    await _reads_after(streams)  # the second trickle's turns run
    assert runtime.turns_done == 4
    await runtime.stop(grace_s=5)
    streams.closed.set()
    await asyncio.wait_for(reading, timeout=30)
