"""One turn of an order actor: lease, load, decide and run effects, save, in that order.

The turn applies the order's message number ``seq`` only if it is the next one: a repeat
is acknowledged without effect, a message that arrived ahead of an earlier one waits. A
lease in Redis keeps other processes off the order for the turn; it is renewed while the
turn runs, and the turn makes sure it still holds it right before a carrier call that
cannot be repeated safely (buying or voiding a label). The version check when saving makes
sure that even a lease lost mid-turn cannot apply a turn twice. Effects run with fixed
operation ids, so a turn retried after a crash repeats none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import assert_never

from actors.batching import Coalescer
from actors.order.behaviour import (
    Allocated,
    AllocationRefused,
    Buy,
    Commit,
    CommittedShipment,
    Effect,
    Notify,
    ReleaseAll,
    Remind,
    RequestFulfillment,
    ResendFulfillment,
    Reserve,
    Result,
    Rules,
    ShopRates,
    Snapshot,
    Tell,
    TellPlatform,
    Track,
    Void,
    WriteOff,
    WrittenOff,
    decide,
    evolve,
)
from actors.order.effects import Shipping
from actors.order.events import AttentionNeeded, Event, Holding, OrderReceived
from actors.order.holds import DeadLetterHold
from actors.order.messages import BackorderFilled, Message, OrderPaid
from actors.order.outbox import CustomerMessages
from actors.order.reminder import ReminderKey
from actors.order.states import TERMINAL
from actors.ports.mail import Posted
from actors.ports.outboxes import QueuedNotification, QueuedRequest
from actors.ports.reminders import ReminderSchedule
from actors.ports.turns import (
    ConcurrentTurn,
    ConcurrentTurns,
    LeaseBook,
    Loaded,
    OrderStore,
    Reminder,
    StaleTurns,
    Taken,
    Turn,
)
from actors.stock import LedgerEntry, StaleEpoch, Stock, UnknownSku
from actors.storefront import PlatformCall

log = logging.getLogger("orderd.turns")

_MAX_STEPS = 16  # effects feeding results back: a bound, not a budget


class LeaseLost(ConcurrentTurn):
    """The turn no longer holds its order's lease (or cannot tell that it does), so another
    process may be running the order: the turn stops before acting outside, and the message
    is tried again later, when it finds what the other turn saved."""


class Outcome(Enum):
    APPLIED = "applied"  # saved; acknowledge
    REPEAT = "repeat"  # applied before; acknowledge
    EARLY = "early"  # an earlier message of the order is not applied yet; retry later
    BUSY = "busy"  # another process holds the order; retry later


# Entered while a turn waits on an outside party (a carrier, a label file): the runtime
# lends the turn's place to other orders meanwhile.
Outside = Callable[[], AbstractAsyncContextManager[None]]


@dataclass
class _Collected:
    """What a turn gathers to save in its one transaction."""

    ledger: list[LedgerEntry] = field(default_factory=list)
    reminders: list[Reminder] = field(default_factory=list)
    # The order's messages to itself, and fills of what its release gave back to others.
    told: list[Message] = field(default_factory=list)
    requests: list[QueuedRequest] = field(default_factory=list)
    resends: list[ResendFulfillment] = field(default_factory=list)
    platform: list[PlatformCall] = field(default_factory=list)
    notifications: list[QueuedNotification] = field(default_factory=list)

    async def record(self, entry: LedgerEntry) -> None:
        self.ledger.append(entry)


class OrderTurns:
    """Runs turns of order actors against their saved state, their leases, the reminders'
    schedule and the allocation core."""

    def __init__(
        self,
        *,
        orders: OrderStore,
        leases: LeaseBook,
        schedule: ReminderSchedule,
        stock: Stock,
        rules: Rules,
        clock: Callable[[], float],
        shipping: Shipping | None = None,
        messages: CustomerMessages | None = None,
        on_saved: Callable[[Sequence[Posted], Sequence[Turn]], Awaitable[None]] | None = None,
        kept_states: int = 4096,
    ) -> None:
        self._orders = orders
        self._shipping = shipping
        self._messages = messages
        # Told after each save: the messages to stream, and the turns saved.
        self._on_saved = on_saved
        self._schedule = schedule
        self._stock = stock
        self._rules = rules
        self._clock = clock
        self._lease_book = leases
        # A third of a lease: a renewal can fail twice before the lease runs out.
        self._renew_every_s = leases.lease_ms / 3000
        self._running: dict[str, str] = {}  # order -> token of the turns running here
        self._idle = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        # Turns of different orders share their round trips: leases, loads and saves of
        # the turns running at the same time go in one call each.
        self._leases: Coalescer[tuple[str, str], Taken] = Coalescer(self._lease_book.take)
        self._renewals: Coalescer[tuple[str, str], bool] = Coalescer(self._lease_book.renew)
        self._unleases: Coalescer[tuple[str, str], None] = Coalescer(self._free_leases)
        self._loads: Coalescer[str, Loaded] = Coalescer(self._load_batch)
        self._saves: Coalescer[Turn, None] = Coalescer(self._save_batch)
        # What follows a save in Redis (reminders copied, told messages streamed), one
        # batch after another in the order they were saved; the turns do not wait for it.
        self._after: asyncio.Task[None] | None = None
        # The states this process saved last, newest last: an order's next turn here uses
        # its own instead of loading it, when the lease tells nobody saved the order since.
        self._kept: OrderedDict[str, Loaded] = OrderedDict()
        self._kept_states = kept_states

    async def apply(
        self,
        order_id: str,
        seq: int,
        message: Message,
        outside: Outside = contextlib.nullcontext,
    ) -> Outcome:
        """Apply message ``seq`` of the order, exactly once and in order.

        ``outside`` is entered while the turn waits on a carrier (rates, a label bought or
        voided, tracking): the caller may let other turns run meanwhile.
        """
        if order_id in self._running:
            return Outcome.BUSY  # the runtime runs one turn of an order at a time
        # Taken out for the turn: put back only with what the turn saved, or left as it was.
        kept = self._kept.pop(order_id, None)
        token = self._lease_book.new_token()
        held = (order_id, token)
        taken = await self._leases.submit(held)
        if taken is Taken.BUSY:
            return Outcome.BUSY
        self._hold(held)
        try:
            known = kept if taken is Taken.OURS else None
            return await self._turn(order_id, seq, message, token, outside, known)
        finally:
            self._let_go(held)
            # The turn does not wait for its lease to be freed: this process's next turn of
            # the order takes it over (see LeaseBook.take), and another process's turn of it
            # waits as it would for a running turn.
            self._unleases.post(held).add_done_callback(self._freed)

    def _freed(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            # The lease runs out by itself; what the turn did or met is what counts.
            log.warning("leases of finished turns not freed: %s", exc)

    def kept(self, order_id: str) -> Loaded | None:
        """The state this process saved last for the order, if it still keeps it."""
        return self._kept.get(order_id)

    def _keep(self, order_id: str, loaded: Loaded) -> None:
        self._kept[order_id] = loaded
        if len(self._kept) > self._kept_states:
            self._kept.popitem(last=False)

    def _hold(self, held: tuple[str, str]) -> None:
        """Keep the lease of a turn that starts renewed until it ends."""
        order_id, token = held
        self._running[order_id] = token
        self._idle.clear()
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_running())

    def _let_go(self, held: tuple[str, str]) -> None:
        self._running.pop(held[0], None)
        if not self._running:
            self._idle.set()

    async def _renew_running(self) -> None:
        """Renew the leases of all turns running here in one call, every third of a lease,
        for as long as any turn runs."""
        while self._running:
            with contextlib.suppress(TimeoutError):
                # Woken when the last turn ends, so this task never outlives the turns.
                await asyncio.wait_for(self._idle.wait(), self._renew_every_s)
            held = list(self._running.items())
            if not held:
                continue
            try:
                kept = await self._lease_book.renew(held)
            except Exception as exc:
                # Not the turns' failure: a turn that needs its lease asks at its fence.
                log.warning("leases of %d running turns not renewed: %s", len(held), exc)
                continue
            for (order_id, _), still in zip(held, kept, strict=True):
                if not still:
                    log.warning("a running turn of order %s lost its lease", order_id)

    async def _fence(self, order_id: str, token: str) -> None:
        """Make sure the turn still holds its order's lease, renewed for a full lease from
        now, before a call the outside world would carry out twice if asked twice."""
        try:
            still = await self._renewals.submit((order_id, token))
        except self._lease_book.failures as exc:
            raise LeaseLost(f"the turn of {order_id} cannot confirm its lease") from exc
        if not still:
            raise LeaseLost(f"the turn of {order_id} no longer holds its lease")

    async def _free_leases(self, held: Sequence[tuple[str, str]]) -> list[None]:
        await self._lease_book.free(held)
        return [None] * len(held)

    async def _load_batch(self, order_ids: Sequence[str]) -> list[Loaded]:
        found = await self._orders.load_many(list(dict.fromkeys(order_ids)))
        return [found[order_id] for order_id in order_ids]

    async def _save_batch(self, turns: Sequence[Turn]) -> list[Exception | None]:
        outcome: list[Exception | None] = [None] * len(turns)
        fit = list(range(len(turns)))
        posted: list[Posted] = []
        # Each attempt that fails drops at least one turn, so this ends; a second attempt
        # is rare (another process saved an order first, or Redis was rebuilt).
        while fit:
            try:
                posted = await self._orders.save([turns[index] for index in fit])
                break
            except (ConcurrentTurns, StaleTurns) as exc:
                dropped = [i for i in fit if turns[i].order_id in exc.order_ids]
                for index in dropped:
                    order_id = turns[index].order_id
                    outcome[index] = (
                        StaleEpoch(f"Redis was rebuilt during a turn of {order_id}")
                        if isinstance(exc, StaleTurns)
                        else ConcurrentTurn(order_id)
                    )
            if not dropped:
                raise RuntimeError("a failed save named no turn of its batch")
            fit = [index for index in fit if index not in dropped]
        saved = [turns[index] for index in fit]
        if saved:
            # Durable now: a message not streamed is streamed by the pump, a reminder not
            # copied fires from PostgreSQL. The turns go on without waiting for Redis.
            before = self._after
            self._after = asyncio.get_running_loop().create_task(
                self._after_save(before, posted, saved)
            )
        return outcome

    async def _after_save(
        self, before: asyncio.Task[None] | None, posted: list[Posted], saved: list[Turn]
    ) -> None:
        if before is not None:
            # In the order of the saves: an order's messages reach the stream in turn.
            await asyncio.gather(before, return_exceptions=True)
        reminders = [r for t in saved for r in t.reminders]
        if reminders:
            try:
                await self._schedule.add(reminders)
            except Exception as exc:  # the turns are saved: nobody else would hear of it
                log.warning("reminders not copied to Redis: %s", exc)
        if self._on_saved is not None:
            try:
                await self._on_saved(posted, saved)
            except Exception as exc:
                log.warning("after saving %d turns: %s", len(saved), exc)

    async def drain(self) -> None:
        """Wait until what follows the saves made so far is done, and the leases of the
        turns that ended are freed."""
        while self._after is not None and not self._after.done():
            await asyncio.gather(self._after, return_exceptions=True)
        await self._unleases.drain()

    async def _turn(
        self,
        order_id: str,
        seq: int,
        message: Message,
        token: str,
        outside: Outside,
        known: Loaded | None,
    ) -> Outcome:
        loaded = known if known is not None else await self._loads.submit(order_id)
        if seq <= loaded.last_seq:
            self._keep(order_id, loaded)
            return Outcome.REPEAT
        if seq > loaded.last_seq + 1:
            self._keep(order_id, loaded)
            return Outcome.EARLY

        now = datetime.fromtimestamp(self._clock(), UTC)
        collected = _Collected()
        snapshot, events = loaded.snapshot, []
        pending: list[Message | Result] = [message]
        for _ in range(_MAX_STEPS):
            if not pending:
                break
            decision = decide(snapshot, pending.pop(0), self._rules, now)
            for event in decision.events:
                snapshot = evolve(snapshot, event, order_id)
                events.append(event)
            for effect in decision.effects:
                if isinstance(effect, Buy | Void):
                    await self._fence(order_id, token)
                result = await self._run(order_id, snapshot, effect, collected, now, outside)
                if result is not None:
                    pending.append(result)
            if decision.pending is not None:
                pending.append(decision.pending)
        if pending:
            # Never save half a turn: its unapplied results would be lost.
            raise RuntimeError(f"turn of {order_id} took more than {_MAX_STEPS} steps")
        if snapshot is None:
            # A message for an order never seen (a reminder or fill for a stale id): note
            # it, so the order's later messages are not held behind it.
            note = AttentionNeeded(at=now, reason=f"message {seq} for an unknown order")
            snapshot = evolve(None, note, order_id)
            events.append(note)
        await self._save(order_id, loaded, snapshot, events, seq, collected)
        # The save bumped the version by one: the order's next turn here starts from it.
        self._keep(order_id, Loaded(snapshot, loaded.version + 1, seq))
        return Outcome.APPLIED

    async def _run(
        self,
        order_id: str,
        snapshot: Snapshot | None,
        effect: Effect,
        collected: _Collected,
        now: datetime,
        outside: Outside,
    ) -> Message | Result | None:
        match effect:
            case Reserve(lines=lines, policy=policy, op_id=op_id, avoid=avoid):
                try:
                    reservation = await self._stock.reserve(
                        order_id, lines, policy=policy, op_id=op_id, sink=collected, avoid=avoid
                    )
                except UnknownSku as exc:
                    return AllocationRefused(reason=str(exc))
                holdings = tuple(
                    Holding(line.warehouse, line.sku, line.reserved, line.backordered)
                    for line in reservation.lines
                    if line.reserved or line.backordered
                )
                return Allocated(
                    status=reservation.status, holdings=holdings, policy=policy, op_id=op_id
                )
            case ReleaseAll(op_id=op_id):
                released = await self._stock.release(order_id, op_id, sink=collected)
                # The orders that took what was given back learn of it with this turn's
                # save, in the same transaction as the ledger entries of their fills.
                collected.told.extend(
                    BackorderFilled(order_id=fill.order_id, warehouse=r.warehouse, lines=fill.lines)
                    for r in released
                    for fill in r.fills
                )
                return None
            case Remind(kind=kind, due_at=due_at, scope=scope):
                key = ReminderKey(order_id, kind, scope).text()
                collected.reminders.append(Reminder(key, order_id, kind, due_at))
                return None
            case Notify():
                if self._messages is None:
                    raise RuntimeError("Notify: customer messages are not configured here")
                queued, rows = self._messages.queue(order_id, snapshot, effect, now)
                collected.notifications.extend(rows)
                return queued
            case Tell(message=message):
                collected.told.append(message)
                return None
            case Commit(shipment_id=shipment_id, warehouse=warehouse, lines=lines):
                committed = await self._stock.commit(
                    order_id, f"ship:{shipment_id}", lines, warehouse=warehouse, sink=collected
                )
                return CommittedShipment(shipment_id=shipment_id, lines=committed.committed)
            case WriteOff(shipment_id=shipment_id, warehouse=warehouse, lines=lines):
                written = await self._stock.write_off(
                    order_id,
                    f"short:{shipment_id}",
                    lines,
                    reason=f"short pick of shipment {shipment_id}",
                    warehouse=warehouse,
                    sink=collected,
                )
                return WrittenOff(shipment_id=shipment_id, lines=written.committed)
            case RequestFulfillment():
                return await self._ship(order_id, snapshot, effect, collected, now)
            case ResendFulfillment():
                collected.resends.append(effect)
                return None
            case TellPlatform(parcel=parcel):
                collected.platform.append(parcel)
                return None
            case ShopRates() | Buy() | Void() | Track():
                async with outside():
                    return await self._ship(order_id, snapshot, effect, collected, now)
            case _:
                assert_never(effect)

    async def _ship(
        self,
        order_id: str,
        snapshot: Snapshot | None,
        effect: RequestFulfillment | ShopRates | Buy | Void | Track,
        collected: _Collected,
        now: datetime,
    ) -> Message | Result | None:
        shipping = self._shipping
        if shipping is None:
            raise RuntimeError(f"{type(effect).__name__}: shipping is not configured here")
        order = snapshot.order if snapshot is not None else None
        match effect:
            case RequestFulfillment():
                assert order is not None  # only an order with platform data is fulfilled
                result, queued = await shipping.request(order_id, order, effect, now)
                collected.requests.append(queued)
                return result
            case ShopRates():
                assert order is not None
                return await shipping.quote(effect, order)
            case Buy():
                return await shipping.buy(effect)
            case Void():
                return await shipping.void(effect)
            case Track():
                return await shipping.track(order_id, effect)
            case _:
                assert_never(effect)

    async def _save(
        self,
        order_id: str,
        loaded: Loaded,
        snapshot: Snapshot,
        events: list[Event],
        seq: int,
        collected: _Collected,
    ) -> None:
        await self._saves.submit(
            Turn(
                order_id=order_id,
                loaded=loaded,
                snapshot=snapshot,
                events=events,
                seq=seq,
                ledger=collected.ledger,
                reminders=collected.reminders,
                told=collected.told,
                requests=collected.requests,
                resends=collected.resends,
                platform=collected.platform,
                notifications=collected.notifications,
            )
        )

    async def give_up(
        self, order_id: str, seq: int, reason: str, message: Message | None = None
    ) -> None:
        """Mark message ``seq`` as dealt with by holding the order for a person.

        Used when the message was dead-lettered: the order's later messages can go on. A
        paid order that never got further is recorded with its platform data, so a person
        sees what it is (and a replay of the dead letter tries its reservation again).
        """
        now = datetime.fromtimestamp(self._clock(), UTC)
        self._kept.pop(order_id, None)  # saved here without a lease: loaded, not kept
        loaded = await self._loads.submit(order_id)
        if seq <= loaded.last_seq:
            return
        events: list[Event] = []
        current = loaded.snapshot
        # A finished order is not reopened by a message it could not take: it is passed.
        if current is None or current.state not in TERMINAL:
            if isinstance(message, OrderPaid) and (current is None or current.order is None):
                events.append(OrderReceived(at=now, order=message.order))
            # Held until the dead letter is replayed (``orderd dlq replay`` releases it).
            events.append(AttentionNeeded(at=now, reason=reason, hold=DeadLetterHold(seq=seq)))
        snapshot = current
        for event in events:
            snapshot = evolve(snapshot, event, order_id)
        assert snapshot is not None  # an order that is not finished got its hold
        await self._save(order_id, loaded, snapshot, events, seq, _Collected())
