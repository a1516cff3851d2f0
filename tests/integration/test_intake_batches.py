"""Deliveries stored together in one batch, against real PostgreSQL and Redis.

Intake stores the deliveries that arrive together in one statement; these tests send
batches that repeat themselves (the same delivery, the same event, the same order twice)
and check that each delivery gets the answer it would get alone, and that what is stored
and streamed is exactly one message per new fact, numbered in arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from actors.mail import Mail
from actors.order.messages import decode_message
from adapters.platforms import shopify
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.pool import create_pool
from adapters.redis.streams import Streams
from daemon.intake import Answer, Intake
from tests.conftest import POSTGRES_DSN, runtime_keys
from tests.integration.daemon_harness import PAYLOADS, shopify_body


@pytest.fixture
async def intake(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str
) -> AsyncIterator[Intake]:
    pool = await create_pool(POSTGRES_DSN, pg_schema_name)
    mail = Mail(PostgresMailbox(pool), Streams(redis_client, runtime_keys(redis_prefix)))
    try:
        yield Intake(pool, mail, calm_after_s=0)
    finally:
        await mail.drain()
        await pool.close()


def paid(
    external_id: int, delivery: str, topic: str = "orders/paid", event: str | None = None
) -> Any:
    body = shopify_body(external_id, name=f"#{external_id}")
    return dict(
        source="shopify",
        topic=topic,
        delivery_id=delivery,
        event_id=event,
        body=body,
        decision=shopify.parse(body, topic),
    )


def cancelled(external_id: int, delivery: str) -> Any:
    body = (PAYLOADS / "shopify_orders_cancelled.json").read_bytes()
    body = body.replace(b'"id": 820982911946154508', f'"id": {external_id}'.encode(), 1)
    return dict(
        source="shopify",
        topic="orders/cancelled",
        delivery_id=delivery,
        event_id=None,
        body=body,
        decision=shopify.parse(body, "orders/cancelled"),
    )


async def together(intake: Intake, *deliveries: Any) -> list[Answer]:
    """Submit ``deliveries`` in one loop turn, so that they are stored as one batch."""
    return list(await asyncio.gather(*(intake.accept(**d) for d in deliveries)))


def statuses(answers: list[Answer]) -> list[tuple[int, str]]:
    return [(a.status, a.body["status"]) for a in answers]


async def test_a_batch_of_new_orders_is_accepted_and_streamed_in_order(
    intake: Intake, pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    answers = await together(intake, *(paid(1000 + n, f"d{n}") for n in range(20)))
    assert statuses(answers) == [(202, "accepted")] * 20
    rows = await pg.fetch("SELECT order_id, seq, type FROM mailbox ORDER BY id")
    assert [r["order_id"] for r in rows] == [a.body["order_id"] for a in answers]
    assert {(r["seq"], r["type"]) for r in rows} == {(1, "order_paid")}
    inbox = await pg.fetch("SELECT status, order_id FROM webhook_inbox ORDER BY id")
    assert [(r["status"], r["order_id"]) for r in inbox] == [
        ("streamed", a.body["order_id"]) for a in answers
    ]
    entries: Any = await redis_client.xrange(runtime_keys(redis_prefix).orders_stream)
    assert [fields[b"order"].decode() for _, fields in entries] == [
        a.body["order_id"] for a in answers
    ]


async def test_repeats_within_a_batch_are_answered_as_they_would_be_alone(
    intake: Intake, pg: Any
) -> None:
    answers = await together(
        intake,
        paid(1, "a"),
        paid(1, "a"),  # the same delivery again
        paid(2, "b", event="ev-2"),
        paid(3, "c", event="ev-2"),  # another delivery id, the same event
        paid(4, "d", topic="orders/create"),
        paid(4, "e"),  # orders/create and orders/paid of one order, together
    )
    assert statuses(answers) == [
        (202, "accepted"),
        (200, "duplicate"),
        (202, "accepted"),
        (200, "duplicate"),
        (202, "accepted"),
        (200, "duplicate"),
    ]
    assert answers[5].body["reason"] == "this order was already received"
    assert await pg.fetchval("SELECT count(*) FROM mailbox") == 3
    inbox = await pg.fetch("SELECT delivery_id, status, reason FROM webhook_inbox ORDER BY id")
    assert [(r["delivery_id"], r["status"], r["reason"]) for r in inbox] == [
        ("a", "streamed", None),
        ("b", "streamed", None),
        ("d", "streamed", None),
        ("e", "ignored", "this order was already received"),
    ]


async def test_a_repeated_delivery_does_not_hide_a_new_one_of_the_same_order(
    intake: Intake, pg: Any
) -> None:
    # The first batch ignores an unpaid order; the second repeats that delivery beside
    # the order's paid delivery, which is new and must be taken.
    unpaid_body = shopify_body(7, name="#7", financial_status="pending")
    unpaid = dict(
        source="shopify",
        topic="orders/create",
        delivery_id="u",
        event_id=None,
        body=unpaid_body,
        decision=shopify.parse(unpaid_body, "orders/create"),
    )
    assert statuses(await together(intake, unpaid)) == [(200, "ignored")]
    answers = await together(intake, unpaid, paid(7, "p"), paid(7, "q"))
    assert statuses(answers) == [(200, "duplicate"), (202, "accepted"), (200, "duplicate")]
    # And a paid order stored in an earlier batch is a repeat in any later one.
    again = await together(intake, paid(7, "r"), paid(8, "s"))
    assert statuses(again) == [(200, "duplicate"), (202, "accepted")]
    paid_messages = await pg.fetch(
        "SELECT order_id, seq FROM mailbox WHERE type = 'order_paid' ORDER BY id"
    )
    assert [r["seq"] for r in paid_messages] == [1, 1]


async def test_messages_of_one_order_in_one_batch_are_numbered_in_arrival_order(
    intake: Intake, pg: Any
) -> None:
    answers = await together(intake, paid(9, "p9"), cancelled(9, "c9"), paid(10, "p10"))
    assert statuses(answers) == [(202, "accepted")] * 3
    order_id = answers[0].body["order_id"]
    assert answers[1].body["order_id"] == order_id
    rows = await pg.fetch(
        "SELECT seq, type, body FROM mailbox WHERE order_id = $1 ORDER BY seq", order_id
    )
    assert [(r["seq"], r["type"]) for r in rows] == [(1, "order_paid"), (2, "cancel_requested")]
    assert decode_message(bytes(rows[1]["body"])).order_id == order_id
    later = await together(intake, cancelled(9, "c9-again"))
    assert statuses(later) == [(202, "accepted")]
    assert await pg.fetchval("SELECT max(seq) FROM mailbox WHERE order_id = $1", order_id) == 3


async def test_a_burst_presses_the_actors_and_a_quiet_flow_does_not(intake: Intake) -> None:
    burst = [asyncio.create_task(intake.accept(**paid(2000 + n, f"b{n}"))) for n in range(40)]
    await asyncio.sleep(0)  # one loop pass: every delivery is submitted, none answered yet
    assert intake.pressed()
    await asyncio.gather(*burst)
    assert not intake.pressed()
    await intake.accept(**paid(3000, "one"))
    assert not intake.pressed()
