"""The order stream and its consumer group: add, read, acknowledge, claim, dead-letter, trim.

One stream carries every message for every order actor; every orderd process reads it as a
consumer of the same group, so more processes share the work. Entries hold the message JSON
and its place in the order's sequence; PostgreSQL holds the message itself, so Redis losing
the stream loses nothing (see :func:`adapters.postgres.mailbox.restream_unapplied`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from actors.ports.mail import Posted
from actors.ports.stream import Entry, GroupLost
from adapters.redis.client import FAILURES, RedisClient
from adapters.redis.keys import GROUP, RuntimeKeys
from adapters.redis.scripts import lua_source

log = logging.getLogger("orderd.streams")

_encode = msgspec.msgpack.Encoder().encode


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: Any, fields: dict[Any, Any], deliveries: int = 1) -> Entry | None:
    try:
        return Entry(
            _text(entry_id),
            _text(fields[b"order"]),
            int(fields[b"seq"]),
            bytes(fields[b"msg"]),
            deliveries,
        )
    except (KeyError, ValueError, TypeError):
        return None  # not an orderd entry: acknowledged and dropped by the caller


class Streams:
    """The order stream of one key prefix: how messages are put on it
    (:class:`actors.ports.mail.MessageStream`) and how the group reads it
    (:class:`actors.ports.stream.ConsumerGroup`)."""

    failures = FAILURES

    def __init__(
        self,
        redis: RedisClient,
        keys: RuntimeKeys,
        partition: int = 0,
        *,
        elsewhere: Callable[[Entry], Awaitable[None]] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.stream = keys.orders_stream_of(partition)
        self._dead = keys.dead_stream_of(partition)
        self._partition = partition
        # Streams an entry of another partition's order again where it belongs.
        self._elsewhere = elsewhere
        self._add = redis.register_script(lua_source("stream_add"))
        self._master_id = redis.register_script(lua_source("master_id"))

    async def ensure_group(self) -> bool:
        """Create the stream and group if missing; True when they were created."""
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def add(self, posted: Sequence[Posted]) -> list[str]:
        """Put stored messages on the stream, in order; return their entry ids."""
        if not posted:
            return []
        # As text: Redis's cmsgpack reads no binary type, and the JSON is UTF-8.
        batch = _encode([(m.order_id, str(m.seq), m.body.decode(), str(m.id)) for m in posted])
        ids = await self._add(keys=[self.stream], args=[batch])
        return [_text(entry_id) for entry_id in ids]

    async def read(
        self,
        consumer: str,
        *,
        count: int,
        block_ms: int | None,
        own_pending: bool = False,
        after: str = "0",
    ) -> tuple[list[Entry], list[str]]:
        """New entries for ``consumer`` (or its own pending ones, those after ``after``);
        also ids of foreign entries."""
        try:
            reply: Any = await self._redis.xreadgroup(
                GROUP,
                consumer,
                {self.stream: after if own_pending else ">"},
                count=count,
                block=None if own_pending else block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                raise GroupLost(str(exc)) from None
            raise
        entries, foreign = [], []
        for _stream, items in reply or ():
            for entry_id, fields in items:
                if not fields:
                    foreign.append(_text(entry_id))  # deleted while pending
                    continue
                entry = _entry(entry_id, fields)
                if entry is None:
                    foreign.append(_text(entry_id))
                elif self._mine(entry):
                    entries.append(entry)
                elif await self._sent_on(entry):
                    foreign.append(entry.id)
        return entries, foreign

    def _mine(self, entry: Entry) -> bool:
        """Whether the entry's order belongs to this partition. One that does not was added
        under another layout (before a change, or by a process still running the old one):
        read here too, two runtimes would run the order's turns side by side."""
        return self._keys.partition(entry.order_id) == self._partition

    async def _sent_on(self, entry: Entry) -> bool:
        """Stream another partition's entry again where it belongs; True once it is, so it
        is acknowledged here. Not sent (PostgreSQL or Redis away): it stays pending here,
        and is claimed and tried again."""
        if self._elsewhere is None:
            return True  # nothing reads by layout here: left, as before partitions
        try:
            await self._elsewhere(entry)
        except Exception as exc:
            log.warning("an entry of order %s could not be streamed again: %s", entry.order_id, exc)
            return False
        return True

    async def ack(self, ids: Sequence[str]) -> None:
        if ids:
            await self._redis.xack(self.stream, GROUP, *ids)

    async def claim_idle(
        self, consumer: str, min_idle_ms: int, *, start: str = "0-0", count: int = 100
    ) -> tuple[list[Entry], str]:
        """Take over entries idle that long on any consumer (one that died, most likely),
        scanning the pending list from ``start``; also where the next scan goes on from
        (``0-0`` once the whole list was scanned)."""
        try:
            reply: Any = await self._redis.xautoclaim(
                self.stream, GROUP, consumer, min_idle_time=min_idle_ms, start_id=start,
                count=count,
            )  # fmt: skip
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                raise GroupLost(str(exc)) from None
            raise
        # Redis 7 answers (next start, claimed entries, ids deleted from the stream); the
        # deleted ones are already gone from the pending list.
        cursor = _text(reply[0]) if reply else "0-0"
        claimed = reply[1] if len(reply) > 1 else []
        if not claimed:
            return [], cursor
        counts = await self.delivery_counts([_text(entry_id) for entry_id, _ in claimed])
        entries, others = [], []
        for entry_id, fields in claimed:
            entry = _entry(entry_id, fields or {}, counts.get(_text(entry_id), 1))
            if entry is not None and self._mine(entry):
                entries.append(entry)
            elif entry is not None and await self._sent_on(entry):
                others.append(entry.id)
        await self.ack(others)  # another partition's, streamed again there
        return entries, cursor

    async def delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """How many times each pending entry was delivered."""
        if not ids:
            return {}
        low, high = min(ids, key=_order_key), max(ids, key=_order_key)
        pending: Any = await self._redis.xpending_range(
            self.stream, GROUP, min=low, max=high, count=max(len(ids), 1) * 4
        )
        wanted = set(ids)
        return {
            _text(p["message_id"]): int(p["times_delivered"])
            for p in pending
            if _text(p["message_id"]) in wanted
        }

    async def dead_letter(self, entry: Entry, error: str) -> None:
        """Copy the entry to the dead-letter stream and acknowledge it here, both or neither."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self._dead,
                {
                    "order": entry.order_id,
                    "seq": entry.seq,
                    "msg": entry.body,
                    "entry": entry.id,
                    "deliveries": entry.deliveries,
                    "error": error[:500],
                },
            )
            pipe.xack(self.stream, GROUP, entry.id)
            await pipe.execute()

    async def trim(self) -> int:
        """Drop entries every group has acknowledged; never one still pending anywhere."""
        groups: Any = await self._redis.xinfo_groups(self.stream)
        if not groups:
            return 0
        floor: str | None = None
        for group in groups:
            name = _text(group["name"])
            candidates = [_text(group["last-delivered-id"])]
            summary: Any = await self._redis.xpending(self.stream, name)
            if summary and summary.get("pending"):
                candidates.append(_text(summary["min"]))
            lowest = min(candidates, key=_order_key)
            floor = lowest if floor is None else min(floor, lowest, key=_order_key)
        if floor is None or floor == "0-0":
            return 0
        trimmed: int = await self._redis.xtrim(self.stream, minid=floor, approximate=False)
        return trimmed

    async def forget_idle_consumers(self, idle_ms: int) -> list[str]:
        """Delete consumers idle that long, but never one with pending entries."""
        gone = []
        consumers: Any = await self._redis.xinfo_consumers(self.stream, GROUP)
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms:
                name = _text(consumer["name"])
                await self._redis.xgroup_delconsumer(self.stream, GROUP, name)
                gone.append(name)
        return gone

    async def master_id(self) -> str:
        found = await self._master_id(keys=[self.stream])
        return _text(found)

    async def oldest_unfinished_ms(self) -> int | None:
        """When the oldest entry the group has not finished was added (ms since the epoch):
        the lowest pending one, or the first not yet delivered; None when there is none."""
        info: Any = await self._redis.xinfo_groups(self.stream)
        group = next((g for g in info if _text(g["name"]) == GROUP), None)
        if group is None:
            return None
        oldest: list[str] = []
        if int(group["pending"]):
            summary: Any = await self._redis.xpending(self.stream, GROUP)
            if summary and summary.get("min"):
                oldest.append(_text(summary["min"]))
        # Not lag: Redis cannot always count it (after deletions), and answers nil then.
        after = "(" + _text(group["last-delivered-id"])
        first: Any = await self._redis.xrange(self.stream, min=after, count=1)
        if first:
            oldest.append(_text(first[0][0]))
        if not oldest:
            return None
        return min(_order_key(entry_id) for entry_id in oldest)[0]

    async def backlog(self) -> dict[str, int]:
        """Entries not yet delivered to the group, and entries delivered but unacknowledged."""
        info: Any = await self._redis.xinfo_groups(self.stream)
        for group in info:
            if _text(group["name"]) == GROUP:
                return {"lag": int(group.get("lag") or 0), "pending": int(group["pending"])}
        return {"lag": 0, "pending": 0}


def _order_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class PartitionedStream:
    """The order stream cut into partitions, as messages are put on it
    (:class:`actors.ports.mail.MessageStream`): each order's messages go to its partition's
    stream, in the order given, the partitions' at the same time."""

    failures = FAILURES

    def __init__(self, partitions: Sequence[Streams], keys: RuntimeKeys) -> None:
        if len(partitions) != keys.partitions:
            raise ValueError("one stream per partition")
        self._partitions = list(partitions)
        self._keys = keys

    async def add(self, posted: Sequence[Posted]) -> list[str]:
        groups: dict[int, list[int]] = {}
        for index, message in enumerate(posted):
            groups.setdefault(self._keys.partition(message.order_id), []).append(index)
        # One failing partition fails the call: the whole batch is left to the pump, and
        # what the others took is streamed twice, which is recognised by its number.
        added = await asyncio.gather(
            *(
                self._partitions[k].add([posted[i] for i in indexes])
                for k, indexes in groups.items()
            )
        )
        ids = [""] * len(posted)
        for indexes, entry_ids in zip(groups.values(), added, strict=True):
            for index, entry_id in zip(indexes, entry_ids, strict=True):
                ids[index] = entry_id
        return ids


