"""Finding orders for an operator: by state, held, or stuck behind messages not applied."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from msgspec import Struct

from actors.order.holds import describe
from actors.order.steps.model import decode_holds


class Listed(Struct, frozen=True, kw_only=True):
    id: str
    name: str | None
    state: str | None  # None: messages stored for an order none of which was applied yet
    reason: str | None
    updated_at: datetime | None
    unapplied: int  # messages stored for the order and not applied
    oldest_unapplied_at: datetime | None
    # What holds the order for a person, in words ("shipment S1", "dead letter 12").
    holds: tuple[str, ...] = ()


async def listed(
    conn: Any,
    *,
    state: str | None = None,
    held: bool = False,
    stuck_after: timedelta | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Listed]:
    """Orders newest first; ``stuck_after``: only those with a message stored that long
    ago and still not applied (an order never created included)."""
    rows = await conn.fetch(
        """
        WITH waiting AS (
            SELECT m.order_id, count(*) AS unapplied, min(m.created_at) AS oldest
            FROM order_seq s
            LEFT JOIN orders o ON o.id = s.order_id
            JOIN mailbox m ON m.order_id = s.order_id AND m.seq > coalesce(o.last_seq, 0)
            WHERE s.last > coalesce(o.last_seq, 0)
            GROUP BY m.order_id
        ), found AS (
            SELECT coalesce(o.id, w.order_id) AS id, o.name, o.state, o.state_reason,
                   o.updated_at, coalesce(w.unapplied, 0) AS unapplied, w.oldest,
                   (o.actor_state->'holds')::text AS holds
            FROM orders o
            FULL JOIN waiting w ON w.order_id = o.id
        )
        SELECT * FROM found
        WHERE ($1::text IS NULL OR state = $1)
          AND (NOT $2 OR state = 'needs_attention')
          AND ($3::interval IS NULL OR oldest < now() - $3::interval)
          AND ($4::timestamptz IS NULL OR coalesce(updated_at, oldest) >= $4)
        ORDER BY coalesce(updated_at, oldest) DESC, id
        LIMIT $5
        """,
        state,
        held,
        stuck_after,
        since,
        limit,
    )
    return [
        Listed(
            id=r["id"],
            name=r["name"],
            state=r["state"],
            reason=r["state_reason"],
            updated_at=r["updated_at"],
            unapplied=r["unapplied"],
            oldest_unapplied_at=r["oldest"],
            holds=tuple(describe(h) for h in decode_holds(r["holds"])) if r["holds"] else (),
        )
        for r in rows
    ]
