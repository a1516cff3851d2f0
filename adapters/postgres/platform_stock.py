"""What the stores' platforms were told of their stock (:class:`actors.stock_push.PushedLevels`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from actors.stock_push import Known, Level
from adapters.postgres.rows import Rows

_ROWS = Rows(
    "platform text", "sku text", "location text", "pushed int4", "platform_has int4",
    "retry_at timestamptz", "last_error text",
)  # fmt: skip


class PostgresPushedLevels:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def load(self, platform: str) -> dict[Level, Known]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                SELECT sku, location, pushed, platform_has,
                       extract(epoch FROM retry_at)::float8 AS retry_at, last_error
                FROM platform_stock WHERE platform = $1
                """,
                platform,
            )
        return {
            (r["sku"], r["location"]): Known(
                r["pushed"], r["platform_has"], r["retry_at"] or 0.0, r["last_error"]
            )
            for r in rows
        }

    async def record(self, platform: str, levels: Mapping[Level, Known]) -> None:
        if not levels:
            return
        rows = [
            (
                platform, sku, location, known.pushed, known.platform_has,
                datetime.fromtimestamp(known.retry_at, UTC) if known.retry_at else None,
                known.error,
            )
            for (sku, location), known in levels.items()
        ]  # fmt: skip
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"""
                INSERT INTO platform_stock AS s
                    (platform, sku, location, pushed, platform_has, retry_at, last_error)
                SELECT {_ROWS.columns} FROM {_ROWS.source}
                ON CONFLICT (platform, sku, location) DO UPDATE
                SET pushed = excluded.pushed, platform_has = excluded.platform_has,
                    retry_at = excluded.retry_at, last_error = excluded.last_error,
                    updated_at = now()
                """,
                _ROWS.encode(rows),
            )


async def of_sku(conn: Any, sku: str) -> list[dict[str, Any]]:
    """What each platform was told of one sku (``orderd stock show``)."""
    rows = await conn.fetch(
        """
        SELECT platform, location, pushed, platform_has, last_error, updated_at
        FROM platform_stock WHERE sku = $1 ORDER BY platform, location
        """,
        sku,
    )
    return [dict(r) for r in rows]
