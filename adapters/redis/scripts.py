"""The allocation core's Lua scripts: loaded once from ``lua/*.lua``, called through small
typed wrappers.

redis-py's ``Script`` runs EVALSHA and loads the script again on NOSCRIPT, so a Redis
restart (which empties the script cache) costs one extra round trip, not an error.
Negative result codes become named exceptions; NOMETA (the warehouse's keys are gone)
becomes :class:`WarehouseNotReady` so the caller can rebuild from PostgreSQL and retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

import msgspec
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors.stock import AllocationError, UnknownSku
from adapters.redis.client import RedisClient
from adapters.redis.keys import WarehouseKeys

ReserveMode = Literal["all", "partial", "wait_all", "ship_available", "queue"]
# How reserve.lua names the modes.
MODE_CODES: dict[str, int] = {
    "all": 1, "partial": 2, "wait_all": 3, "ship_available": 4, "queue": 5,
}  # fmt: skip
Lines = Sequence[tuple[str, int]]

RESERVED, PARTIAL, QUEUED, SHORT = 1, 2, 3, 4

R = TypeVar("R")


class BadQuantity(AllocationError):
    pass


class BadRequest(AllocationError):
    pass


class NotHeld(AllocationError):
    """Releasing or committing more than the order holds."""


class BelowReserved(AllocationError):
    """An adjustment would leave less on hand than is reserved."""


class DuplicateMovement(AllocationError):
    pass


class CorruptStock(AllocationError):
    """A stock record in Redis holds something other than numbers (repair: orderd recover)."""


class WarehouseNotReady(Exception):
    """Redis has no state for the warehouse (emptied or restarted): rebuild, then retry."""


_ERRORS: dict[int, type[AllocationError]] = {
    -1: UnknownSku,
    -2: BadQuantity,
    -3: BadRequest,
    -4: NotHeld,
    -5: BelowReserved,
    -6: DuplicateMovement,
    -7: CorruptStock,
}


def error_for(code: int, what: str) -> AllocationError:
    return _ERRORS.get(code, AllocationError)(what)


class ReserveLine(msgspec.Struct, array_like=True, frozen=True):
    sku: str
    wanted: int
    reserved: int
    backordered: int


class ReserveResult(msgspec.Struct, array_like=True, frozen=True):
    code: int
    lines: tuple[ReserveLine, ...]


class Quantity(msgspec.Struct, array_like=True, frozen=True):
    sku: str
    quantity: int


class ReleaseResult(msgspec.Struct, array_like=True, frozen=True):
    code: int
    released: tuple[Quantity, ...]
    dropped: tuple[Quantity, ...]


class CommitResult(msgspec.Struct, array_like=True, frozen=True):
    code: int
    committed: tuple[Quantity, ...]


class Outcome(msgspec.Struct, Generic[R], frozen=True):
    """A script's result for one request, whether it is the stored one of a repeat, and
    the warehouse epoch (which changes when Redis is rebuilt) it was applied under."""

    result: R
    replay: bool
    epoch: str


class Fill(msgspec.Struct, array_like=True, frozen=True):
    order_id: str
    lines: tuple[Quantity, ...]


class AdjustResult(msgspec.Struct, array_like=True, frozen=True):
    code: int
    on_hand_delta: int
    on_hand: int
    reserved: int
    backordered: int
    fills: tuple[Fill, ...]
    more: int
    epoch: str = ""


_stored = msgspec.msgpack.Decoder(list[int | str])


def named_result(raw: bytes | str) -> ReserveResult:
    """A result as reserve.lua keeps it: code, ``"n"``, sku and quantity wanted per line,
    then for a partial result (code 2) reserved and backordered per line; the others'
    lines are implied by their code."""
    values = _stored.decode(raw if isinstance(raw, bytes) else raw.encode())
    code = int(values[0])
    count = (len(values) - 2) // (4 if code == PARTIAL else 2)
    if (
        len(values) < 2
        or values[1] != "n"
        or len(values) != 2 + count * (4 if code == PARTIAL else 2)
    ):
        raise TypeError("a stored reserve result that is not in its named form")
    names = values[2 : 2 + 2 * count]
    got = values[2 + 2 * count :]
    lines = []
    for k in range(count):
        sku, wanted = str(names[2 * k]), int(names[2 * k + 1])
        if code == PARTIAL:
            reserved, backordered = int(got[2 * k]), int(got[2 * k + 1])
        elif code == RESERVED:
            reserved, backordered = wanted, 0
        elif code == QUEUED:
            reserved, backordered = 0, wanted
        else:
            reserved, backordered = 0, 0
        lines.append(ReserveLine(sku, wanted, reserved, backordered))
    return ReserveResult(code, tuple(lines))


release_result = msgspec.msgpack.Decoder(ReleaseResult)
commit_result = msgspec.msgpack.Decoder(CommitResult)
_adjust_result = msgspec.msgpack.Decoder(AdjustResult)
_encode = msgspec.msgpack.Encoder().encode


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, shipped with the package."""
    return resources.files("adapters.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")


