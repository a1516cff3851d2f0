"""The actor runtime under faults, with its stream and turns stood in for: messages run in
their number order whatever order they arrive in, an outage of a server is not a failure
of a message, and a failed acknowledgement neither kills the actor nor strands its order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from actors.order.actor import OrderTurns, Outcome, Outside
from actors.order.messages import CancelRequested, Message, encode_message
from actors.ports.stream import ConsumerGroup, DeadLetters, Entry
from actors.runtime import ActorRuntime, RuntimeSettings
from adapters.outages import is_outage


def _entry(order_id: str, seq: int, n: int | None = None) -> Entry:
    body = encode_message(CancelRequested(order_id=order_id, reason="t", requested_by="t"))
    return Entry(f"{int(time.time() * 1000)}-{n if n is not None else seq}", order_id, seq, body)


class _Streams:
    stream = "test:stream"

    async def master_id(self) -> str:
        return "the-only-server"

    def __init__(self, failing_acks: int = 0) -> None:
        self.acked: list[str] = []
        self.failing_acks = failing_acks
        self.dead: list[Entry] = []

    async def ack(self, ids: Sequence[str]) -> None:
        if self.failing_acks:
            self.failing_acks -= 1
            raise RedisConnectionError("Connection reset by peer")
        self.acked.extend(ids)

    async def dead_letter(self, entry: Entry, error: str) -> None:
        self.dead.append(entry)


class _Orders:
    """Turns that apply an order's messages only in their number order, as OrderTurns
    does with the order's last applied number; ``failures`` are raised first, in turn."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.last: dict[str, int] = {}
        self.applied: list[tuple[str, int]] = []
        self.failures = list(failures)
        self.calls = 0

    async def apply(
        self, order_id: str, seq: int, message: Message, outside: Outside = nullcontext
    ) -> Outcome:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        last = self.last.get(order_id, 0)
        if seq <= last:
            return Outcome.REPEAT
        if seq > last + 1:
            return Outcome.EARLY
        self.last[order_id] = seq
        self.applied.append((order_id, seq))
        return Outcome.APPLIED

    async def give_up(self, order_id: str, seq: int, reason: str, message: Any = None) -> None:
        self.last[order_id] = max(self.last.get(order_id, 0), seq)

    async def until(self, check: Any, within_s: float = 10.0) -> None:
        """Wait until ``check`` holds: retries are timers, so this looks every few ms."""
        deadline = time.monotonic() + within_s
        while not check():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.005)


class _DeadLetters:
    """Where the runtime records dead letters."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, int]] = []

    async def record(self, *, order_id: str, seq: int, **entry: Any) -> None:
        self.recorded.append((order_id, seq))


def _runtime(
    orders: _Orders, streams: _Streams, dead: _DeadLetters | None = None, **settings: Any
) -> ActorRuntime:
    return ActorRuntime(
        streams=cast(ConsumerGroup, streams),
        turns=cast(OrderTurns, orders),
        dead_letters=cast(DeadLetters, dead or _DeadLetters()),
        is_outage=is_outage,
        consumer="test",
        settings=RuntimeSettings(**{"retry_ms": 1, "retry_max_ms": 5, **settings}),
    )


async def test_messages_read_out_of_order_are_applied_in_their_number_order() -> None:
    orders, streams = _Orders(), _Streams()
    runtime = _runtime(orders, streams)
    # Message 3 and 2 come first (another process streamed them sooner), 1 last.
    runtime.dispatch(_entry("o1", 3))
    runtime.dispatch(_entry("o1", 2))
    await orders.until(lambda: orders.calls >= 2)
    runtime.dispatch(_entry("o1", 1))
    await orders.until(lambda: len(orders.applied) == 3)
    assert orders.applied == [("o1", 1), ("o1", 2), ("o1", 3)]
    await orders.until(lambda: runtime.active_actors == 0)


async def test_an_earlier_message_arriving_while_a_later_one_waits_goes_first() -> None:
    orders, streams = _Orders(), _Streams()
    runtime = _runtime(orders, streams, retry_max_ms=60_000)
    runtime.dispatch(_entry("o1", 2))
    # Message 2 is early and waits (long): message 1 must not wait behind it.
    await orders.until(lambda: orders.calls >= 1)
    runtime.dispatch(_entry("o1", 1))
    await orders.until(lambda: len(orders.applied) == 2, within_s=5)
    assert orders.applied == [("o1", 1), ("o1", 2)]


async def test_an_outage_of_redis_counts_no_delivery_and_the_message_is_applied() -> None:
    outage = [RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")] * 12
    orders, streams, dead = _Orders(outage), _Streams(), _DeadLetters()
    runtime = _runtime(orders, streams, dead, max_deliveries=3)
    runtime.dispatch(_entry("o1", 1))
    await orders.until(lambda: orders.applied == [("o1", 1)])
    assert dead.recorded == []
    assert streams.dead == []
    assert runtime.outages == 12


async def test_a_failing_message_is_still_dead_lettered_after_max_deliveries() -> None:
    broken = [ResponseError("user_script:12: bad stock record")] * 10
    orders, streams, dead = _Orders(broken), _Streams(), _DeadLetters()
    runtime = _runtime(orders, streams, dead, max_deliveries=3)
    runtime.dispatch(_entry("o1", 1))
    await orders.until(lambda: bool(streams.dead))
    assert dead.recorded == [("o1", 1)]
    assert len(orders.failures) == 10 - 3


async def test_a_failed_acknowledgement_keeps_the_actor_and_is_made_again() -> None:
    orders, streams = _Orders(), _Streams(failing_acks=1)
    runtime = _runtime(orders, streams, janitor_every_s=0.01)
    first = _entry("o1", 1)
    runtime.dispatch(first)
    await orders.until(lambda: orders.applied == [("o1", 1)])
    # The actor finished its turn and passivated; the acknowledgement is owed.
    await orders.until(lambda: runtime.active_actors == 0)
    assert runtime._unacked == {first.id}
    # The entry is still pending: claimed again, it is run (a repeat) and acknowledged.
    runtime.dispatch(first)
    runtime.dispatch(_entry("o1", 2))
    await orders.until(lambda: orders.applied == [("o1", 1), ("o1", 2)])
    await orders.until(lambda: first.id in streams.acked)


@pytest.mark.parametrize("fault", [RuntimeError("a bug"), KeyError("x")])
async def test_an_actor_whose_runtime_fails_is_started_again(fault: Exception) -> None:
    orders, streams = _Orders(), _Streams()
    runtime = _runtime(orders, streams)
    calls = 0
    turn = runtime._turn

    async def failing_once(entry: Entry, outside: Outside) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise fault
        return await turn(entry, outside)

    runtime._turn = failing_once  # type: ignore[method-assign]
    runtime.dispatch(_entry("o1", 1))
    await orders.until(lambda: orders.applied == [("o1", 1)], within_s=15)
