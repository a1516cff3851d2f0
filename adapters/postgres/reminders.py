"""Reminders in PostgreSQL: the record of every reminder, and which have fired.

A turn stores its reminders with itself (:mod:`adapters.postgres.orders`); here they are
found when due and fired, each marked in the transaction that posts its message
(:class:`actors.ports.reminders.ReminderStore`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from actors.ports.turns import Reminder
from adapters.postgres.mailbox import PostgresPosting


class PostgresReminders:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def unfired(self) -> list[Reminder]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key, order_id, kind, due_at FROM reminders WHERE fired_at IS NULL"
            )
        return [Reminder(r["key"], r["order_id"], r["kind"], r["due_at"]) for r in rows]

    async def due(self, now: datetime, limit: int) -> list[str]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                SELECT key FROM reminders
                WHERE fired_at IS NULL AND due_at <= $1
                ORDER BY due_at LIMIT $2
                """,
                now,
                limit,
            )
        return [r["key"] for r in rows]

    @contextlib.asynccontextmanager
    async def firing(self) -> AsyncIterator[PostgresFiring]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresFiring(conn)


class PostgresFiring(PostgresPosting):
    """PostgresFiring reminders in the transaction of ``conn``."""

    async def fire(self, key: str) -> Reminder | None:
        row = await self._conn.fetchrow(
            """
            UPDATE reminders SET fired_at = now()
            WHERE key = $1 AND fired_at IS NULL
            RETURNING order_id, kind, due_at
            """,
            key,
        )
        return None if row is None else Reminder(key, row["order_id"], row["kind"], row["due_at"])