def allocation_source(name: str) -> str:
    """An allocation script as it runs: after holdings.lua, which reads and writes what an
    order holds the same way for all of them."""
    return lua_source("holdings") + lua_source(name)


class Scripts:
    """The four scripts registered on one client."""

    def __init__(self, client: RedisClient) -> None:
        self._reserve: AsyncScript = client.register_script(allocation_source("reserve"))
        self._release: AsyncScript = client.register_script(allocation_source("release"))
        self._commit: AsyncScript = client.register_script(allocation_source("commit"))
        self._adjust: AsyncScript = client.register_script(allocation_source("adjust"))

    async def reserve(
        self,
        keys: WarehouseKeys,
        now_ms: int,
        window_ms: int,
        skus: Sequence[str],
        ids: Sequence[str],
        ints: Sequence[int],
    ) -> list[Any]:
        """The flat form reserve.lua reads and answers: the batch's sku table, each
        request's order and op id, and its integers (mode, priority, lines as sku index and
        quantity). Returns the script's flat answer, the epoch first."""
        flat = await _call(
            self._reserve, keys, now_ms, window_ms, _encode(skus), _encode(ids), _encode(ints)
        )
        if not isinstance(flat, list) or not flat:
            raise TypeError("reserve returned something other than the epoch and results")
        return flat

    async def release(
        self,
        keys: WarehouseKeys,
        now_ms: int,
        window_ms: int,
        requests: Sequence[tuple[str, str, Lines]],
    ) -> list[Outcome[ReleaseResult]]:
        """``requests``: (order_id, op_id, lines); empty lines release everything."""
        flat = await _call(self._release, keys, now_ms, window_ms, _encode(requests))
        return _outcomes(flat, release_result)

    async def commit(
        self,
        keys: WarehouseKeys,
        now_ms: int,
        window_ms: int,
        requests: Sequence[tuple[str, str, Lines]],
    ) -> list[Outcome[CommitResult]]:
        """``requests``: (order_id, op_id, lines shipped)."""
        flat = await _call(self._commit, keys, now_ms, window_ms, _encode(requests))
        return _outcomes(flat, commit_result)

    async def adjust(
        self,
        keys: WarehouseKeys,
        now_ms: int,
        ttl_s: int,
        sku: str,
        mode: Literal["delta", "set", "fill"],
        quantity: int,
        movement_id: str,
        fill_limit: int = 500,
    ) -> AdjustResult:
        raw = await _call(
            self._adjust, keys, now_ms, ttl_s, sku, mode, quantity, movement_id, fill_limit
        )
        if not isinstance(raw, bytes):
            raise TypeError(f"adjust returned {type(raw).__name__}, expected bytes")
        return _adjust_result.decode(raw)


def _outcomes(flat: Any, decoder: msgspec.msgpack.Decoder[R]) -> list[Outcome[R]]:
    """The epoch, then pairs of (replay flag, packed result) from a batch script, decoded."""
    if not isinstance(flat, list) or len(flat) % 2 != 1:
        raise TypeError("batch script returned something other than epoch and result pairs")
    epoch = flat[0].decode() if isinstance(flat[0], bytes) else str(flat[0])
    return [
        Outcome(decoder.decode(flat[i + 1]), bool(flat[i]), epoch) for i in range(1, len(flat), 2)
    ]


_RETRIES = 3


async def _call(script: AsyncScript, keys: WarehouseKeys, *args: Any) -> Any:
    # Every script is idempotent (operation and movement ids), so a call whose outcome a
    # dropped connection hid can simply be made again.
    for attempt in range(_RETRIES + 1):
        try:
            raw = await script(keys=[keys.meta], args=[keys.base, *args])
            break
        except (RedisConnectionError, RedisTimeoutError):
            if attempt == _RETRIES:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
        except ResponseError as exc:
            if str(exc).startswith("NOMETA"):
                raise WarehouseNotReady(keys.warehouse) from None
            raise
    return raw
