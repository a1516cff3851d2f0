"""When each reminder is due, as a sorted set in Redis: due ones are found in one call.

A copy of what PostgreSQL holds (:mod:`adapters.postgres.reminders`), rebuilt from it
when Redis lost it (:class:`actors.ports.reminders.ReminderSchedule`).
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.ports.turns import Reminder
from adapters.redis.client import FAILURES, RedisClient
from adapters.redis.keys import RuntimeKeys


class RedisSchedule:
    failures = FAILURES

    def __init__(self, redis: RedisClient, keys: RuntimeKeys) -> None:
        self._redis = redis
        self._key = keys.reminders

    async def add(self, reminders: Sequence[Reminder]) -> None:
        """Schedule ``reminders`` by their due time (ms since the epoch)."""
        await self._redis.zadd(
            self._key, {r.key: int(r.due_at.timestamp() * 1000) for r in reminders}
        )

    async def due(self, until_ms: int, limit: int) -> list[str]:
        due = await self._redis.zrangebyscore(self._key, "-inf", until_ms, 0, limit)
        return [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in due]

    async def remove(self, key: str) -> None:
        await self._redis.zrem(self._key, key)