async def laid_out_before(redis: RedisClient, keys: RuntimeKeys) -> str | None:
    """The layout the stream had before, when it differs from ``keys.layout``: another one
    recorded, or none recorded and the first versions' plain stream there (their entries,
    if any, are where no one reads now). Record the new one only once what was not applied
    is streamed again (:func:`record_layout`): a crash in between finds the change again."""
    was = await redis.get(keys.stream_layout)
    if was is None:
        # Nothing recorded: a new Redis, or one the first versions laid out, whose stream
        # is the plain one.
        first = RuntimeKeys(keys.prefix)
        if keys.layout == first.layout or not await redis.exists(first.orders_stream):
            return None
        return first.layout
    before = _text(was)
    return None if before == keys.layout else before


async def record_layout(redis: RedisClient, keys: RuntimeKeys) -> None:
    await redis.set(keys.stream_layout, keys.layout)


async def seen_running(redis: RedisClient, keys: RuntimeKeys, process: str, now_ms: int) -> None:
    """Note that ``process`` runs, with its layout of the stream (and forget processes not
    seen for a day)."""
    await redis.zadd(keys.processes, {f"{process} {keys.layout}": now_ms})
    await redis.zremrangebyscore(keys.processes, "-inf", now_ms - 86_400_000)


async def forget_running(redis: RedisClient, keys: RuntimeKeys, process: str) -> None:
    """``process`` stopped."""
    await redis.zrem(keys.processes, f"{process} {keys.layout}")


