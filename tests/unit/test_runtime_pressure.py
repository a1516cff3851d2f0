"""The actor runtime makes room for a burst of webhooks: fewer turns start while pressed."""

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


class _Streams:
    stream = "test:stream"

    async def master_id(self) -> str:
        return "the-only-server"

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, ids: Sequence[str]) -> None:
        self.acked.extend(ids)


class _Turns:
    """Turns that wait until released, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()
        self.started = asyncio.Condition()

    async def apply(
        self, order_id: str, seq: int, message: Message, outside: Outside = nullcontext
    ) -> Outcome:
        async with self.started:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.notify_all()
        await self.release.wait()
        self.running -= 1
        return Outcome.APPLIED

    async def until_running(self, count: int) -> None:
        async with self.started:
            await self.started.wait_for(lambda: self.running >= count)


def _entry(n: int) -> Entry:
    order_id = f"o{n}"
    body = encode_message(CancelRequested(order_id=order_id, reason="test", requested_by="test"))
    return Entry(f"{int(time.time() * 1000)}-{n}", order_id, 1, body)  # just arrived


class _CarrierTurns(_Turns):
    """Turns that first wait on a carrier (outside), then run until released."""

    def __init__(self) -> None:
        super().__init__()
        self.outside = 0
        self.carrier_answers = asyncio.Event()

    async def apply(
        self, order_id: str, seq: int, message: Message, outside: Outside = nullcontext
    ) -> Outcome:
        async with outside():
            async with self.started:
                self.outside += 1
                self.started.notify_all()
            await self.carrier_answers.wait()
        return await super().apply(order_id, seq, message)

    async def until_outside(self, count: int) -> None:
        async with self.started:
            await self.started.wait_for(lambda: self.outside >= count)


def _runtime(
    turns: _Turns, streams: _Streams, pressed: list[bool], max_turns: int = 32
) -> ActorRuntime:
    return ActorRuntime(
        streams=cast(ConsumerGroup, streams),
        turns=cast(OrderTurns, turns),
        dead_letters=cast(DeadLetters, None),
        is_outage=is_outage,
        consumer="test",
        settings=RuntimeSettings(max_turns=max_turns, turns_when_pressed=4),
        pressed=lambda: pressed[0],
    )


async def _settle() -> None:
    # Every task that can start a turn is ready at once: a few loop passes let them all try.
    for _ in range(20):
        await asyncio.sleep(0)


async def test_while_webhooks_press_only_a_few_turns_start() -> None:
    turns, streams, pressed = _Turns(), _Streams(), [True]
    runtime = _runtime(turns, streams, pressed)
    for n in range(40):
        runtime.dispatch(_entry(n))
    await turns.until_running(4)
    await _settle()
    assert turns.running == 4
    pressed[0] = False
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(set(streams.acked)) == 40
    assert turns.most <= 32


async def test_without_pressure_turns_run_up_to_the_limit() -> None:
    turns, streams, pressed = _Turns(), _Streams(), [False]
    runtime = _runtime(turns, streams, pressed)
    for n in range(40):
        runtime.dispatch(_entry(n))
    await turns.until_running(32)
    await _settle()
    assert turns.running == 32
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(streams.acked) == 40


async def test_an_old_message_does_not_wait_for_the_burst_to_pass() -> None:
    turns, streams, pressed = _Turns(), _Streams(), [True]
    runtime = _runtime(turns, streams, pressed)
    for n in range(10):
        runtime.dispatch(_entry(n))
    old = encode_message(CancelRequested(order_id="old", reason="test", requested_by="test"))
    runtime.dispatch(Entry(f"{int((time.time() - 3600) * 1000)}-0", "old", 1, old))
    await turns.until_running(5)  # four just arrived, and the hour-old one
    await _settle()
    assert turns.running == 5
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(streams.acked) == 11


async def test_a_turn_waiting_on_a_carrier_lends_its_place_and_goes_on_at_once_when_back() -> None:
    turns, streams, pressed = _CarrierTurns(), _Streams(), [False]
    runtime = _runtime(turns, streams, pressed, max_turns=3)
    for n in range(10):
        runtime.dispatch(_entry(n))
    # Three turns lend their places while they wait on the carrier; three more take them,
    # and keep them while they wait, as max_turns turns are out already.
    await asyncio.wait_for(turns.until_outside(6), 10)
    await _settle()
    assert turns.outside == 6
    turns.carrier_answers.set()
    # Back from the carrier, all six go on at once, ahead of the four waiting to start.
    await asyncio.wait_for(turns.until_running(6), 10)
    await _settle()
    assert turns.running == 6
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(set(streams.acked)) == 10
    assert turns.most == 6


async def test_while_webhooks_press_turns_back_from_a_carrier_go_on_at_once() -> None:
    turns, streams, pressed = _CarrierTurns(), _Streams(), [True]
    runtime = _runtime(turns, streams, pressed)
    for n in range(10):
        runtime.dispatch(_entry(n))
    # Four turns may run while webhooks press; each lends its place at the carrier.
    await asyncio.wait_for(turns.until_outside(10), 10)
    turns.carrier_answers.set()
    await asyncio.wait_for(turns.until_running(10), 10)
    assert turns.running == 10
    pressed[0] = False
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(set(streams.acked)) == 10


def _places_as_new(runtime: ActorRuntime, limit: int) -> bool:
    places = runtime._places
    return (
        places._free._value == limit
        and places._owed == 0
        and places.outside == 0
        and runtime._yielding.running == 0
    )


async def test_turns_cut_off_at_the_carrier_or_waiting_to_start_leave_every_place_free() -> None:
    turns, streams, pressed = _CarrierTurns(), _Streams(), [False]
    runtime = _runtime(turns, streams, pressed, max_turns=3)
    for n in range(10):
        runtime.dispatch(_entry(n))
    await asyncio.wait_for(turns.until_outside(6), 10)
    await runtime.abort()  # six at the carrier (three lent), four waiting to start
    assert _places_as_new(runtime, 3)
    assert streams.acked == []


async def test_turns_back_from_the_carrier_pay_for_the_places_they_took() -> None:
    turns, streams, pressed = _CarrierTurns(), _Streams(), [False]
    runtime = _runtime(turns, streams, pressed, max_turns=3)
    for n in range(10):
        runtime.dispatch(_entry(n))
    await asyncio.wait_for(turns.until_outside(6), 10)
    turns.carrier_answers.set()
    turns.release.set()
    await runtime.stop(grace_s=5)
    assert len(set(streams.acked)) == 10
    assert _places_as_new(runtime, 3)
