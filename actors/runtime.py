"""The actor runtime: reads the order stream and runs each order's turns one at a time.

An order's actor exists only while it has messages: the first one activates it (a
mailbox and a task), and when the mailbox is empty the actor is gone again (its state is
in PostgreSQL). Messages of one order run strictly one after another; different orders
run concurrently. A turn that fails is retried with back-off and, after ``max_deliveries``,
its message is dead-lettered and the order held for a person, without stopping others.

Besides reading new entries the runtime keeps the group healthy: on start it first runs
its own pending entries, it claims entries left idle by consumers that died, trims what
every group has acknowledged, and recreates the group when Redis lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from msgspec import Struct
from redis.exceptions import RedisError

from actors.order.actor import OrderTurns, Outcome
from actors.order.messages import Message, decode_message
from actors.yielding import Yielding
from adapters.batching import Coalescer
from adapters.postgres import dead_letters
from adapters.redis.streams import Entry, GroupLost, Streams

log = logging.getLogger("orderd.runtime")


class RuntimeSettings(Struct, frozen=True, kw_only=True):
    read_count: int = 256
    block_ms: int = 1000
    max_deliveries: int = 5
    retry_ms: int = 100
    retry_max_ms: int = 5000
    claim_idle_ms: int = 60_000
    # Turns running at once, and entries held in memory: a burst waits on the stream (and
    # in PostgreSQL) instead of in this process, and webhooks keep their share of the loop.
    # The turns of a batch wake together and run one after another, so webhooks wait for
    # all of them: 64 kept a webhook under 25 ms beside them where 256 took 40 to 60.
    max_turns: int = 64
    max_buffered: int = 2048
    # Turns running while a burst of webhooks is being stored (see actors.yielding): the
    # burst is answered first, and no message waits more than max_defer_s for it.
    turns_when_pressed: int = 8
    max_defer_s: float = 30.0
    # After a read that found only a trickle (under a quarter of read_count), the next
    # waits this long, so a steady flow is taken in batches: every batch of turns costs a
    # few round trips and a transaction whatever its size. A lone message still starts at
    # once; what follows it waits at most this long. At a steady 1,000 orders/s, 30 ms
    # took a turn's CPU from about 480 µs to 350, and PostgreSQL's by about 60.
    gather_s: float = 0.03
    janitor_every_s: float = 5.0
    forget_consumers_after_ms: int = 24 * 3600 * 1000


class ActorRuntime:
    def __init__(
        self,
        *,
        streams: Streams,
        turns: OrderTurns,
        pool: Any,
        consumer: str,
        settings: RuntimeSettings | None = None,
        on_group_lost: Callable[[], Awaitable[None]] | None = None,
        pressed: Callable[[], bool] = lambda: False,
    ) -> None:
        self._streams = streams
        self._turns = turns
        self._pool = pool
        self.consumer = consumer
        self._settings = settings or RuntimeSettings()
        self._on_group_lost = on_group_lost
        self._mailboxes: dict[str, deque[Entry]] = {}
        self._actors: dict[str, asyncio.Task[None]] = {}
        self._known: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._turn_slots = asyncio.Semaphore(self._settings.max_turns)
        self._yielding = Yielding(
            limit=self._settings.turns_when_pressed,
            pressed=pressed,
            max_defer_s=self._settings.max_defer_s,
        )
        self._acks: Coalescer[str, None] = Coalescer(self._ack_batch)
        self._room = asyncio.Event()
        self._room.set()
        self._reading = False
        self.started = asyncio.Event()  # set once the runtime reads new entries
        self._stopping = asyncio.Event()
        self.turns_done = 0
        self.last_progress = time.monotonic()

    @property
    def active_actors(self) -> int:
        return len(self._mailboxes)

    @property
    def reading(self) -> bool:
        return self._reading

    async def run(self) -> None:
        """Read and dispatch until :meth:`stop`; never raises for a Redis hiccup."""
        await self._streams.ensure_group()
        await self._own_pending()
        janitor = asyncio.create_task(self._janitor())
        self._reading = True
        self.started.set()
        try:
            while not self._stopping.is_set():
                if len(self._known) >= self._settings.max_buffered:
                    self._room.clear()
                    await self._room.wait()  # set again as turns finish
                    continue
                try:
                    entries, foreign = await self._streams.read(
                        self.consumer,
                        count=self._settings.read_count,
                        block_ms=self._settings.block_ms,
                    )
                except GroupLost:
                    await self._group_lost()
                    continue
                except (RedisError, OSError) as exc:
                    log.warning("reading the stream failed: %s", exc)
                    await self._pause(1.0)
                    continue
                await self._streams.ack(foreign)
                for entry in entries:
                    self.dispatch(entry)
                self.last_progress = time.monotonic()
                if entries and len(entries) < self._settings.read_count // 4:
                    await self._pause(self._settings.gather_s)
        finally:
            self._reading = False
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor

    async def stop(self, grace_s: float) -> bool:
        """Stop reading, let running turns finish within ``grace_s``; True if all did.

        Entries not finished stay pending in the group, so another process (or this one,
        restarted) runs them.
        """
        self._stopping.set()
        self._room.set()
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for queue in self._mailboxes.values():
            # Only the turn in progress finishes; the rest waits for the next delivery.
            while len(queue) > 1:
                self._known.discard(queue.pop().id)
        tasks = list(self._actors.values())
        if not tasks:
            return True
        _, running = await asyncio.wait(tasks, timeout=grace_s)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        return not running

    async def abort(self) -> None:
        """Stop now: running turns are cancelled; their entries stay pending in the group."""
        self._stopping.set()
        self._room.set()
        for handle in self._retries.values():
            handle.cancel()
        tasks = list(self._actors.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def dispatch(self, entry: Entry) -> None:
        """Queue ``entry`` for its order's actor, activating the actor if needed."""
        if entry.id in self._known or self._stopping.is_set():
            return
        self._known.add(entry.id)
        self._mailboxes.setdefault(entry.order_id, deque()).append(entry)
        self._activate(entry.order_id)

    def _activate(self, order_id: str) -> None:
        self._retries.pop(order_id, None)
        if order_id not in self._actors and self._mailboxes.get(order_id):
            self._actors[order_id] = asyncio.create_task(self._actor(order_id))

    async def _actor(self, order_id: str) -> None:
        queue = self._mailboxes[order_id]
        try:
            while queue:
                entry = queue[0]
                async with self._turn_slots:
                    # Inside a turn slot: what a burst holds back is bounded by max_turns.
                    await self._yielding.enter(_arrival_s(entry.id))
                    try:
                        delay = await self._turn(entry)
                    finally:
                        self._yielding.leave()
                if delay is not None:
                    if not self._stopping.is_set():
                        loop = asyncio.get_running_loop()
                        self._retries[order_id] = loop.call_later(delay, self._activate, order_id)
                    return
                queue.popleft()
                self._known.discard(entry.id)
                if len(self._known) < self._settings.max_buffered // 2:
                    self._room.set()
                self._attempts.pop(entry.id, None)
        finally:
            del self._actors[order_id]
            if not queue:
                del self._mailboxes[order_id]  # passivate: the state lives in PostgreSQL

    async def _turn(self, entry: Entry) -> float | None:
        """Run one entry; None when it is done with, else the delay before trying again."""
        try:
            message = decode_message(entry.body)
            if message.order_id != entry.order_id:
                raise ValueError("message is for another order than its entry says")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            await self._dead_letter(entry, f"unreadable message: {exc}", None)
            return None
        try:
            outcome = await self._turns.apply(entry.order_id, entry.seq, message)
        except Exception as exc:
            attempts = self._attempts.get(entry.id, 0) + 1
            self._attempts[entry.id] = attempts
            if max(attempts, entry.deliveries) >= self._settings.max_deliveries:
                await self._dead_letter(entry, f"{type(exc).__name__}: {exc}", message)
                return None
            log.warning(
                "turn failed for order %s message %d (attempt %d): %s",
                entry.order_id,
                entry.seq,
                attempts,
                exc,
            )
            return self._backoff(attempts)
        if outcome in (Outcome.APPLIED, Outcome.REPEAT):
            await self._acks.submit(entry.id)
            self.turns_done += 1
            self.last_progress = time.monotonic()
            return None
        # EARLY or BUSY: another message or process comes first; not a failure.
        return self._backoff(1)

    async def _ack_batch(self, ids: Sequence[str]) -> list[None]:
        await self._streams.ack(ids)
        return [None] * len(ids)

    def _backoff(self, attempts: int) -> float:
        delay_ms = min(self._settings.retry_ms * 2 ** (attempts - 1), self._settings.retry_max_ms)
        return float(delay_ms) / 1000

    async def _dead_letter(self, entry: Entry, error: str, message: Message | None) -> None:
        log.error("dead-lettering order %s message %d: %s", entry.order_id, entry.seq, error)
        deliveries = max(self._attempts.get(entry.id, 0), entry.deliveries)
        async with self._pool.acquire() as conn:
            await dead_letters.record(
                conn,
                stream=self._streams.stream,
                entry_id=entry.id,
                order_id=entry.order_id,
                seq=entry.seq,
                deliveries=deliveries,
                error=error,
                payload=entry.body,
            )
        await self._turns.give_up(
            entry.order_id, entry.seq, f"message {entry.seq} dead-lettered: {error[:200]}", message
        )
        await self._streams.dead_letter(entry, error)

    async def _own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart run first."""
        while True:
            try:
                entries, foreign = await self._streams.read(
                    self.consumer, count=self._settings.read_count, block_ms=None, own_pending=True
                )
            except GroupLost:
                await self._group_lost()
                return
            await self._streams.ack(foreign)
            fresh = [e for e in entries if e.id not in self._known]
            for entry in fresh:
                self.dispatch(entry)
            if len(entries) < self._settings.read_count or not fresh:
                return

    async def _group_lost(self) -> None:
        log.warning("the consumer group is gone (Redis lost its data): recreating it")
        await self._streams.ensure_group()
        if self._on_group_lost is not None:
            await self._on_group_lost()

    async def _janitor(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self._settings.janitor_every_s)
            if self._stopping.is_set():
                return
            try:
                for entry in await self._streams.claim_idle(
                    self.consumer, self._settings.claim_idle_ms
                ):
                    self.dispatch(entry)
                await self._streams.trim()
                await self._streams.forget_idle_consumers(self._settings.forget_consumers_after_ms)
            except GroupLost:
                await self._group_lost()
            except (RedisError, OSError) as exc:
                log.warning("stream housekeeping failed: %s", exc)


def _arrival_s(entry_id: str) -> float:
    """When a stream entry was added: Redis makes its id from the time in milliseconds."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000
    except ValueError:
        return time.time()
