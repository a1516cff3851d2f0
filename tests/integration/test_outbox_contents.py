"""An outbox row's content is written once, beside the row its claims and results rewrite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from actors.notify.model import Outgoing
from actors.ports.outboxes import QueuedNotification, QueuedRequest
from adapters.postgres import fulfillment, notifications
from adapters.postgres.writes import Writes
from tests.unit.test_printout import request

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def confirmation(order_id: str, to: str) -> QueuedNotification:
    return QueuedNotification(
        order_id=order_id,
        shipment_id=None,
        episode=0,
        message=Outgoing(
            idempotency_key=f"{order_id}:shipping_confirmation",
            kind="shipping_confirmation",
            channel="email",
            to=to,
            context={"order_name": "#1"},
            items=(("MUG-BLK", "Mug", 1),),
        ),
        due_at=NOW,
    )


async def test_a_message_asked_for_twice_is_stored_once_with_its_first_content(pg: Any) -> None:
    await pg.execute("INSERT INTO orders (id) VALUES ('o1'), ('o2')")
    writes = Writes()
    first = confirmation("o1", "first@example.com")
    notifications.add_queued(
        writes, [first, confirmation("o1", "second@example.com"), confirmation("o2", "b@x.org")]
    )
    await writes.execute(pg)
    again = Writes()
    notifications.add_queued(again, [confirmation("o1", "third@example.com")])
    await again.execute(pg)

    assert await pg.fetchval("SELECT count(*) FROM notifications") == 2
    assert await pg.fetchval("SELECT count(*) FROM notification_payloads") == 2
    claimed = await notifications.claim_due(pg, NOW, timedelta(minutes=1), 10)
    assert sorted((d.order_id, d.message) for d in claimed) == [
        ("o1", first.message),
        ("o2", confirmation("o2", "b@x.org").message),
    ]
    # Claiming rewrote the rows, not their contents.
    assert await pg.fetchval("SELECT count(*) FROM notification_payloads") == 2


async def test_a_request_and_its_cancellation_share_one_body(pg: Any) -> None:
    queued = request()
    writes = Writes()
    item = QueuedRequest(queued, "http", queued.requested_at)
    fulfillment.add_queued(writes, [item, item])
    await writes.execute(pg)
    taken = await fulfillment.claim_due(pg, queued.requested_at, 60.0, 10)
    assert [(d.request, d.kind) for d in taken] == [(queued, "request")]
    await fulfillment.sent(pg, [(queued.shipment_id, "request")], queued.requested_at)

    await fulfillment.withdraw(pg, [queued.order_id], queued.requested_at)
    cancels = await fulfillment.claim_due(pg, queued.requested_at, 60.0, 10)
    assert [(d.request, d.kind) for d in cancels] == [(queued, "cancel")]
    assert await pg.fetchval("SELECT count(*) FROM fulfillment_bodies") == 1