async def running_otherwise(
    redis: RedisClient, keys: RuntimeKeys, now_ms: int, within_ms: int
) -> list[str]:
    """Processes seen running within ``within_ms`` with another layout of the stream than
    ``keys``' (as ``<process> <layout>``)."""
    found: Any = await redis.zrangebyscore(keys.processes, now_ms - within_ms, "+inf")
    return [m for m in map(_text, found) if m.partition(" ")[2] != keys.layout]


async def drop_streams_of(redis: RedisClient, keys: RuntimeKeys, layout: str) -> list[str]:
    """Delete the order streams of an earlier layout (``"3 tagged"``) that ``keys``' does
    not read; their dead letters stay. The streams deleted."""
    count, _, kind = layout.partition(" ")
    if not count.isdigit() or kind not in ("tagged", "plain") or not 1 <= int(count) <= 1024:
        return []
    old = RuntimeKeys(keys.prefix, tagged=kind == "tagged", partitions=int(count))
    read = {keys.orders_stream_of(k) for k in range(keys.partitions)}
    streams = [s for k in range(old.partitions) if (s := old.orders_stream_of(k)) not in read]
    for stream in streams:
        await redis.delete(stream)  # one at a time: on a cluster each is in its own slot
    return streams


def partition_streams(
    redis: RedisClient,
    keys: RuntimeKeys,
    elsewhere: Callable[[Entry], Awaitable[None]] | None = None,
) -> list[Streams]:
    """The stream of each partition (just the stream, unless partitioned)."""
    return [Streams(redis, keys, k, elsewhere=elsewhere) for k in range(keys.partitions)]


def order_stream(partitions: Sequence[Streams], keys: RuntimeKeys) -> Streams | PartitionedStream:
    """Where stored messages are put: the stream, or its partitions."""
    return partitions[0] if len(partitions) == 1 else PartitionedStream(partitions, keys)
