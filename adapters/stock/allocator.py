"""The allocation core: reserve, release, commit and adjust stock, fast and exactly once.

Redis (the Lua scripts) decides, atomically and in batches; PostgreSQL (the ledger) records
every movement before the call returns. A call repeated with the same order and operation
id (after a crash, or a redelivered message) returns the first result and moves nothing,
and its ledger write is a no-op. When Redis has lost a warehouse (restart, flush, another
database's data) the warehouse is rebuilt from the ledger and the call goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

import msgspec
from msgspec import Struct
from redis.asyncio import Redis

from adapters.batching import Coalescer
from adapters.postgres import stock as ledger
from adapters.redis import scripts
from adapters.redis.keys import WarehouseKeys, queue_score
from adapters.redis.scripts import (
    PARTIAL,
    QUEUED,
    RESERVED,
    AdjustResult,
    CommitResult,
    DuplicateMovement,
    Lines,
    ReleaseResult,
    ReserveMode,
    ReserveResult,
    Scripts,
    UnknownSku,
    WarehouseNotReady,
    error_for,
)

Policy = Literal["wait_all", "ship_available", "cancel_after_days"]
Status = Literal["reserved", "partially_reserved", "backordered"]
_RECOVERY_LOCK_MS = 120_000
_PACK = msgspec.msgpack.Encoder().encode
_reserve_result = msgspec.msgpack.Decoder(ReserveResult)


class WarehouseConfig(Struct, frozen=True):
    code: str
    priority: int = 1


class AllocationPolicy(Struct, frozen=True, kw_only=True):
    backorder_policy: Policy = "wait_all"
    cancel_after_days: int = 14
    split_across_warehouses: bool = False
    idempotency_days: int = 30
    batch_max: int = 512
    batch_linger_ms: float = 0.0
    batches_in_flight: int = 4
    fill_limit: int = 500


class AllocatedLine(Struct, frozen=True):
    warehouse: str
    sku: str
    wanted: int
    reserved: int
    backordered: int


class Reservation(Struct, frozen=True):
    order_id: str
    op_id: str
    status: Status
    lines: tuple[AllocatedLine, ...]
    replay: bool


class Released(Struct, frozen=True):
    warehouse: str
    released: tuple[tuple[str, int], ...]
    dropped: tuple[tuple[str, int], ...]


class Adjusted(Struct, frozen=True):
    warehouse: str
    sku: str
    movement_id: str
    on_hand_delta: int
    on_hand: int
    reserved: int
    backordered: int
    filled_orders: tuple[str, ...]


class StockLevel(Struct, frozen=True):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    available: int
    backordered: int


class Drift(Struct, frozen=True):
    warehouse: str
    what: str
    redis: int
    ledger: int


class Rebuilt(Struct, frozen=True):
    warehouse: str
    skus: int
    reservations: int
    backorders: int


class _Call(Struct, frozen=True):
    order_id: str
    op_id: str
    mode: ReserveMode
    priority: int
    lines: Lines


def _status(lines: Sequence[AllocatedLine]) -> Status:
    if all(line.reserved == line.wanted for line in lines):
        return "reserved"
    if any(line.reserved for line in lines):
        return "partially_reserved"
    return "backordered"


def movement_key(warehouse: str, owner: str, op_id: str, sku: str) -> str:
    """The ledger's idempotency key: one movement per warehouse, owner, operation and sku."""
    return f"{warehouse}/{owner}/{op_id}/{sku}"


