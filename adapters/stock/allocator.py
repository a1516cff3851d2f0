"""The allocation core: reserve, release, commit and adjust stock, fast and exactly once.

Redis (the Lua scripts) decides, atomically and in batches per warehouse; the ledger
records every movement before a call returns. A call repeated with the same order and
operation id (after a crash, or a redelivered message) returns the first result and moves
nothing, and its ledger write is a no-op. When Redis has lost a warehouse (restart, flush,
another database's data) the warehouse is rebuilt from the ledger and the call goes on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

from msgspec import Struct

from actors.batching import Coalescer
from actors.order.types import BackorderPolicy
from actors.ports.observe import UNOBSERVED, Observer
from actors.stock import (
    Adjusted,
    AllocatedLine,
    Committed,
    Filled,
    LedgerEntry,
    LedgerSink,
    MovementKind,
    QueuePlace,
    Released,
    Reservation,
    StaleEpoch,
    Status,
    UnknownSku,
    status_of,
)
from adapters.postgres import stock as ledger
from adapters.redis.client import RedisClient
from adapters.redis.keys import WarehouseKeys, done_field
from adapters.redis.scripts import (
    MODE_CODES,
    PARTIAL,
    QUEUED,
    RESERVED,
    AdjustResult,
    CommitResult,
    DuplicateMovement,
    Lines,
    Outcome,
    ReleaseResult,
    ReserveLine,
    ReserveMode,
    ReserveResult,
    Scripts,
    WarehouseNotReady,
    error_for,
    named_result,
)
from adapters.stock import entries
from adapters.stock.model import AllocationPolicy, Drift, Rebuilt, StockLevel, WarehouseConfig
from adapters.stock.recovery import Recovery, holding_of


class _Call(Struct, frozen=True):
    order_id: str
    op_id: str
    mode: ReserveMode
    priority: int
    lines: Lines
    # The batch writes the ledger entry itself, before answering (None: the caller does);
    # when set, the time the reservation stops waiting, if its policy says so.
    durable: bool = False
    cancel_at: float | None = None


class Allocator:
    """Stock operations for every configured warehouse, batched per warehouse."""

    def __init__(
        self,
        redis: RedisClient,
        pool: Any,
        *,
        prefix: str,
        warehouses: Sequence[WarehouseConfig],
        policy: AllocationPolicy | None = None,
        clock: Callable[[], float] = time.time,
        ledger_sink: LedgerSink | None = None,
        observer: Observer = UNOBSERVED,
    ) -> None:
        if not warehouses:
            raise ValueError("at least one warehouse")
        self._observer = observer
        self._redis = redis
        self._pool = pool
        self._policy = policy or AllocationPolicy()
        self._clock = clock
        self._scripts = Scripts(redis)
        ordered = sorted(warehouses, key=lambda w: (w.priority, w.code))
        self._order = [w.code for w in ordered]
        self._keys = {w.code: WarehouseKeys(prefix, w.code) for w in ordered}
        self._ttl_s = self._policy.idempotency_days * 86400
        # Results are kept per window of this length; the current and the last window are
        # looked up, so a repeat is recognised for at least this long.
        self._window_ms = self._ttl_s * 1000
        batching: dict[str, Any] = {
            "max_batch": self._policy.batch_max,
            "linger_s": self._policy.batch_linger_ms / 1000,
            "max_in_flight": self._policy.batches_in_flight,
        }
        self._writer = ledger.LedgerWriter(pool, self.epochs, StaleEpoch, **batching)
        self._ledger: LedgerSink = ledger_sink or self._writer
        self._batches: dict[str, dict[str, Coalescer[Any, Any]]] = defaultdict(dict)
        for code in self._order:
            self._batches["reserve"][code] = Coalescer(
                self._observed("reserve", partial(self._reserve_batch, code)), **batching
            )
            self._batches["release"][code] = Coalescer(
                self._observed(
                    "release", partial(self._run_batch, code, self._scripts.release, tuple)
                ),
                **batching,
            )
            self._batches["commit"][code] = Coalescer(
                self._observed(
                    "commit", partial(self._run_batch, code, self._scripts.commit, tuple)
                ),
                **batching,
            )
        self._recovery = Recovery(
            redis, pool, ttl_s=self._ttl_s, window_ms=self._window_ms, clock=clock
        )

    @property
    def warehouses(self) -> list[str]:
        """Warehouse codes, first choice first."""
        return list(self._order)

    def keys(self, warehouse: str) -> WarehouseKeys:
        return self._keys[warehouse]

    async def epochs(self, warehouses: Sequence[str]) -> dict[str, str | None]:
        """The Redis epoch of each warehouse now (None: Redis does not hold it)."""
        if not warehouses:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for code in warehouses:
            pipe.hget(self._keys[code].meta, "epoch")
        values = await pipe.execute()
        return {
            code: (value.decode() if isinstance(value, bytes) else value)
            for code, value in zip(warehouses, values, strict=True)
        }

    # -- start-up, recovery, reconciliation ---------------------------------------------

    async def start(self) -> list[str]:
        """Rebuild every warehouse Redis does not hold for this database; return those rebuilt."""
        rebuilt = []
        for code in self._order:
            if not await self._recovery.holds_this_database(self._keys[code]):
                await self.recover(code)
                rebuilt.append(code)
        return rebuilt

    async def recover(self, warehouse: str) -> Rebuilt | None:
        """Rebuild the warehouse's Redis state from the ledger (None: another process did)."""
        return await self._recovery.recover(self._keys[warehouse])

    async def reconcile(self, warehouse: str | None = None) -> list[Drift]:
        """Where Redis and what the ledger implies disagree (empty when they agree)."""
        drift: list[Drift] = []
        for code in [warehouse] if warehouse else self._order:
            drift.extend(await self._recovery.reconcile(self._keys[code]))
        return drift

    async def _script(self, code: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a script call; if Redis lost the warehouse, rebuild it and run the call again."""
        try:
            return await call()
        except WarehouseNotReady:
            await self.recover(code)
            return await call()

    def _observed(
        self, operation: str, handler: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]
    ) -> Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]:
        """``handler`` with each batch's size and time told to the observer."""

        async def run(calls: Sequence[Any]) -> Sequence[Any]:
            started = time.monotonic()
            try:
                return await handler(calls)
            finally:
                self._observer.batch(operation, len(calls), time.monotonic() - started)

        return run

    async def _run_batch(
        self,
        code: str,
        script: Callable[..., Awaitable[list[Outcome[Any]]]],
        request: Callable[[Any], Any],
        calls: Sequence[Any],
    ) -> list[Outcome[Any] | Exception]:
        requests = [request(call) for call in calls]
        outcomes: list[Outcome[Any]] = await self._script(
            code, lambda: script(self._keys[code], self._now_ms(), self._window_ms, requests)
        )
        return [
            outcome if outcome.result.code > 0 else _refused(call, outcome.result)
            for call, outcome in zip(calls, outcomes, strict=True)
        ]

    async def _reserve_batch(
        self, code: str, calls: Sequence[_Call]
    ) -> list[Outcome[ReserveResult] | Exception]:
        """One reserve.lua call for the batch, in its flat form: one table of the batch's
        skus, and integers per request."""
        index: dict[str, int] = {}
        skus: list[str] = []
        ids: list[str] = []
        ints: list[int] = []
        asked: list[list[tuple[str, int]]] = []
        for call in calls:
            lines = _summed(call.lines)
            asked.append(lines)
            ids += (call.order_id, call.op_id)
            priority = call.priority if type(call.priority) is int else -1
            ints += (MODE_CODES.get(call.mode, 0), priority, len(lines))
            for sku, quantity in lines:
                at = index.get(sku)
                if at is None:
                    skus.append(sku)
                    at = index[sku] = len(skus)  # Lua counts from 1
                ints += (at, quantity)
        keys = self._keys[code]
        flat = await self._script(
            code,
            lambda: self._scripts.reserve(keys, self._now_ms(), self._window_ms, skus, ids, ints),
        )
        epoch = flat[0].decode() if isinstance(flat[0], bytes) else str(flat[0])
        out: list[Outcome[ReserveResult] | Exception] = []
        at = 1
        for call, lines in zip(calls, asked, strict=True):
            if flat[at]:  # a repeat: the first call's result, as it was stored
                out.append(Outcome(named_result(flat[at + 1]), True, epoch))
                at += 2
                continue
            result_code = flat[at + 1]
            at += 2
            if result_code < 0:
                # The line at fault, where there is one, by its number from 1.
                fault = flat[at]
                at += 1
                named = tuple(
                    ReserveLine(sku, wanted, 0, 0)
                    for k, (sku, wanted) in enumerate(lines, 1)
                    if k == fault
                )
                out.append(_refused(call, ReserveResult(result_code, named)))
                continue
            if result_code == PARTIAL:
                got = flat[at : at + 2 * len(lines)]
                at += 2 * len(lines)
                result = ReserveResult(
                    result_code,
                    tuple(
                        ReserveLine(sku, wanted, got[2 * k], got[2 * k + 1])
                        for k, (sku, wanted) in enumerate(lines)
                    ),
                )
            else:
                result = ReserveResult(result_code, _implied(result_code, lines))
            out.append(Outcome(result, False, epoch))
        if any(call.durable for call in calls):
            await self._write_reservations(code, epoch, calls, out)
        return out

    async def _write_reservations(
        self,
        code: str,
        epoch: str,
        calls: Sequence[_Call],
        outcomes: list[Outcome[ReserveResult] | Exception],
    ) -> None:
        """The ledger rows of the batch's durable calls, in one transaction; each call is
        answered StaleEpoch instead when Redis was rebuilt meanwhile (it runs again)."""
        now = self._clock()
        when = entries.at(now)
        rows: list[ledger.LedgerRow] = []
        places: list[QueuePlace] = []
        again: list[LedgerEntry] = []
        written: list[int] = []
        for at, (call, outcome) in enumerate(zip(calls, outcomes, strict=True)):
            if not call.durable or isinstance(outcome, Exception):
                continue
            written.append(at)
            if outcome.replay:
                # Its first call may have died before writing: written again, a no-op
                # where it was not.
                allocated = _allocated(code, outcome.result)
                again.append(
                    entries.reservation(
                        call.order_id, call.op_id, allocated, call.priority, now,
                        call.cancel_at, {code: epoch},
                    )
                )  # fmt: skip
                continue
            row, place = entries.reservation_row(
                code, call.order_id, call.op_id, outcome.result.lines, call.priority, when,
                call.cancel_at,
            )  # fmt: skip
            if row is not None:
                rows.append(row)
            if place is not None:
                places.append(place)
        if not await self._writer.write_batch(code, epoch, rows, places, again):
            for at in written:
                outcomes[at] = StaleEpoch()

    async def reserve(
        self,
        order_id: str,
        lines: Lines,
        *,
        policy: BackorderPolicy | None = None,
        priority: int = 0,
        op_id: str = "reserve",
        sink: LedgerSink | None = None,
        avoid: Sequence[str] = (),
    ) -> Reservation:
        """Reserve an order's lines, or queue them as the backorder policy says.

        The ledger entry goes to ``sink`` when one is given (the order actor writes it with
        its turn), else it is written before this returns.

        The first warehouse (by priority) that can fill the order whole gets it. Otherwise,
        with splitting allowed, each warehouse in turn reserves what it can; what is still
        missing (or, without splitting, the order) waits in the first warehouse's queues.

        ``avoid`` names warehouses whose stock is not to be taken now (where a short pick
        found less than the count said): another warehouse that can fill the lines whole
        gets them, else they wait in the first one avoided, for a recount or a receipt.
        """
        if avoid:
            return await _again_if_stale(
                lambda: self._reserve_avoiding(
                    order_id, lines, policy, priority, op_id, sink, avoid
                )
            )
        if len(self._order) == 1:
            return await self._reserve_here(order_id, lines, policy, priority, op_id, sink)
        return await _again_if_stale(
            lambda: self._reserve(order_id, lines, policy, priority, op_id, sink)
        )

    async def _reserve_here(
        self,
        order_id: str,
        lines: Lines,
        policy: BackorderPolicy | None,
        priority: int,
        op_id: str,
        sink: LedgerSink | None,
    ) -> Reservation:
        """:meth:`reserve` with one warehouse: one batched script call, and (unless the
        caller takes the ledger entry) the batch's ledger write. The path every order of
        a single warehouse takes, so it makes as few objects as it can: it runs again when
        Redis was rebuilt under it as _again_if_stale does, without its extra coroutine
        and closure per call (about 2 us of client CPU per order, measured)."""
        code = self._order[0]
        policy = policy or self._policy.backorder_policy
        mode: ReserveMode = "ship_available" if policy == "ship_available" else "wait_all"
        durable = sink is None and self._ledger is self._writer
        now = self._clock()
        call = _Call(
            order_id, op_id, mode, priority, lines, durable,
            self._cancel_at(policy, now) if durable else None,
        )  # fmt: skip
        for attempt in range(_STALE_ATTEMPTS):
            try:
                outcome = await self._reserve_in(code, call)
                allocated = _allocated(code, outcome.result)
                if not durable:
                    await self._record_reservation(
                        order_id, op_id, allocated, now, {code: outcome.epoch}, policy,
                        priority, sink,
                    )  # fmt: skip
                status = _STATUS.get(outcome.result.code) or status_of(allocated)
                return Reservation(order_id, op_id, status, allocated, outcome.replay)
            except StaleEpoch:
                if attempt == _STALE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _reserve(
        self,
        order_id: str,
        lines: Lines,
        policy: BackorderPolicy | None,
        priority: int,
        op_id: str,
        sink: LedgerSink | None,
    ) -> Reservation:
        """One attempt of :meth:`reserve`: the warehouses' epochs it saw go with its entry."""
        policy = policy or self._policy.backorder_policy
        mode: ReserveMode = "ship_available" if policy == "ship_available" else "wait_all"
        now = self._clock()
        seen: dict[str, str] = {}

        async def record(record_op: str, allocated: Sequence[AllocatedLine]) -> None:
            await self._record_reservation(
                order_id, record_op, allocated, now, dict(seen), policy, priority, sink
            )

        async def attempt(code: str, call: _Call) -> ReserveResult:
            outcome = await self._reserve_in(code, call)
            seen[code] = outcome.epoch
            return outcome.result

        earlier = await self._replayed(order_id, op_id, now, policy, priority, sink)
        if earlier is not None:
            return earlier

        for code in self._order:
            result = await attempt(code, _Call(order_id, op_id, "all", priority, lines))
            if result.code == RESERVED:
                allocated = _allocated(code, result)
                seen = {code: seen[code]}
                await record(op_id, allocated)
                return Reservation(order_id, op_id, "reserved", allocated, False)

        split_op = f"{op_id}:split"
        parts: list[AllocatedLine] = []
        if self._policy.split_across_warehouses:
            parts = await self._split(order_id, split_op, lines, priority, sink, attempt)
            await record(split_op, parts)
        remaining = _remaining(lines, parts)
        if parts and not remaining:
            return Reservation(order_id, op_id, "reserved", tuple(parts), False)
        primary = self._order[0]
        if parts and policy == "ship_available":
            # Ship what the split found; the rest waits in the first warehouse.
            rest_call = _Call(order_id, f"{op_id}:rest", "wait_all", priority, tuple(remaining))
        else:
            if parts:
                # wait_all: a split that cannot finish gives back what it took.
                await self._undo_split(order_id, split_op, parts, sink)
                parts = []
            rest_call = _Call(order_id, op_id, mode, priority, lines)
        rest = _allocated(primary, await attempt(primary, rest_call))
        await record(rest_call.op_id, rest)
        allocated = (*parts, *rest)
        return Reservation(order_id, op_id, status_of(allocated), allocated, False)

    async def _reserve_avoiding(
        self,
        order_id: str,
        lines: Lines,
        policy: BackorderPolicy | None,
        priority: int,
        op_id: str,
        sink: LedgerSink | None,
        avoid: Sequence[str],
    ) -> Reservation:
        """One attempt of :meth:`reserve` away from the ``avoid`` warehouses; the order's
        ``policy`` decides how long the units may wait (``cancel_after_days``)."""
        now = self._clock()
        policy = policy or self._policy.backorder_policy
        earlier = await self._replayed(order_id, op_id, now, policy, priority, sink)
        if earlier is not None:
            return earlier
        waiting = next((code for code in avoid if code in self._keys), self._order[0])
        tries: list[tuple[str, ReserveMode]] = [
            (code, "all") for code in self._order if code not in avoid
        ]
        tries.append((waiting, "queue"))
        for code, mode in tries:
            outcome = await self._reserve_in(code, _Call(order_id, op_id, mode, priority, lines))
            if outcome.result.code in (RESERVED, QUEUED):
                allocated = _allocated(code, outcome.result)
                await self._record_reservation(
                    order_id, op_id, allocated, now, {code: outcome.epoch}, policy, priority,
                    sink,
                )  # fmt: skip
                return Reservation(order_id, op_id, status_of(allocated), allocated, False)
        raise AssertionError("a queue call always queues")

    async def _reserve_in(self, code: str, call: _Call) -> Outcome[ReserveResult]:
        batches = self._batches["reserve"][code]
        try:
            outcome: Outcome[ReserveResult] = await batches.submit(call)
        except UnknownSku:
            # A product imported while Redis was away has no stock record yet: make one.
            if not await self._ensure_stock_records(code, [sku for sku, _ in call.lines]):
                raise
            outcome = await batches.submit(call)
        return outcome

    async def _replayed(
        self,
        order_id: str,
        op_id: str,
        now: float,
        policy: BackorderPolicy,
        priority: int,
        sink: LedgerSink | None,
    ) -> Reservation | None:
        """The first result of a call made before with the same order and op_id, if any.

        It is recorded again (a no-op when the first record was saved): the first caller
        may have died before its ledger entries were written."""
        earlier = await self._earlier_reservation(order_id, op_id)
        if not earlier:
            return None
        found: list[AllocatedLine] = []
        for record_op, code, epoch, taken in earlier:
            await self._record_reservation(
                order_id, record_op, taken, now, {code: epoch}, policy, priority, sink
            )
            found.extend(line for line in taken if line.wanted)
        return Reservation(order_id, op_id, status_of(found), tuple(found), True)

    async def _earlier_reservation(
        self, order_id: str, op_id: str
    ) -> list[tuple[str, str, str, tuple[AllocatedLine, ...]]]:
        """What an earlier identical call holds in any warehouse, split parts included:
        (operation, warehouse, its epoch now, lines) for each part found.

        A split part that was given back (its ``:undo`` is recorded) no longer counts.
        """
        split_op = f"{op_id}:split"
        asked = [op_id, split_op, f"{split_op}:undo", f"{op_id}:rest"]
        fields = [done_field(order_id, op) for op in asked]
        window = self._now_ms() // self._window_ms
        found = []
        for code in self._order:
            keys = self._keys[code]
            pipe = self._redis.pipeline(transaction=True)
            pipe.hget(keys.meta, "epoch")
            pipe.hmget(keys.done(window), fields)
            pipe.hmget(keys.done(window - 1), fields)
            epoch, now, last = await pipe.execute()
            whole, split, undone, rest = (
                a if a is not None else b for a, b in zip(now, last, strict=True)
            )
            parts = ((op_id, whole), (split_op, None if undone else split), (f"{op_id}:rest", rest))
            for part_op, raw in parts:
                if raw is not None and epoch is not None:
                    text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
                    found.append((part_op, code, text, _allocated(code, named_result(raw))))
        return found

    async def _split(
        self,
        order_id: str,
        split_op: str,
        lines: Lines,
        priority: int,
        sink: LedgerSink | None,
        attempt: Callable[[str, _Call], Awaitable[ReserveResult]],
    ) -> list[AllocatedLine]:
        parts: list[AllocatedLine] = []
        for code in self._order:
            remaining = _remaining(lines, parts)
            if not remaining:
                break
            try:
                result = await attempt(
                    code, _Call(order_id, split_op, "partial", priority, tuple(remaining))
                )
            except Exception:
                await self._undo_split(order_id, split_op, parts, sink)
                raise
            parts.extend(line for line in _allocated(code, result) if line.reserved)
        return parts

    async def _undo_split(
        self,
        order_id: str,
        split_op: str,
        parts: Sequence[AllocatedLine],
        sink: LedgerSink | None,
    ) -> None:
        by_warehouse: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for line in parts:
            by_warehouse[line.warehouse].append((line.sku, line.reserved))
        for code, taken in by_warehouse.items():
            await self.release(order_id, f"{split_op}:undo", taken, warehouse=code, sink=sink)

    async def _record_reservation(
        self,
        order_id: str,
        op_id: str,
        lines: Sequence[AllocatedLine],
        now: float,
        epochs: dict[str, str],
        policy: BackorderPolicy,
        priority: int,
        sink: LedgerSink | None,
    ) -> None:
        cancel_at = self._cancel_at(policy, now)
        used = {
            line.warehouse: epochs[line.warehouse] for line in lines if line.warehouse in epochs
        }
        await (sink or self._ledger).record(
            entries.reservation(order_id, op_id, lines, priority, now, cancel_at, used)
        )

    def _cancel_at(self, policy: BackorderPolicy, now: float) -> float | None:
        if policy == "cancel_after_days":
            return now + self._policy.cancel_after_days * 86400
        return None

    # -- release and commit ---------------------------------------------------------------

    async def release(
        self,
        order_id: str,
        op_id: str,
        lines: Lines | None = None,
        *,
        warehouse: str | None = None,
        sink: LedgerSink | None = None,
    ) -> list[Released]:
        """Give back what the order holds: ``lines`` (short pick) or everything (cancel).

        Everything (``lines=None``) also takes the order out of every backorder queue, in
        every warehouse unless one is named, and fills the orders waiting for what it gave
        back, as a stock arrival would; ``lines`` apply to the named or first one.
        """
        everywhere = self._order if lines is None else self._order[:1]
        codes = [warehouse] if warehouse else everywhere
        return await _again_if_stale(lambda: self._release(order_id, op_id, lines, codes, sink))

    async def _release(
        self,
        order_id: str,
        op_id: str,
        lines: Lines | None,
        codes: Sequence[str],
        sink: LedgerSink | None,
    ) -> list[Released]:
        done = []
        for code in codes:
            outcome: Outcome[ReleaseResult] = await self._batches["release"][code].submit(
                (order_id, op_id, tuple(lines or ()))
            )
            result = outcome.result
            entry = entries.release(code, order_id, op_id, result, self._clock(), outcome.epoch)
            await (sink or self._ledger).record(entry)
            fills: list[Filled] = []
            if lines is None:
                # Named by the release and the Redis it was applied in: a release run again
                # in a rebuilt Redis (which applies it afresh) fills afresh too.
                step = f"release:{order_id}:{op_id}@{outcome.epoch}"
                for q in result.released:
                    fills += await self._fill_waiting(code, q.sku, step, sink)
            done.append(
                Released(
                    code,
                    tuple((q.sku, q.quantity) for q in result.released),
                    tuple((q.sku, q.quantity) for q in result.dropped),
                    outcome.replay,
                    tuple(fills),
                )
            )
        return done

    async def _fill_waiting(
        self, code: str, sku: str, movement_id: str, sink: LedgerSink | None
    ) -> list[Filled]:
        """Fill the orders waiting for ``sku`` from what is free of it now.

        Each step has a movement id derived from ``movement_id``: a release run again (its
        turn retried after a crash) gets the same fills back and fills nobody else, so
        its ledger entries are the same and the orders are told the same.
        """
        keys, limit = self._keys[code], self._policy.fill_limit
        filled: list[Filled] = []
        more = True
        while more:
            step_id = f"{movement_id}+{len(filled)}" if filled else movement_id
            call = partial(self._scripts.adjust, keys, self._now_ms(), self._ttl_s, sku, "fill")
            step: AdjustResult = await self._script(code, partial(call, 0, step_id, limit))
            if step.code < 0 and step.code != -6:  # -6: a repeat, with the first result
                raise error_for(step.code, _adjust_refusal(sku, 0, "fill", step))
            if step.fills:
                await (sink or self._ledger).record(
                    entries.filled(code, step_id, step.fills, self._clock(), step.epoch)
                )
            filled.extend(_filled(fill) for fill in step.fills)
            more = bool(step.more and step.fills)
        return filled

    async def commit(
        self,
        order_id: str,
        op_id: str,
        lines: Lines,
        *,
        warehouse: str | None = None,
        sink: LedgerSink | None = None,
    ) -> Committed:
        """A shipment left: its quantities leave on hand and the order's reservation."""
        code = warehouse or self._order[0]
        return await _again_if_stale(lambda: self._commit(order_id, op_id, lines, code, sink))

    async def write_off(
        self,
        order_id: str,
        op_id: str,
        lines: Lines,
        *,
        reason: str,
        warehouse: str | None = None,
        sink: LedgerSink | None = None,
    ) -> Committed:
        """Reserved units that are not on the shelf (a short pick) leave on hand and the
        order's reservation in one atomic step, recorded as an adjustment with ``reason``.

        Releasing and then adjusting would let another order reserve the missing units
        in between.
        """
        code = warehouse or self._order[0]
        return await _again_if_stale(
            lambda: self._commit(order_id, op_id, lines, code, sink, write_off=reason)
        )

    async def _commit(
        self,
        order_id: str,
        op_id: str,
        lines: Lines,
        code: str,
        sink: LedgerSink | None,
        write_off: str | None = None,
    ) -> Committed:
        outcome: Outcome[CommitResult] = await self._batches["commit"][code].submit(
            (order_id, op_id, tuple(lines))
        )
        result = outcome.result
        entry = entries.commit(
            code, order_id, op_id, result, self._clock(), outcome.epoch, write_off=write_off
        )
        await (sink or self._ledger).record(entry)
        return Committed(code, tuple((q.sku, q.quantity) for q in result.committed), outcome.replay)

    # -- adjust ---------------------------------------------------------------------------

    async def adjust(
        self,
        sku: str,
        quantity: int,
        *,
        movement_id: str,
        mode: Literal["delta", "set"] = "delta",
        reason: str | None = None,
        warehouse: str | None = None,
    ) -> Adjusted:
        """Receive, count or write off stock (``delta`` +/-N, or ``set`` N), once per movement id.

        Waiting backorders for the sku are filled in the same atomic step; the orders
        filled are returned so their actors can be told.
        """
        code = warehouse or self._order[0]
        return await _again_if_stale(
            lambda: self._adjust(sku, quantity, movement_id, mode, reason, code)
        )

    async def _adjust(
        self,
        sku: str,
        quantity: int,
        movement_id: str,
        mode: Literal["delta", "set"],
        reason: str | None,
        code: str,
    ) -> Adjusted:
        async with self._pool.acquire() as conn:
            if not await ledger.product_exists(conn, sku):
                raise UnknownSku(f"unknown sku {sku!r}: import it with `orderd catalog import`")
            key = entries.stock_movement_key(code, sku, movement_id)
            if await ledger.movement_exists(conn, key):
                raise DuplicateMovement(f"movement {movement_id!r} was already recorded")
        await self._ensure_stock_records(code, [sku])
        keys = self._keys[code]
        limit = self._policy.fill_limit
        result: AdjustResult = await self._script(
            code,
            lambda: self._scripts.adjust(
                keys, self._now_ms(), self._ttl_s, sku, mode, quantity, movement_id, limit
            ),
        )
        if result.code < 0 and result.code != -6:
            raise error_for(result.code, _adjust_refusal(sku, quantity, mode, result))
        # -6: Redis has it but the ledger has not (a crash in between): record it now.
        kind: MovementKind = "set" if mode == "set" else "adjust"
        await self._ledger.record(
            entries.adjustment(
                code,
                sku,
                movement_id,
                kind,
                result.on_hand_delta,
                reason,
                result.fills,
                self._clock(),
                result.epoch,
            )
        )
        filled = [_filled(fill) for fill in result.fills]
        reserved, backordered, more = result.reserved, result.backordered, result.more
        while more:
            step: AdjustResult = await self._script(
                code,
                lambda: self._scripts.adjust(
                    keys, self._now_ms(), self._ttl_s, sku, "fill", 0, "", limit
                ),
            )
            await self._ledger.record(
                entries.filled(
                    code, f"{movement_id}+{len(filled)}", step.fills, self._clock(), step.epoch
                )
            )
            filled.extend(_filled(fill) for fill in step.fills)
            reserved, backordered = step.reserved, step.backordered
            more = step.more if step.fills else 0
        return Adjusted(
            code,
            sku,
            movement_id,
            result.on_hand_delta,
            result.on_hand,
            reserved,
            backordered,
            tuple(filled),
        )

    async def _ensure_stock_records(self, code: str, skus: Sequence[str]) -> bool:
        """Create zero stock records for catalog skus Redis does not know; False if none is."""
        async with self._pool.acquire() as conn:
            known = await conn.fetch("SELECT sku FROM products WHERE sku = ANY($1::text[])", skus)
        if not known:
            return False
        keys = self._keys[code]
        if not await self._redis.exists(keys.meta):
            await self.recover(code)  # the rebuild creates every product's record
            return True
        pipe = self._redis.pipeline(transaction=False)
        for row in known:
            for key in keys.stock:
                pipe.hsetnx(key, row["sku"], 0)
        await pipe.execute()
        return True

    # -- reading ----------------------------------------------------------------------------

    async def stock(self, sku: str, warehouse: str | None = None) -> StockLevel:
        """The sku's stock in one warehouse as Redis holds it."""
        code = warehouse or self._order[0]
        keys = self._keys[code]
        if not await self._redis.exists(keys.meta):
            await self.recover(code)
        pipe = self._redis.pipeline(transaction=True)
        for key in keys.stock:
            pipe.hget(key, sku)
        values = await pipe.execute()
        if values[0] is None:
            async with self._pool.acquire() as conn:
                if not await ledger.product_exists(conn, sku):
                    raise UnknownSku(f"unknown sku {sku!r}")
        on_hand, reserved, backordered = (int(v or 0) for v in values)
        return StockLevel(sku, code, on_hand, reserved, on_hand - reserved, backordered)

    async def available(self) -> dict[tuple[str, str], int]:
        """Units available to sell per (warehouse, sku), on hand less reserved, as Redis
        holds them now (:class:`actors.stock_push.StockFigures`)."""
        figures: dict[tuple[str, str], int] = {}
        for code in self._order:
            keys = self._keys[code]
            if not await self._redis.exists(keys.meta):
                await self.recover(code)
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(keys.on_hand)
            pipe.hgetall(keys.reserved)
            on_hand, reserved = await pipe.execute()
            for raw_sku, units in on_hand.items():
                sku = raw_sku.decode() if isinstance(raw_sku, bytes) else raw_sku
                held = int(reserved.get(raw_sku) or 0)
                figures[code, sku] = max(0, int(units) - held)
        return figures

    async def holding(
        self, order_id: str, warehouse: str | None = None
    ) -> tuple[dict[str, int], dict[str, int]]:
        """What the order holds in one warehouse as Redis has it: (reserved, waiting) per sku."""
        raw = await self._redis.hget(self._keys[warehouse or self._order[0]].orders, order_id)
        if raw is None:
            return {}, {}
        held = holding_of(raw)
        return dict(held.get("r", {})), dict(held.get("w", {}))

    async def drain(self) -> None:
        """Wait for every batched call and ledger write in flight."""
        for group in self._batches.values():
            for coalescer in group.values():
                await coalescer.drain()
        await self._writer.drain()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


T = TypeVar("T")
_STALE_ATTEMPTS = 3
# A reservation's status from the script's code (what status_of says of its lines).
_STATUS: dict[int, Status] = {
    RESERVED: "reserved",
    PARTIAL: "partially_reserved",
    QUEUED: "backordered",
}


async def _again_if_stale(operation: Callable[[], Awaitable[T]]) -> T:
    """Run ``operation`` again when Redis was rebuilt under it: the rebuilt Redis no longer
    holds its change, so running it again applies it once, where it now counts."""
    for attempt in range(_STALE_ATTEMPTS):
        try:
            return await operation()
        except StaleEpoch:
            if attempt == _STALE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _filled(fill: Any) -> Filled:
    return Filled(fill.order_id, tuple((q.sku, q.quantity) for q in fill.lines))


def _summed(lines: Lines) -> list[tuple[str, int]]:
    """An order's lines with each sku once, in the order skus first appear.

    A line reserve.lua must refuse (a quantity that is not a whole number from 1, a sku
    that is not a name) makes the request carry quantity 0, which the script refuses
    as a bad quantity: summing first could hide it.
    """
    summed: dict[str, int] = {}
    for sku, quantity in lines:
        if type(quantity) is not int or quantity < 1 or not isinstance(sku, str) or not sku:
            return [(str(sku), 0)]
        summed[sku] = summed.get(sku, 0) + quantity
    return list(summed.items())


def _allocated(code: str, result: ReserveResult) -> tuple[AllocatedLine, ...]:
    return tuple(
        AllocatedLine(code, ln.sku, ln.wanted, ln.reserved, ln.backordered) for ln in result.lines
    )


def _implied(code: int, lines: Sequence[tuple[str, int]]) -> tuple[ReserveLine, ...]:
    """A whole result's lines, which its code implies: each got what it wanted (reserved),
    waits for it (queued), or nothing happened (short)."""
    if code == RESERVED:
        return tuple(ReserveLine(sku, wanted, wanted, 0) for sku, wanted in lines)
    if code == QUEUED:
        return tuple(ReserveLine(sku, wanted, 0, wanted) for sku, wanted in lines)
    return tuple(ReserveLine(sku, wanted, 0, 0) for sku, wanted in lines)


def _remaining(lines: Lines, parts: Sequence[AllocatedLine]) -> list[tuple[str, int]]:
    left: dict[str, int] = {}
    for sku, quantity in lines:
        left[sku] = left.get(sku, 0) + quantity
    for part in parts:
        left[part.sku] -= part.reserved
    return [(sku, quantity) for sku, quantity in left.items() if quantity > 0]


_REFUSALS = {
    -1: "unknown sku",
    -2: "quantities must be whole numbers from 1 to 1,000,000,000",
    -3: "malformed request",
    -4: "more than the order holds",
    -7: "a stock record in Redis is not numbers; run `orderd recover`",
}


def _refused(call: Any, result: Any) -> Exception:
    order_id = call.order_id if isinstance(call, _Call) else call[0]
    lines: Sequence[Any] = (
        getattr(result, "lines", None)
        or getattr(result, "released", None)
        or getattr(result, "committed", None)
        or ()
    )
    what = _REFUSALS.get(result.code, f"refused ({result.code})")
    skus = ", ".join(repr(line.sku) for line in lines) if result.code in (-1, -4, -7) else ""
    return error_for(result.code, f"order {order_id!r}: {what}" + (f" ({skus})" if skus else ""))


def _adjust_refusal(sku: str, quantity: int, mode: str, result: AdjustResult) -> str:
    would_be = result.on_hand + result.on_hand_delta
    if result.code == -5 and result.reserved == 0:
        return f"{sku}: on hand would be {would_be}; it cannot go below 0"
    if result.code == -5:
        return (
            f"{sku}: on hand would be {would_be}, below the {result.reserved} reserved for "
            "orders; release or ship those first"
        )
    if result.code == -7:
        return f"{sku}: the stock record in Redis is not numbers; run `orderd recover`"
    if result.code == -2:
        return f"{sku}: {mode} {quantity}: quantity must be a whole number up to 1,000,000,000"
    return f"{sku}: refused ({result.code})"
