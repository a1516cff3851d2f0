"""Rebuilding a warehouse's Redis state from the ledger, and comparing the two.

Scripts refuse to run while a warehouse's meta key is missing, so nothing acts on a
half-built warehouse: the rebuild deletes meta first and writes it last. One process
rebuilds a warehouse at a time (a Redis lock); the others wait for meta to come back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from adapters.postgres import stock as ledger
from adapters.redis.client import RedisClient
from adapters.redis.keys import WarehouseKeys, done_field, queue_score
from adapters.redis.scripts import PARTIAL, QUEUED, RESERVED, WarehouseNotReady, lua_source
from adapters.stock.model import Drift, Rebuilt

_LOCK_MS = 120_000
# The keys' layout (adapters/redis/keys.py), kept in meta: 2 has stock in three hashes, the
# orders' holdings in one, results in hashes per window; 1 (no field) had keys per sku,
# per order and per operation.
LAYOUT = "2"
_PACK = msgspec.msgpack.Encoder().encode
_JSON = msgspec.json.Encoder().encode


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_REBUILDS = 3


class _MasterChanged(Exception):
    """Another master serves the warehouse than when its rebuild began."""


class Recovery:
    """Rebuilds and reconciles the warehouses of one key prefix against one database."""

    def __init__(
        self,
        redis: RedisClient,
        pool: Any,
        *,
        ttl_s: int,
        window_ms: int,
        clock: Callable[[], float],
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._ttl_s = ttl_s
        self._window_ms = window_ms
        self._clock = clock
        self._instance: str | None = None
        self._local: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._master_id = redis.register_script(lua_source("master_id"))
        self._claim_meta = redis.register_script(lua_source("claim_meta"))

    async def instance_id(self) -> str:
        if self._instance is None:
            async with self._pool.acquire() as conn:
                self._instance = await ledger.instance_id(conn)
        return self._instance

    async def holds_this_database(self, keys: WarehouseKeys) -> bool:
        """Whether Redis holds this database's warehouse, in the key layout of this
        version (one written by an earlier version is rebuilt at start, not read)."""
        held, layout, master = await self._redis.hmget(keys.meta, ["instance", "layout", "master"])
        return (
            held is not None
            and layout is not None
            and text(layout) == LAYOUT
            and text(held) == await self.instance_id()
            # Written under the master that serves it now (not one failed over since).
            and master is not None
            and text(master) == text(await self._master_id(keys=[keys.meta]))
        )

    async def recover(self, keys: WarehouseKeys) -> Rebuilt | None:
        """Rebuild the warehouse from the ledger, whatever Redis holds now.

        Returns None when another process did the rebuild while this one waited.
        """
        lock_key = f"{keys.base}recovering"
        async with self._local[keys.warehouse]:
            token = str(time.time_ns())
            if not await self._redis.set(lock_key, token, nx=True, px=_LOCK_MS):
                await self._wait_for_rebuild(keys, lock_key)
                return None
            try:
                # A failover during the rebuild leaves it unclaimed: it runs again under
                # the new master, a few times at most.
                for _ in range(_REBUILDS):
                    try:
                        return await self._rebuild(keys, lock_key)
                    except _MasterChanged:
                        continue
                raise WarehouseNotReady(keys.warehouse)
            finally:
                if await self._redis.get(lock_key) == token.encode():
                    await self._redis.delete(lock_key)

    async def _wait_for_rebuild(self, keys: WarehouseKeys, lock_key: str) -> None:
        """Until the process rebuilding the warehouse is done (meta may be there already,
        written under a master that is no more, while it rebuilds)."""
        deadline = time.monotonic() + _LOCK_MS / 1000
        delay = 0.01
        while await self._redis.exists(lock_key) or not await self._redis.exists(keys.meta):
            if time.monotonic() > deadline:
                raise WarehouseNotReady(keys.warehouse)
            await asyncio.sleep(delay)  # another process is rebuilding: back off
            delay = min(delay * 2, 0.5)

    async def _rebuild(self, keys: WarehouseKeys, lock_key: str) -> Rebuilt:
        code = keys.warehouse
        now_ms = int(self._clock() * 1000)
        # Every result a repeated call may still look up: stock movements' for their time
        # to live, orders' for the current and the last window.
        since_ms = min(
            now_ms - self._ttl_s * 1000, (now_ms // self._window_ms - 1) * self._window_ms
        )
        since = datetime.fromtimestamp(since_ms / 1000, UTC)
        # The ledger lock is held until Redis carries the new epoch: a write that changed
        # the old Redis either committed before the read below, or finds the epoch changed
        # and is refused (its operation runs again against the rebuilt Redis).
        # Read committed, not a snapshot: a snapshot would be taken before the lock is had.
        async with self._pool.acquire() as conn, conn.transaction():
            await ledger.hold_ledger_alone(conn)
            instance = await ledger.instance_id(conn)
            stock = await ledger.implied_stock(conn, code)
            reservations = await ledger.implied_reservations(conn, code)
            waiting = await ledger.open_backorders(conn, code)
            ops = await ledger.recent_ops(conn, code, since)
            await self._write(keys, lock_key, stock, reservations, waiting, ops, instance)
        self._instance = instance
        return Rebuilt(code, len(stock), len(reservations), len({b.order_id for b in waiting}))

    async def _write(
        self,
        keys: WarehouseKeys,
        lock_key: str,
        stock: Sequence[ledger.StockRow],
        reservations: Sequence[tuple[str, str, int]],
        waiting: Sequence[ledger.OpenBackorder],
        ops: Sequence[ledger.RecentOp],
        instance: str,
    ) -> None:
        # The master it is written under, read before anything is written: meta is
        # claimed under it or not at all.
        master = text(await self._master_id(keys=[keys.meta]))
        await self._redis.delete(keys.meta)
        stale = [
            key
            async for key in self._redis.scan_iter(match=keys.pattern, count=1000)
            if text(key) != lock_key
        ]
        for start in range(0, len(stale), 1000):
            await self._redis.delete(*stale[start : start + 1000])

        pipe = self._redis.pipeline(transaction=False)
        for start in range(0, len(stock), 1000):
            rows = stock[start : start + 1000]
            pipe.hset(keys.on_hand, mapping={row.sku: row.on_hand for row in rows})
            pipe.hset(keys.reserved, mapping={row.sku: row.reserved for row in rows})
            pipe.hset(keys.backordered, mapping={row.sku: row.backordered for row in rows})
        holdings: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        for order_id, sku, quantity in reservations:
            holdings[order_id].setdefault("r", {})[sku] = quantity
        for bo in waiting:
            holdings[bo.order_id].setdefault("w", {})[bo.sku] = bo.quantity
            score = queue_score(bo.priority, int(bo.enqueued_at.timestamp() * 1000))
            pipe.zadd(keys.backorder_queue(bo.sku), {bo.order_id: score})
        orders = [(order_id, _JSON(held)) for order_id, held in holdings.items()]
        for start in range(0, len(orders), 1000):
            pipe.hset(keys.orders, mapping=dict(orders[start : start + 1000]))
        moves, done = recovered_results(ops, keys, self._window_ms)
        for key, value in moves:
            pipe.set(key, value, ex=self._ttl_s)
        now_ms = int(self._clock() * 1000)
        for window, results in done.items():
            # As the scripts keep a window's hash: until the next window ends, and a minute,
            # in this clock's time; one that would expire already is not written.
            until = (window + 2) * self._window_ms + 60_000 - now_ms
            if until <= 0:
                continue
            pairs = [v for pair in results.items() for v in pair]
            for start in range(0, len(pairs), 2000):
                pipe.hset(keys.done(window), items=pairs[start : start + 2000])
            pipe.pexpire(keys.done(window), until)
        await pipe.execute()
        # Claimed under the master it began under: the scripts refuse a meta of another
        # (a replica promoted since may lack this master's last writes).
        fields: dict[str, str | int] = {
            "instance": instance,
            "layout": LAYOUT,
            "epoch": uuid.uuid4().hex,
            "rebuilt_at": int(self._clock() * 1000),
        }
        try:
            await self._claim_meta(
                keys=[keys.meta], args=[master, *[v for kv in fields.items() for v in kv]]
            )
        except ResponseError as exc:
            if str(exc).startswith("NOMETA"):
                raise _MasterChanged from None
            raise

    async def reconcile(self, keys: WarehouseKeys) -> list[Drift]:
        """Where Redis and what the ledger implies disagree (empty when they agree)."""
        code = keys.warehouse
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            stock = await ledger.implied_stock(conn, code)
            reservations = await ledger.implied_reservations(conn, code)
        drift: list[Drift] = []
        if not await self.holds_this_database(keys):
            drift.append(Drift(code, "meta (Redis does not hold this database)", 0, 1))
        skus = [row.sku for row in stock]
        fields = ("on_hand", "reserved", "backordered")
        columns: list[list[Any]] = [[] for _ in fields]
        for start in range(0, len(skus), 1000):
            pipe = self._redis.pipeline(transaction=True)
            for key in keys.stock:
                pipe.hmget(key, skus[start : start + 1000])
            for column, values in zip(columns, await pipe.execute(), strict=True):
                column.extend(values)
        for at, row in enumerate(stock):
            for name, column in zip(fields, columns, strict=True):
                held, implied = int(column[at] or 0), getattr(row, name)
                if held != implied:
                    drift.append(Drift(code, f"{name} {row.sku}", held, implied))
        implied_res = {(order_id, sku): qty for order_id, sku, qty in reservations}
        held_res: dict[tuple[str, str], int] = {}
        async for order_id, raw in self._redis.hscan_iter(keys.orders, count=1000):
            for sku, quantity in holding_of(raw).get("r", {}).items():
                held_res[(text(order_id), sku)] = int(quantity)
        for pair in sorted(set(implied_res) | set(held_res)):
            held, implied = held_res.get(pair, 0), implied_res.get(pair, 0)
            if held != implied:
                drift.append(Drift(code, f"orders {pair[0]} reserved {pair[1]}", held, implied))
        return drift


def recovered_results(
    ops: Sequence[ledger.RecentOp], keys: WarehouseKeys, window_ms: int
) -> tuple[list[tuple[str, bytes]], dict[int, dict[str, bytes]]]:
    """The stored results scripts use to recognise repeated calls, rebuilt from the ledger:
    stock movements' (key, result), and orders' results by window, then field."""
    moves: list[tuple[str, bytes]] = []
    done: dict[int, dict[str, bytes]] = defaultdict(dict)
    for op in ops:
        if op.order_id is None:
            delta = sum(line.on_hand for line in op.lines)
            moves.append((keys.move(op.lines[0].sku, op.op_id), _PACK((1, delta, 0, 0, 0, [], 0))))
            continue
        window = int(op.at.timestamp() * 1000) // window_ms
        field = done_field(op.order_id, op.op_id)
        if op.kind == "reserve":
            took = any(d.reserved for d in op.lines)
            queued = any(d.backordered for d in op.lines)
            code = RESERVED if not queued else (PARTIAL if took else QUEUED)
            # As reserve.lua keeps it: code, "n", sku and wanted per line, and for a
            # partial result what each line got.
            named: list[int | str] = [code, "n"]
            for d in op.lines:
                named += (d.sku, d.reserved + d.backordered)
            if code == PARTIAL:
                for d in op.lines:
                    named += (d.reserved, d.backordered)
            done[window][field] = _PACK(named)
        elif op.kind == "release":
            gave = [(d.sku, -d.reserved) for d in op.lines if d.reserved]
            dropped = [(d.sku, -d.backordered) for d in op.lines if d.backordered]
            done[window][field] = _PACK((1, gave, dropped))
        elif op.kind == "commit":
            shipped = [(d.sku, -d.reserved) for d in op.lines]
            done[window][field] = _PACK((1, shipped))
    return moves, dict(done)


def holding_of(raw: bytes | str) -> dict[str, dict[str, int]]:
    """An order's field in the ``orders`` hash: {"r": {sku: n}, "w": {sku: n}}."""
    value = msgspec.json.decode(raw if isinstance(raw, bytes) else raw.encode())
    return value if isinstance(value, dict) else {}