class Allocator:
    """Stock operations for every configured warehouse, batched per warehouse."""

    def __init__(
        self,
        redis: Redis,
        pool: Any,
        *,
        prefix: str,
        warehouses: Sequence[WarehouseConfig],
        policy: AllocationPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not warehouses:
            raise ValueError("at least one warehouse")
        self._redis = redis
        self._pool = pool
        self._policy = policy or AllocationPolicy()
        self._clock = clock
        self._scripts = Scripts(redis)
        ordered = sorted(warehouses, key=lambda w: (w.priority, w.code))
        self._order = [w.code for w in ordered]
        self._keys = {w.code: WarehouseKeys(prefix, w.code) for w in ordered}
        self._ttl_s = self._policy.idempotency_days * 86400
        batching: dict[str, Any] = {
            "max_batch": self._policy.batch_max,
            "linger_s": self._policy.batch_linger_ms / 1000,
            "max_in_flight": self._policy.batches_in_flight,
        }
        self._reserve_batches = {
            code: Coalescer(partial(self._reserve_batch, code), **batching) for code in self._order
        }
        self._release_batches = {
            code: Coalescer(partial(self._release_batch, code), **batching) for code in self._order
        }
        self._commit_batches = {
            code: Coalescer(partial(self._commit_batch, code), **batching) for code in self._order
        }
        self._ledger = Coalescer(self._write_ledger, **batching)
        self._instance: str | None = None
        self._recovering: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def warehouses(self) -> list[str]:
        """Warehouse codes, first choice first."""
        return list(self._order)

    def keys(self, warehouse: str) -> WarehouseKeys:
        return self._keys[warehouse]

    # -- start-up and recovery ----------------------------------------------------------

    async def start(self) -> list[str]:
        """Rebuild every warehouse Redis does not hold for this database; return those rebuilt."""
        rebuilt = []
        for code in self._order:
            if not await self._holds_this_database(code):
                await self.recover(code)
                rebuilt.append(code)
        return rebuilt

    async def _instance_id(self) -> str:
        if self._instance is None:
            async with self._pool.acquire() as conn:
                self._instance = await ledger.instance_id(conn)
        return self._instance

    async def _holds_this_database(self, code: str) -> bool:
        held = await self._redis.hget(self._keys[code].meta, "instance")
        return held is not None and _text(held) == await self._instance_id()

    async def recover(self, code: str) -> Rebuilt | None:
        """Rebuild the warehouse's Redis state from the ledger, whatever Redis holds now.

        Scripts refuse to run while the warehouse's meta key is missing, so nothing acts
        on a half-built warehouse; meta is written last. One process rebuilds at a time
        (a Redis lock); the others wait for it to finish and get None.
        """
        keys = self._keys[code]
        lock_key = f"{keys.base}recovering"
        async with self._recovering[code]:
            token = f"{time.time_ns()}"
            if not await self._redis.set(lock_key, token, nx=True, px=_RECOVERY_LOCK_MS):
                await self._wait_for_meta(keys)
                return None
            try:
                return await self._rebuild(code, keys)
            finally:
                if await self._redis.get(lock_key) == token.encode():
                    await self._redis.delete(lock_key)

    async def _wait_for_meta(self, keys: WarehouseKeys) -> None:
        deadline = time.monotonic() + _RECOVERY_LOCK_MS / 1000
        delay = 0.01
        while not await self._redis.exists(keys.meta):
            if time.monotonic() > deadline:
                raise WarehouseNotReady(keys.warehouse)
            await asyncio.sleep(delay)  # another process is rebuilding: back off
            delay = min(delay * 2, 0.5)

    async def _rebuild(self, code: str, keys: WarehouseKeys) -> Rebuilt:
        since = datetime.fromtimestamp(self._clock(), UTC) - timedelta(
            days=self._policy.idempotency_days
        )
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            instance = await ledger.instance_id(conn)
            stock = await ledger.implied_stock(conn, code)
            reservations = await ledger.implied_reservations(conn, code)
            waiting = await ledger.open_backorders(conn, code)
            ops = await ledger.recent_ops(conn, code, since)
        self._instance = instance

        await self._redis.delete(keys.meta)
        stale = [key async for key in self._redis.scan_iter(match=keys.pattern, count=1000)]
        lock_key = f"{keys.base}recovering".encode()
        stale = [key for key in stale if key != lock_key]
        for start in range(0, len(stale), 1000):
            await self._redis.delete(*stale[start : start + 1000])

        pipe = self._redis.pipeline(transaction=False)
        for row in stock:
            pipe.hset(
                keys.stock(row.sku),
                mapping={
                    "on_hand": row.on_hand,
                    "reserved": row.reserved,
                    "backordered": row.backordered,
                },
            )
        for order_id, sku, quantity in reservations:
            pipe.hset(keys.reservation(order_id), sku, quantity)
        for bo in waiting:
            pipe.hset(keys.backorder(bo.order_id), bo.sku, bo.quantity)
            score = queue_score(bo.priority, int(bo.enqueued_at.timestamp() * 1000))
            pipe.zadd(keys.backorder_queue(bo.sku), {bo.order_id: score})
        for key, field, value in _recovered_results(ops, keys):
            pipe.hset(key, field, value)
            pipe.expire(key, self._ttl_s)
        await pipe.execute()
        await self._redis.hset(
            keys.meta, mapping={"instance": instance, "rebuilt_at": int(self._clock() * 1000)}
        )
        return Rebuilt(code, len(stock), len(reservations), len({b.order_id for b in waiting}))

    async def _script(self, code: str, call: Callable[[], Any]) -> Any:
        """Run a script call; if Redis lost the warehouse, rebuild it and run the call again."""
        try:
            return await call()
        except WarehouseNotReady:
            await self.recover(code)
            return await call()

    # -- reserve --------------------------------------------------------------------------

    async def reserve(
        self,
        order_id: str,
        lines: Lines,
        *,
        policy: Policy | None = None,
        priority: int = 0,
        op_id: str = "reserve",
    ) -> Reservation:
        """Reserve an order's lines, or queue them as the backorder policy says.

        The first warehouse (by priority) that can fill the order whole gets it. Otherwise,
        with splitting allowed, each warehouse in turn reserves what it can; what is still
        missing (or, without splitting, the order) waits in the first warehouse's queues.
        """
        policy = policy or self._policy.backorder_policy
        mode: ReserveMode = "ship_available" if policy == "ship_available" else "wait_all"
        now = self._clock()
        if len(self._order) == 1:
            code = self._order[0]
            result = await self._reserve_in(code, _Call(order_id, op_id, mode, priority, lines))
            allocated = _allocated(code, result)
            await self._record_reservation(order_id, op_id, allocated, policy, priority, now)
            return Reservation(order_id, op_id, _status(allocated), allocated, bool(result.replay))

        earlier = await self._earlier_reservation(order_id, op_id)
        if earlier:
            return Reservation(order_id, op_id, _status(_merge(earlier)), tuple(earlier), True)

        for code in self._order:
            result = await self._reserve_in(code, _Call(order_id, op_id, "all", priority, lines))
            if result.code == RESERVED:
                allocated = _allocated(code, result)
                await self._record_reservation(order_id, op_id, allocated, policy, priority, now)
                return Reservation(order_id, op_id, "reserved", allocated, False)

        split_op = f"{op_id}:split"
        parts: list[AllocatedLine] = []
        if self._policy.split_across_warehouses:
            parts = await self._split(order_id, split_op, lines, priority)
            await self._record_reservation(order_id, split_op, parts, policy, priority, now)
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
                await self._undo_split(order_id, split_op, parts)
                parts = []
            rest_call = _Call(order_id, op_id, mode, priority, lines)
        rest = _allocated(primary, await self._reserve_in(primary, rest_call))
        await self._record_reservation(order_id, rest_call.op_id, rest, policy, priority, now)
        allocated = (*parts, *rest)
        return Reservation(order_id, op_id, _status(_merge(allocated)), allocated, False)

    async def _reserve_in(self, code: str, call: _Call) -> ReserveResult:
        try:
            return await self._reserve_batches[code].submit(call)
        except UnknownSku:
            # A product imported while Redis was away has no stock record yet: make one.
            if not await self._ensure_stock_records(code, [sku for sku, _ in call.lines]):
                raise
            return await self._reserve_batches[code].submit(call)

    async def _reserve_batch(
        self, code: str, calls: Sequence[_Call]
    ) -> list[ReserveResult | Exception]:
        requests = [(c.order_id, c.op_id, c.mode, c.priority, c.lines) for c in calls]
        results: list[ReserveResult] = await self._script(
            code,
            lambda: self._scripts.reserve(self._keys[code], self._now_ms(), self._ttl_s, requests),
        )
        return [
            r if r.code > 0 else error_for(r.code, _refusal(c.order_id, r.code, r.lines))
            for c, r in zip(calls, results, strict=True)
        ]

    async def _earlier_reservation(self, order_id: str, op_id: str) -> list[AllocatedLine]:
        """What an earlier identical call holds in any warehouse, split parts included.

        A split part that was given back (its ``:undo`` is recorded) no longer counts.
        """
        split_op = f"{op_id}:split"
        fields = [op_id, split_op, f"{split_op}:undo", f"{op_id}:rest"]
        found: list[AllocatedLine] = []
        for code in self._order:
            whole, split, undone, rest = await self._redis.hmget(
                self._keys[code].ops(order_id), fields
            )
            for raw in (whole, None if undone else split, rest):
                if raw is not None:
                    result = _reserve_result.decode(_bytes(raw))
                    found.extend(line for line in _allocated(code, result) if line.wanted)
        return found

    async def _split(
        self, order_id: str, split_op: str, lines: Lines, priority: int
    ) -> list[AllocatedLine]:
        parts: list[AllocatedLine] = []
        for code in self._order:
            remaining = _remaining(lines, parts)
            if not remaining:
                break
            try:
                result = await self._reserve_in(
                    code, _Call(order_id, split_op, "partial", priority, tuple(remaining))
                )
            except Exception:
                await self._undo_split(order_id, split_op, parts)
                raise
            parts.extend(line for line in _allocated(code, result) if line.reserved)
        return parts

    async def _undo_split(
        self, order_id: str, split_op: str, parts: Sequence[AllocatedLine]
    ) -> None:
        by_warehouse: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for line in parts:
            by_warehouse[line.warehouse].append((line.sku, line.reserved))
        for code, taken in by_warehouse.items():
            await self.release(order_id, f"{split_op}:undo", taken, warehouse=code)

    async def _record_reservation(
        self,
        order_id: str,
        op_id: str,
        lines: Sequence[AllocatedLine],
        policy: Policy,
        priority: int,
        now: float,
    ) -> None:
        cancel_at = None
        if policy == "cancel_after_days":
            cancel_at = now + self._policy.cancel_after_days * 86400
        await self._ledger.submit(
            _reservation_entry(order_id, op_id, lines, priority, now, cancel_at)
        )

    # -- release and commit ---------------------------------------------------------------

    async def release(
        self,
        order_id: str,
        op_id: str,
        lines: Lines | None = None,
        *,
        warehouse: str | None = None,
    ) -> list[Released]:
        """Give back what the order holds: ``lines`` (short pick) or everything (cancel).

        Everything (``lines=None``) also takes the order out of every backorder queue, in
        every warehouse unless one is named.
        """
        codes = [warehouse] if warehouse else self._order
        if lines is not None and warehouse is None:
            codes = self._order[:1]
        outcome = []
        for code in codes:
            result: ReleaseResult = await self._release_batches[code].submit(
                (order_id, op_id, tuple(lines or ()))
            )
            entry = _release_entry(code, order_id, op_id, result, self._clock())
            await self._ledger.submit(entry)
            outcome.append(
                Released(
                    code,
                    tuple((q.sku, q.quantity) for q in result.released),
                    tuple((q.sku, q.quantity) for q in result.dropped),
                )
            )
        return outcome

    async def _release_batch(
        self, code: str, calls: Sequence[tuple[str, str, Lines]]
    ) -> list[ReleaseResult | Exception]:
        results: list[ReleaseResult] = await self._script(
            code,
            lambda: self._scripts.release(self._keys[code], self._now_ms(), self._ttl_s, calls),
        )
        return [
            r if r.code > 0 else error_for(r.code, _refusal(c[0], r.code, r.released))
            for c, r in zip(calls, results, strict=True)
        ]

    async def commit(
        self, order_id: str, op_id: str, lines: Lines, *, warehouse: str | None = None
    ) -> CommitResult:
        """A shipment left: its quantities leave on hand and the order's reservation."""
        code = warehouse or self._order[0]
        result: CommitResult = await self._commit_batches[code].submit(
            (order_id, op_id, tuple(lines))
        )
        now = _at(self._clock())
        await self._ledger.submit(
            ledger.LedgerEntry(
                movements=tuple(
                    ledger.Movement(
                        movement_key=movement_key(code, order_id, op_id, q.sku),
                        warehouse=code,
                        sku=q.sku,
                        kind="commit",
                        on_hand_delta=-q.quantity,
                        reserved_delta=-q.quantity,
                        order_id=order_id,
                        op_id=op_id,
                        at=now,
                    )
                    for q in result.committed
                )
            )
        )
        return result

    async def _commit_batch(
        self, code: str, calls: Sequence[tuple[str, str, Lines]]
    ) -> list[CommitResult | Exception]:
        results: list[CommitResult] = await self._script(
            code,
            lambda: self._scripts.commit(self._keys[code], self._now_ms(), self._ttl_s, calls),
        )
        return [
            r if r.code > 0 else error_for(r.code, _refusal(c[0], r.code, r.committed))
            for c, r in zip(calls, results, strict=True)
        ]

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
        key = movement_key(code, sku, movement_id, sku)
        async with self._pool.acquire() as conn:
            if not await ledger.product_exists(conn, sku):
                raise UnknownSku(f"unknown sku {sku!r}: import it with `orderd catalog import`")
            if await ledger.movement_exists(conn, key):
                raise DuplicateMovement(f"movement {movement_id!r} was already recorded")
        await self._ensure_stock_records(code, [sku])
        keys = self._keys[code]
        result: AdjustResult = await self._script(
            code,
            lambda: self._scripts.adjust(
                keys,
                self._now_ms(),
                self._ttl_s,
                sku,
                mode,
                quantity,
                movement_id,
                self._policy.fill_limit,
            ),
        )
        if result.code < 0 and result.code != -6:
            raise error_for(result.code, _adjust_refusal(sku, quantity, mode, result))
        # -6: Redis has it but the ledger has not (a crash in between): record it now.
        filled = list(result.fills)
        await self._ledger.submit(self._adjust_entry(code, sku, movement_id, mode, reason, result))
        more = result.more
        while more:
            step: AdjustResult = await self._script(
                code,
                lambda: self._scripts.adjust(
                    keys, self._now_ms(), self._ttl_s, sku, "fill", 0, "", self._policy.fill_limit
                ),
            )
            await self._ledger.submit(self._fill_entry(code, movement_id, step.fills))
            filled.extend(step.fills)
            more = step.more if step.fills else 0
            result = msgspec.structs.replace(
                result, reserved=step.reserved, backordered=step.backordered
            )
        return Adjusted(
            code,
            sku,
            movement_id,
            result.on_hand_delta,
            result.on_hand,
            result.reserved,
            result.backordered,
            tuple(fill.order_id for fill in filled),
        )

    def _adjust_entry(
        self,
        code: str,
        sku: str,
        movement_id: str,
        mode: Literal["delta", "set"],
        reason: str | None,
        result: AdjustResult,
    ) -> ledger.LedgerEntry:
        movement = ledger.Movement(
            movement_key=movement_key(code, sku, movement_id, sku),
            warehouse=code,
            sku=sku,
            kind="set" if mode == "set" else "adjust",
            on_hand_delta=result.on_hand_delta,
            op_id=movement_id,
            reason=reason,
            at=_at(self._clock()),
        )
        fills = self._fill_entry(code, movement_id, result.fills)
        return ledger.LedgerEntry(movements=(movement, *fills.movements))

    def _fill_entry(
        self, code: str, movement_id: str, fills: Sequence[scripts.Fill]
    ) -> ledger.LedgerEntry:
        at = _at(self._clock())
        op_id = f"fill:{movement_id}"
        return ledger.LedgerEntry(
            movements=tuple(
                ledger.Movement(
                    movement_key=movement_key(code, fill.order_id, op_id, q.sku),
                    warehouse=code,
                    sku=q.sku,
                    kind="fill",
                    reserved_delta=q.quantity,
                    backordered_delta=-q.quantity,
                    order_id=fill.order_id,
                    op_id=op_id,
                    at=at,
                )
                for fill in fills
                for q in fill.lines
            )
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
            for field in ("on_hand", "reserved", "backordered"):
                pipe.hsetnx(keys.stock(row["sku"]), field, 0)
        await pipe.execute()
        return True

    # -- reading ----------------------------------------------------------------------------

    async def stock(self, sku: str, warehouse: str | None = None) -> StockLevel:
        """The sku's stock in one warehouse as Redis holds it."""
        code = warehouse or self._order[0]
        keys = self._keys[code]
        if not await self._redis.exists(keys.meta):
            await self.recover(code)
        values = await self._redis.hmget(keys.stock(sku), ["on_hand", "reserved", "backordered"])
        if values[0] is None:
            async with self._pool.acquire() as conn:
                if not await ledger.product_exists(conn, sku):
                    raise UnknownSku(f"unknown sku {sku!r}")
            values = [b"0", b"0", b"0"]
        on_hand, reserved, backordered = (int(v or 0) for v in values)
        return StockLevel(sku, code, on_hand, reserved, on_hand - reserved, backordered)

    async def reconcile(self, warehouse: str | None = None) -> list[Drift]:
        """Where Redis and what the ledger implies disagree (empty when they agree)."""
        drift: list[Drift] = []
        for code in [warehouse] if warehouse else self._order:
            keys = self._keys[code]
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                stock = await ledger.implied_stock(conn, code)
                reservations = await ledger.implied_reservations(conn, code)
            if not await self._holds_this_database(code):
                drift.append(Drift(code, "meta (Redis does not hold this database)", 0, 1))
            pipe = self._redis.pipeline(transaction=False)
            for row in stock:
                pipe.hmget(keys.stock(row.sku), ["on_hand", "reserved", "backordered"])
            for row, values in zip(stock, await pipe.execute(), strict=True):
                for name, value in zip(("on_hand", "reserved", "backordered"), values, strict=True):
                    held = int(value or 0)
                    implied = getattr(row, name)
                    if held != implied:
                        drift.append(Drift(code, f"stock:{row.sku} {name}", held, implied))
            implied_res: dict[tuple[str, str], int] = {
                (order_id, sku): quantity for order_id, sku, quantity in reservations
            }
            held_res: dict[tuple[str, str], int] = {}
            async for key in self._redis.scan_iter(match=f"{keys.pattern[:-1]}res:*", count=1000):
                order_id = _text(key)[len(keys.base) + len("res:") :]
                for sku, quantity in (await self._redis.hgetall(key)).items():
                    held_res[(order_id, _text(sku))] = int(quantity)
            for pair in sorted(set(implied_res) | set(held_res)):
                if implied_res.get(pair, 0) != held_res.get(pair, 0):
                    drift.append(
                        Drift(
                            code,
                            f"res:{pair[0]} {pair[1]}",
                            held_res.get(pair, 0),
                            implied_res.get(pair, 0),
                        )
                    )
        return drift

    async def due_cancellations(self) -> list[tuple[str, str]]:
        """(warehouse, order_id) of cancel-after backorders whose time has come."""
        async with self._pool.acquire() as conn:
            return await ledger.due_cancellations(conn, _at(self._clock()))

    # -- the ledger -------------------------------------------------------------------------

    async def _write_ledger(self, entries: Sequence[ledger.LedgerEntry]) -> list[None]:
        async with self._pool.acquire() as conn:
            await ledger.write_entries(conn, entries)
        return [None] * len(entries)

    async def drain(self) -> None:
        """Wait for every batched call and ledger write in flight."""
        for group in (self._reserve_batches, self._release_batches, self._commit_batches):
            for coalescer in group.values():
                await coalescer.drain()
        await self._ledger.drain()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _line(code: str, sku: str, wanted: int, reserved: int, backordered: int) -> AllocatedLine:
    return AllocatedLine(code, sku, wanted, reserved, backordered)


def _allocated(code: str, result: ReserveResult) -> tuple[AllocatedLine, ...]:
    return tuple(_line(code, ln.sku, ln.wanted, ln.reserved, ln.backordered) for ln in result.lines)


def _summed(lines: Lines) -> dict[str, int]:
    total: dict[str, int] = {}
    for sku, quantity in lines:
        total[sku] = total.get(sku, 0) + quantity
    return total


def _remaining(lines: Lines, parts: Sequence[AllocatedLine]) -> list[tuple[str, int]]:
    left = _summed(lines)
    for part in parts:
        left[part.sku] -= part.reserved
    return [(sku, quantity) for sku, quantity in left.items() if quantity > 0]


def _merge(lines: Sequence[AllocatedLine]) -> list[AllocatedLine]:
    """Per sku across warehouses, to judge the order's overall status."""
    merged: dict[str, list[int]] = {}
    for line in lines:
        totals = merged.setdefault(line.sku, [0, 0, 0])
        totals[0] += line.reserved
        totals[1] += line.backordered
        totals[2] = max(totals[2], line.wanted)
    return [_line("", sku, t[2], t[0], t[1]) for sku, t in merged.items()]


def _reservation_entry(
    order_id: str,
    op_id: str,
    lines: Sequence[AllocatedLine],
    priority: int,
    now: float,
    cancel_at: float | None = None,
) -> ledger.LedgerEntry:
    at = _at(now)
    waits_in = sorted({line.warehouse for line in lines if line.backordered})
    return ledger.LedgerEntry(
        movements=tuple(
            ledger.Movement(
                movement_key=movement_key(line.warehouse, order_id, op_id, line.sku),
                warehouse=line.warehouse,
                sku=line.sku,
                kind="reserve",
                reserved_delta=line.reserved,
                backordered_delta=line.backordered,
                order_id=order_id,
                op_id=op_id,
                at=at,
            )
            for line in lines
            if line.reserved or line.backordered
        ),
        queued=tuple(
            ledger.QueuePlace(
                warehouse=code,
                order_id=order_id,
                priority=priority,
                enqueued_at=at,
                cancel_at=_at(cancel_at) if cancel_at is not None else None,
            )
            for code in waits_in
        ),
    )


def _release_entry(
    code: str, order_id: str, op_id: str, result: ReleaseResult, now: float
) -> ledger.LedgerEntry:
    released = {q.sku: q.quantity for q in result.released}
    dropped = {q.sku: q.quantity for q in result.dropped}
    return ledger.LedgerEntry(
        movements=tuple(
            ledger.Movement(
                movement_key=movement_key(code, order_id, op_id, sku),
                warehouse=code,
                sku=sku,
                kind="release",
                reserved_delta=-released.get(sku, 0),
                backordered_delta=-dropped.get(sku, 0),
                order_id=order_id,
                op_id=op_id,
                at=_at(now),
            )
            for sku in dict.fromkeys([*released, *dropped])
        )
    )


def _refusal(order_id: str, code: int, lines: Sequence[Any]) -> str:
    what = {
        -1: "unknown sku",
        -2: "quantities must be whole numbers from 1 to 1,000,000,000",
        -3: "malformed request",
        -4: "more than the order holds",
        -7: "a stock record in Redis is not numbers; run `orderd recover`",
    }.get(code, f"refused ({code})")
    skus = ", ".join(repr(line.sku) for line in lines)
    return f"order {order_id!r}: {what}" + (f" ({skus})" if skus and code in (-1, -4, -7) else "")


def _adjust_refusal(sku: str, quantity: int, mode: str, result: AdjustResult) -> str:
    would_be = result.on_hand + result.on_hand_delta
    if result.code == -5 and result.reserved == 0:
        return f"{sku}: on hand would be {would_be}; it cannot go below 0"
    if result.code == -5:
        return (
            f"{sku}: on hand would be {would_be}, below the "
            f"{result.reserved} reserved for orders; release or ship those first"
        )
    if result.code == -7:
        return f"{sku}: the stock record in Redis is not numbers; run `orderd recover`"
    if result.code == -2:
        return f"{sku}: {mode} {quantity}: quantity must be a whole number up to 1,000,000,000"
    return f"{sku}: refused ({result.code})"


def _recovered_results(
    ops: Sequence[ledger.RecentOp], keys: WarehouseKeys
) -> list[tuple[str, str, bytes]]:
    """The stored results scripts use to recognise repeated calls, rebuilt from the ledger."""
    reserved: dict[tuple[str, str], dict[str, tuple[int, int]]] = defaultdict(dict)
    released: dict[tuple[str, str], tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {}
    committed: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    moves: dict[tuple[str, str], int] = {}
    for op in ops:
        if op.order_id is None:
            moves[(op.sku, op.op_id)] = op.on_hand_delta
            continue
        key = (op.order_id, op.op_id)
        if op.kind == "reserve":
            reserved[key][op.sku] = (op.reserved_delta, op.backordered_delta)
        elif op.kind == "release":
            gave, dropped = released.setdefault(key, ([], []))
            if op.reserved_delta:
                gave.append((op.sku, -op.reserved_delta))
            if op.backordered_delta:
                dropped.append((op.sku, -op.backordered_delta))
        elif op.kind == "commit":
            committed[key].append((op.sku, -op.reserved_delta))
    out: list[tuple[str, str, bytes]] = []
    for (order_id, op_id), by_sku in reserved.items():
        lines = [(sku, took + queued, took, queued) for sku, (took, queued) in by_sku.items()]
        took_any = any(line[2] for line in lines)
        queued_any = any(line[3] for line in lines)
        code = RESERVED if not queued_any else (PARTIAL if took_any else QUEUED)
        out.append((keys.ops(order_id), op_id, _PACK((code, lines, 0))))
    for (order_id, op_id), (gave, dropped) in released.items():
        out.append((keys.ops(order_id), op_id, _PACK((1, gave, dropped, 0))))
    for (order_id, op_id), items in committed.items():
        out.append((keys.ops(order_id), op_id, _PACK((1, items, 0))))
    for (sku, op_id), delta in moves.items():
        out.append((keys.moves(sku), op_id, _PACK((1, delta, 0, 0, 0, [], 0))))
    return out
