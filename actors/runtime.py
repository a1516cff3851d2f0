"""The actor runtime: reads the order stream and runs each order's turns one at a time.

An order's actor exists only while it has messages: the first one activates it (a
mailbox and a task), and when the mailbox is empty the actor is gone again (its state is
in PostgreSQL). Messages of one order run strictly one after another; different orders
run concurrently, and an order's messages run in their number order whatever order they
are read in. A turn that fails is retried with back-off and, after ``max_deliveries``,
its message is dead-lettered and the order held for a person, without stopping others. A
turn that met a server away (Redis or PostgreSQL restarting, unreachable) is not a failure
of its message: it waits, backing off, for as long as the outage lasts.

Besides reading new entries the runtime keeps the group healthy: on start it first runs
its own pending entries, it claims entries left idle by consumers that died (walking the
whole pending list), trims what every group has acknowledged, recreates the group when
Redis lost it, and keeps the age of the oldest unfinished entry for readiness. Every loop
outlives an outage of either server; only :meth:`stop` or :meth:`abort` ends them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import assert_never

import msgspec
from msgspec import Struct

from actors.batching import Coalescer
from actors.order.actor import OrderTurns, Outcome, Outside
from actors.order.messages import Message, decode_message
from actors.places import Places
from actors.ports.observe import UNOBSERVED, Observer
from actors.ports.stream import ConsumerGroup, DeadLetters, Entry, GroupLost
from actors.ports.turns import ConcurrentTurn
from actors.stock import StaleEpoch
from actors.yielding import Yielding

log = logging.getLogger("orderd.runtime")


class RuntimeSettings(Struct, frozen=True, kw_only=True):
    read_count: int = 256
    block_ms: int = 1000
    max_deliveries: int = 5
    retry_ms: int = 100
    retry_max_ms: int = 5000
    claim_idle_ms: int = 60_000
    # Entries taken over from other consumers per call: Redis scans ten times as many.
    claim_count: int = 500
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
    # A loop that met an outage tries again after this long.
    outage_pause_s: float = 1.0


class ActorRuntime:
    def __init__(
        self,
        *,
        streams: ConsumerGroup,
        turns: OrderTurns,
        dead_letters: DeadLetters,
        is_outage: Callable[[BaseException], bool],
        consumer: str,
        settings: RuntimeSettings | None = None,
        on_group_lost: Callable[[], Awaitable[None]] | None = None,
        on_gap: Callable[[str, int], Awaitable[None]] | None = None,
        pressed: Callable[[], bool] = lambda: False,
        observer: Observer = UNOBSERVED,
    ) -> None:
        self._observer = observer
        self._streams = streams
        self._turns = turns
        self._dead_letters = dead_letters
        # Tells an outage of a server (Redis or PostgreSQL away) from a failure of the work.
        self._is_outage = is_outage
        self.consumer = consumer
        self._settings = settings or RuntimeSettings()
        self._on_group_lost = on_group_lost
        # Called when a message has waited long for an earlier one of its order that no
        # consumer seems to have: the order's unapplied messages are streamed again.
        self._on_gap = on_gap
        # Each order's entries in memory, by message number: the lowest runs first.
        self._mailboxes: dict[str, list[Entry]] = {}
        self._actors: dict[str, asyncio.Task[None]] = {}
        self._known: set[str] = set()
        self._attempts: dict[str, int] = {}  # failures of the message itself
        self._waits: dict[str, int] = {}  # tries put off (outage, earlier message, busy)
        self._early_since: dict[str, float] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._unacked: set[str] = set()  # applied, but the acknowledgement failed
        self._backlog_lost = False  # the group was recreated; the backlog not yet rebuilt
        self._stream_master: str | None = None  # the server that held the stream last time
        self._yielding = Yielding(
            limit=self._settings.turns_when_pressed,
            pressed=pressed,
            max_defer_s=self._settings.max_defer_s,
        )
        self._places = Places(self._settings.max_turns, self._yielding)
        self._acks: Coalescer[str, None] = Coalescer(self._ack_batch)
        self._room = asyncio.Event()
        self._room.set()
        self._reading = False
        self._outage_noted_at = 0.0
        self.started = asyncio.Event()  # set once the runtime reads new entries
        self._stopping = asyncio.Event()
        self.turns_done = 0
        self.last_progress = time.monotonic()
        # How old the group's oldest unfinished entry is, as of the last look (janitor).
        self.oldest_pending_s = 0.0
        self.outages = 0  # turns put off because a server was away

    @property
    def active_actors(self) -> int:
        return len(self._mailboxes)

    @property
    def stopping(self) -> asyncio.Event:
        """Set once :meth:`stop` or :meth:`abort` was called."""
        return self._stopping

    @property
    def reading(self) -> bool:
        return self._reading

    async def run(self) -> None:
        """Read and dispatch until :meth:`stop`; never raises for an outage of a server."""
        await self._start()
        janitor = asyncio.gather(self._janitor(), self._claimer())
        self._reading = True
        self.started.set()
        try:
            while not self._stopping.is_set():
                if not await self._wait_for_room():
                    continue
                try:
                    entries, foreign = await self._streams.read(
                        self.consumer,
                        count=self._settings.read_count,
                        block_ms=self._settings.block_ms,
                    )
                    await self._streams.ack(foreign)
                except GroupLost:
                    await self._group_lost()
                    continue
                except Exception as exc:
                    self._log_failure("reading the stream", exc)
                    # Waiting out an outage is progress for the watchdog: the loop runs,
                    # and a restart would find the same server away.
                    self.last_progress = time.monotonic()
                    await self._pause(self._settings.outage_pause_s)
                    continue
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

    async def _start(self) -> None:
        """The group, then this consumer's own pending entries; tried until they work."""
        while not self._stopping.is_set():
            try:
                await self._streams.ensure_group()
                # Which server holds the stream, before anything is read from it: a
                # failover from here on is noticed by the janitor's next look.
                self._stream_master = await self._streams.master_id()
                await self._own_pending()
                return
            except Exception as exc:
                self._log_failure("starting to read the stream", exc)
                await self._pause(self._settings.outage_pause_s)

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
        running: set[asyncio.Task[None]] = set()
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=grace_s)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        # The finished turns' acknowledgements are sent before the connections close.
        await self._acks.drain()
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

    async def _wait_for_room(self) -> bool:
        """Wait while max_buffered entries are held; False if stopping meanwhile."""
        while len(self._known) >= self._settings.max_buffered and not self._stopping.is_set():
            self._room.clear()
            await self._room.wait()  # set again as turns finish
        return not self._stopping.is_set()

    def dispatch(self, entry: Entry) -> None:
        """Queue ``entry`` for its order's actor, activating the actor if needed."""
        if entry.id in self._known or self._stopping.is_set():
            return
        self._known.add(entry.id)
        queue = self._mailboxes.setdefault(entry.order_id, [])
        bisect.insort(queue, entry, key=_seq)
        self._activate(entry.order_id)

    def _activate(self, order_id: str) -> None:
        self._retries.pop(order_id, None)
        if order_id not in self._actors and self._mailboxes.get(order_id):
            self._actors[order_id] = asyncio.create_task(self._actor(order_id))

    def _retry_later(self, order_id: str, delay: float) -> None:
        if not self._stopping.is_set():
            loop = asyncio.get_running_loop()
            self._retries[order_id] = loop.call_later(delay, self._activate, order_id)

    async def _actor(self, order_id: str) -> None:
        queue = self._mailboxes[order_id]
        try:
            while queue:
                entry = queue[0]
                # Inside a turn's place: what a burst holds back is bounded by max_turns.
                place = self._places.place(_arrival_s(entry.id))
                try:
                    await place.take()
                    delay = await self._turn(entry, place.outside)
                finally:
                    place.give_up()
                if delay is None:
                    self._finished(queue, entry)
                elif not queue or queue[0] is entry:
                    self._retry_later(order_id, delay)
                    return
                # else: an earlier message of the order arrived meanwhile; it goes first.
        except Exception:
            # The runtime's own failure, not the message's: the order is tried again later
            # rather than left with its entries in memory and nobody running them.
            log.exception("the actor of order %s failed; trying again", order_id)
            self._retry_later(order_id, self._settings.retry_max_ms / 1000)
        finally:
            del self._actors[order_id]
            if not queue:
                del self._mailboxes[order_id]  # passivate: the state lives in PostgreSQL

    def _finished(self, queue: list[Entry], entry: Entry) -> None:
        queue.remove(entry)
        self._known.discard(entry.id)
        self._attempts.pop(entry.id, None)
        self._waits.pop(entry.id, None)
        self._early_since.pop(entry.id, None)
        if len(self._known) < self._settings.max_buffered // 2:
            self._room.set()

    async def _turn(self, entry: Entry, outside: Outside) -> float | None:
        """Run one entry; None when it is done with, else the delay before trying again."""
        try:
            message = decode_message(entry.body)
            if message.order_id != entry.order_id:
                raise ValueError("message is for another order than its entry says")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return await self._dead_letter(entry, f"unreadable message: {exc}", None)
        started = time.monotonic()
        try:
            outcome = await self._turns.apply(entry.order_id, entry.seq, message, outside)
        except Exception as exc:
            if self._is_outage(exc) or isinstance(exc, StaleEpoch | ConcurrentTurn):
                # Not the message's fault: a server was away, Redis was rebuilt under the
                # turn, or another process saved the order first. No delivery is counted.
                self.outages += 1
                self._log_failure(f"order {entry.order_id} message {entry.seq}", exc)
                return self._put_off(entry)
            attempts = self._attempts.get(entry.id, 0) + 1
            self._attempts[entry.id] = attempts
            if max(attempts, entry.deliveries) >= self._settings.max_deliveries:
                return await self._dead_letter(entry, f"{type(exc).__name__}: {exc}", message)
            log.warning(
                "turn failed for order %s message %d (attempt %d): %s",
                entry.order_id,
                entry.seq,
                attempts,
                exc,
            )
            return self._backoff(attempts)
        match outcome:
            case Outcome.APPLIED | Outcome.REPEAT:
                self._ack(entry.id)
                self.turns_done += 1
                self.last_progress = time.monotonic()
                self._observer.turn(self.last_progress - started)
                return None
            # Another message or process comes first: not a failure.
            case Outcome.EARLY:
                await self._early(entry)
                return self._put_off(entry)
            case Outcome.BUSY:
                return self._put_off(entry)
            case _:
                assert_never(outcome)

    def _put_off(self, entry: Entry) -> float:
        waits = self._waits.get(entry.id, 0) + 1
        self._waits[entry.id] = waits
        return self._backoff(waits)

    async def _early(self, entry: Entry) -> None:
        """An earlier message of the order is not applied. It is normally on its way (in
        another process, or pending for one that died and will be claimed); one that has
        kept the order waiting longer than a claim takes is streamed again."""
        now = time.monotonic()
        since = self._early_since.setdefault(entry.id, now)
        if self._on_gap is None or now - since < self._settings.claim_idle_ms / 1000:
            return
        self._early_since[entry.id] = now
        try:
            await self._on_gap(entry.order_id, entry.seq)
        except Exception as exc:
            self._log_failure(f"streaming order {entry.order_id}'s messages again", exc)

    def _ack(self, entry_id: str) -> None:
        """Acknowledge an entry whose turn is saved, without waiting: a failure is tried
        again later (the entry stays pending meanwhile, and running it again is a repeat)."""
        self._acks.post(entry_id).add_done_callback(functools.partial(self._acked, entry_id))

    def _acked(self, entry_id: str, future: asyncio.Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            self._unacked.add(entry_id)
            if isinstance(exc, Exception):
                self._log_failure("acknowledging an entry", exc)

    async def _ack_batch(self, ids: Sequence[str]) -> list[None]:
        await self._streams.ack(ids)
        return [None] * len(ids)

    async def _ack_again(self) -> None:
        if self._unacked:
            ids = sorted(self._unacked)
            await self._streams.ack(ids)
            self._unacked.difference_update(ids)

    def _backoff(self, attempts: int) -> float:
        delay_ms = min(self._settings.retry_ms * 2 ** (attempts - 1), self._settings.retry_max_ms)
        return float(delay_ms) / 1000

    def _log_failure(self, what: str, exc: Exception) -> None:
        """An outage is said once every few seconds, however many turns meet it; anything
        else is logged with its traceback, as a fault of orderd."""
        if self._is_outage(exc) or isinstance(exc, StaleEpoch | ConcurrentTurn):
            now = time.monotonic()
            if now - self._outage_noted_at >= 5.0:
                self._outage_noted_at = now
                log.warning("%s: waiting for a server: %s: %s", what, type(exc).__name__, exc)
            return
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)

    async def _dead_letter(self, entry: Entry, error: str, message: Message | None) -> float | None:
        """Record the entry as dead and hold its order; None when done, else the delay
        before trying again (each step is a no-op when repeated)."""
        deliveries = max(self._attempts.get(entry.id, 0), entry.deliveries)
        try:
            await self._dead_letters.record(
                stream=self._streams.stream,
                entry_id=entry.id,
                order_id=entry.order_id,
                seq=entry.seq,
                deliveries=deliveries,
                error=error,
                payload=entry.body,
            )
            await self._turns.give_up(
                entry.order_id,
                entry.seq,
                f"message {entry.seq} dead-lettered: {error[:200]}",
                message,
            )
            await self._streams.dead_letter(entry, error)
        except Exception as exc:
            self._log_failure(f"dead-lettering order {entry.order_id} message {entry.seq}", exc)
            return self._put_off(entry)
        log.error("dead-lettered order %s message %d: %s", entry.order_id, entry.seq, error)
        return None

    async def _own_pending(self) -> None:
        """Entries delivered to this consumer name before a restart run first, all of them
        (as room allows; the claims take the rest)."""
        after = "0"
        while await self._wait_for_room():
            try:
                entries, foreign = await self._streams.read(
                    self.consumer,
                    count=self._settings.read_count,
                    block_ms=None,
                    own_pending=True,
                    after=after,
                )
            except GroupLost:
                await self._group_lost()
                return
            await self._streams.ack(foreign)
            for entry in entries:
                self.dispatch(entry)
            ids = [entry.id for entry in entries] + list(foreign)
            if len(ids) < self._settings.read_count:
                return
            after = max(ids, key=_order_key)

    async def _group_lost(self) -> None:
        """Recreate the group; the backlog is rebuilt from PostgreSQL (tried again by the
        janitor until it works: a group that exists again is not found lost twice)."""
        log.warning("the consumer group is gone (Redis lost its data): recreating it")
        self._backlog_lost = True
        try:
            await self._streams.ensure_group()
            await self._rebuild_backlog()
        except Exception as exc:
            self._log_failure("recreating the consumer group", exc)
            await self._pause(self._settings.outage_pause_s)

    async def _check_master(self) -> None:
        """Another server holds the stream than last time (a replica promoted, a server
        restarted with its data): entries added just before may be gone with the old one,
        so every message not yet applied is streamed again (repeats are recognised)."""
        master = await self._streams.master_id()
        if self._stream_master is not None and master != self._stream_master:
            log.warning(
                "another Redis server holds the stream now: streaming again what is not applied"
            )
            self._backlog_lost = True
            await self._rebuild_backlog()
        self._stream_master = master

    async def _rebuild_backlog(self) -> None:
        if self._backlog_lost:
            if self._on_group_lost is not None:
                await self._on_group_lost()
            self._backlog_lost = False

    async def _claim(self) -> None:
        """Take over what consumers that died left pending: the whole pending list, page
        by page, as fast as there is room for it."""
        cursor = "0-0"
        while await self._wait_for_room():
            room = self._settings.max_buffered - len(self._known)
            entries, cursor = await self._streams.claim_idle(
                self.consumer,
                self._settings.claim_idle_ms,
                start=cursor,
                count=max(1, min(self._settings.claim_count, room)),
            )
            for entry in entries:
                self.dispatch(entry)
            if cursor == "0-0":
                return

    async def _claimer(self) -> None:
        """Claims, every janitor_every_s, apart from the janitor: a claim waits for room as
        turns finish, and the janitor's other work does not wait for it."""
        while not self._stopping.is_set():
            try:
                await self._claim()
            except GroupLost:
                await self._group_lost()
            except Exception as exc:
                self._log_failure("claiming idle entries", exc)
            await self._pause(self._settings.janitor_every_s)

    async def _janitor(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self._settings.janitor_every_s)
            if self._stopping.is_set():
                return
            try:
                await self._rebuild_backlog()
                await self._ack_again()
                oldest_ms = await self._streams.oldest_unfinished_ms()
                self.oldest_pending_s = (
                    0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)
                )
                await self._streams.trim()
                await self._streams.forget_idle_consumers(self._settings.forget_consumers_after_ms)
                await self._check_master()
            except GroupLost:
                await self._group_lost()
            except Exception as exc:
                self._log_failure("stream housekeeping", exc)


def _seq(entry: Entry) -> int:
    return entry.seq


def _order_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _arrival_s(entry_id: str) -> float:
    """When a stream entry was added: Redis makes its id from the time in milliseconds."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000
    except ValueError:
        return time.time()
