"""Taking a verified, parsed webhook in: store it, recognise repeats, hand the order over.

The delivery goes into the webhook inbox and, when it carries a paid order or a
cancellation, a message goes into the order's mailbox, in one transaction. Only then is
the platform told 202; the message is streamed to the actors right after.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
from msgspec import Struct

from actors.mail import Mail
from actors.order.messages import CancelRequested, Message, OrderPaid
from adapters.platforms import Cancelled, Ignored, Paid
from adapters.postgres import mailbox

log = logging.getLogger("orderd.intake")

Decision = Paid | Cancelled | Ignored


class Answer(Struct, frozen=True):
    status: int
    body: dict[str, Any]


class StoreUnavailable(Exception):
    """PostgreSQL could not store the delivery: the platform should retry (503)."""


class Intake:
    def __init__(self, pool: Any, mail: Mail) -> None:
        self._pool = pool
        self._mail = mail
        self.outcomes: Counter[str] = Counter()

    async def accept(
        self,
        *,
        source: str,
        topic: str,
        delivery_id: str,
        event_id: str | None,
        body: bytes,
        decision: Decision,
    ) -> Answer:
        external_id = _external_id(decision)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                inbox_id = await conn.fetchval(
                    """
                    INSERT INTO webhook_inbox (source, topic, delivery_id, event_id,
                                               external_id, body)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT DO NOTHING
                    RETURNING id
                    """,
                    source,
                    topic[:100],
                    delivery_id[:200],
                    event_id[:200] if event_id else None,
                    external_id,
                    body,
                )
                if inbox_id is None:
                    return self._answer(200, "duplicate", "this delivery was already received")
                message: Message | None = None
                match decision:
                    case Ignored(reason=reason):
                        await _settle(conn, inbox_id, "ignored", reason, None)
                        return self._answer(200, "ignored", reason)
                    case Paid(order=order):
                        if await mailbox.paid_known(conn, order.id):
                            reason = "this order was already received"
                            await _settle(conn, inbox_id, "ignored", reason, order.id)
                            return self._answer(200, "duplicate", reason)
                        message = OrderPaid(
                            order_id=order.id, order=order, received_at=datetime.now(UTC)
                        )
                    case Cancelled(reason=reason):
                        message = CancelRequested(
                            order_id=decision.order_id, reason=reason, requested_by=source
                        )
                posted = await mailbox.post(conn, [message])
                await _settle(conn, inbox_id, "streamed", None, message.order_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not store a %s webhook: %s", source, type(exc).__name__)
            raise StoreUnavailable(str(exc)) from None
        await self._mail.stream(posted)
        self.outcomes["accepted"] += 1
        return Answer(202, {"status": "accepted", "order_id": message.order_id})

    def _answer(self, status: int, outcome: str, reason: str) -> Answer:
        self.outcomes[outcome] += 1
        return Answer(status, {"status": outcome, "reason": reason})


def _external_id(decision: Decision) -> str | None:
    match decision:
        case Paid(order=order):
            return order.external_id
        case Cancelled(external_id=external_id):
            return external_id
        case Ignored(external_id=external_id):
            return external_id
    return None


async def _settle(
    conn: Any, inbox_id: int, status: str, reason: str | None, order_id: str | None
) -> None:
    await conn.execute(
        "UPDATE webhook_inbox SET status = $2, reason = $3, order_id = $4 WHERE id = $1",
        inbox_id,
        status,
        reason,
        order_id,
    )
