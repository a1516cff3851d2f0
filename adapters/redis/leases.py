"""Order leases: which process runs an order's turn right now.

A turn takes its order's lease before it loads the order and frees it when it is done;
another process finding the lease taken leaves the message for later. A lease expires on
its own, so a process that dies holding one blocks its order only for a while, and a
lease is freed only by the turn that took it (its token), so a slow turn whose lease ran
out never frees the one another turn holds now. A live process renews the leases of its
running turns, so a long turn (a carrier call with retries) keeps its order; renewing also
tells a turn whether its lease is still its own. The turns running at the same time take,
renew and free their leases together, one script call each.

A freed lease is remembered for a while (``~`` and the token that held it), so taking it
tells a process whether it ran the order's last turn: if so, the state it saved then is
still the order's state, and the turn need not load it again.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from actors.ports.turns import Taken
from adapters.redis.client import FAILURES, RedisClient
from adapters.redis.keys import RuntimeKeys
from adapters.redis.scripts import lua_source

TOKEN_CHARS = 16  # the width the scripts read tokens in
# A token is this process's own random start and a count of its turns: drawing 16 random
# characters for every turn cost a system call and a percent of the daemon's time. Only
# a token held right now must be unique, and a lease lives seconds, not 16 million turns.
_COUNT_CHARS = 6


class Leases:
    """The leases of one key prefix (:class:`actors.ports.turns.LeaseBook`)."""

    failures = FAILURES

    def __init__(
        self, redis: RedisClient, keys: RuntimeKeys, *, lease_ms: int, remember_ms: int = 120_000
    ) -> None:
        self._keys = keys
        self._lease_ms = lease_ms
        # How long a freed lease still names the process that held it.
        self._remember_ms = remember_ms
        self._own = secrets.token_hex((TOKEN_CHARS - _COUNT_CHARS) // 2)
        self._turns = itertools.count()
        self._take = redis.register_script(lua_source("take_leases"))
        self._release = redis.register_script(lua_source("release_leases"))
        self._renew = redis.register_script(lua_source("renew_leases"))

    @property
    def lease_ms(self) -> int:
        return self._lease_ms

    def new_token(self) -> str:
        """A turn's own lease token, of the width the scripts read."""
        number = next(self._turns) % 16**_COUNT_CHARS
        return f"{self._own}{number:0{_COUNT_CHARS}x}"

    async def take(self, wanted: Sequence[tuple[str, str]]) -> list[Taken]:
        """Take the lease of each (order, token) where no other process holds it."""
        answered = await self._per_partition(
            wanted, lambda keys, tokens: self._take(keys=keys, args=[self._lease_ms, tokens])
        )
        return [Taken(t) for t in _in_order(len(wanted), answered)]

    async def renew(self, held: Sequence[tuple[str, str]]) -> list[bool]:
        """Make each (order, token) lease still held with that token last ``lease_ms`` from
        now; True where it was still held, False where it ran out or another turn has it."""
        answered = await self._per_partition(
            held, lambda keys, tokens: self._renew(keys=keys, args=[self._lease_ms, tokens])
        )
        return [bool(k) for k in _in_order(len(held), answered)]

    async def free(self, held: Sequence[tuple[str, str]]) -> int:
        """Free each (order, token) lease still held with that token; return how many."""
        answered = await self._per_partition(
            held, lambda keys, tokens: self._release(keys=keys, args=[tokens, self._remember_ms])
        )
        return sum(int(count) for _, count in answered)

    async def _per_partition(
        self,
        pairs: Sequence[tuple[str, str]],
        call: Callable[[list[str], str], Awaitable[Any]],
    ) -> list[tuple[list[int], Any]]:
        """One script call per stream partition of the orders' leases (on a cluster each
        partition is a slot of its own, and a script's keys must share one); each call's
        answer with the positions in ``pairs`` it stands for. An order's lease is
        independent of another's, so a batch split into calls made at once is still one
        batch; the usual batch, of one partition, is one call awaited as it is."""
        groups: dict[int, list[int]] = {}
        for index, (order_id, _) in enumerate(pairs):
            groups.setdefault(self._keys.partition(order_id), []).append(index)
        calls = []
        for indexes in groups.values():
            part = [pairs[i] for i in indexes]
            calls.append(call([self._keys.lease(order_id) for order_id, _ in part], _tokens(part)))
        answers = [await calls[0]] if len(calls) == 1 else list(await asyncio.gather(*calls))
        return list(zip(groups.values(), answers, strict=True))


def _in_order(count: int, answered: Sequence[tuple[list[int], Sequence[Any]]]) -> list[Any]:
    """The partitions' answers put back in the order of the batch."""
    out: list[Any] = [None] * count
    for indexes, answer in answered:
        for index, value in zip(indexes, answer, strict=True):
            out[index] = value
    return out


def _tokens(pairs: Sequence[tuple[str, str]]) -> str:
    if any(len(token) != TOKEN_CHARS for _, token in pairs):
        raise ValueError(f"lease tokens are {TOKEN_CHARS} characters")
    return "".join(token for _, token in pairs)


class SoleLease:
    """A lease one process at a time holds for a task of the whole system (pushing stock
    to the platforms), kept as long as it asks again within ``lease_ms``
    (:class:`actors.stock_push.Lease`)."""

    def __init__(self, redis: RedisClient, key: str, *, lease_ms: int) -> None:
        self._key = key
        self._lease_ms = lease_ms
        self._token = secrets.token_hex(8)
        self._hold = redis.register_script(lua_source("hold_lease"))

    async def hold(self) -> bool:
        return bool(await self._hold(keys=[self._key], args=[self._token, self._lease_ms]))
