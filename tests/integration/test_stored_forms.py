"""An order stored before holds, reminder scopes and delay causes were typed goes on.

Real PostgreSQL and Redis. The order row, its events, its reminders and the message that
releases its dead letter are written exactly as the version before wrote them (the JSON
literals are that version's own output). The order then loads, is listed and shown, takes
an operator's retry and release, tracking news and its old reminder through real turns,
and is saved again in today's form.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from actors.mail import Mail
from actors.order.actor import OrderTurns, Outcome
from actors.order.behaviour import Rules
from actors.order.events import AttentionNeeded, DelayDetected, DelayEnded, decode_event
from actors.order.holds import DeadLetterHold, ShipmentHold
from actors.order.messages import (
    HoldRelease,
    Message,
    ReminderDue,
    RetryRequested,
    TrackingUpdated,
    decode_message,
)
from actors.order.outbox import CustomerMessages
from actors.order.reminder import ReminderKind, ReminderScope
from actors.reminders import Reminders
from actors.shipping.carriers import TrackingStatus
from actors.shipping.tracking import DelayCause
from adapters.postgres import mailbox, orders
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.orders import PostgresOrders
from adapters.postgres.pool import create_pool
from adapters.postgres.reminders import PostgresReminders
from adapters.redis.leases import Leases
from adapters.redis.reminders import RedisSchedule
from adapters.redis.streams import Streams
from adapters.stock.allocator import Allocator
from daemon.settings import Settings
from daemon.shipping import message_settings
from tests.conftest import POSTGRES_DSN, Clock, runtime_keys

Run = Callable[..., subprocess.CompletedProcess[str]]

ORDER_ID = "ord_old"

# Paid, its two shipments requested; ord_old-1 shipped and late for its pickup, ord_old-2
# packed and held without a label; then its message 3 was dead-lettered.
ACTOR_STATE = (
    '{"order_id":"ord_old","state":"needs_attention","order":null,'
    '"holdings":[["east","B",1,0]],"policy":"wait_all",'
    '"reason":"message 3 dead-lettered after 5 deliveries","shipments":[{"id":"ord_old-1",'
    '"seq":1,"warehouse":"main","lines":[["A",1]],"status":"shipped",'
    '"service_level":"standard","promised_by":"2027-01-20","parcel":{"weight_g":100,'
    '"length_cm":10,"width_cm":10,"height_cm":10},"rate":{"carrier":"sandbox",'
    '"carrier_account":"Sandbox Post","service":"standard","amount":"4.50","currency":"EUR",'
    '"delivery_days":3,"delivery_date":null,"rate_id":"r1","quote_id":"q1"},'
    '"estimated_delivery":"2027-01-14","tracking_number":"SB1","tracking_url":null,'
    '"label_format":"pdf","label_path":"/labels/ord_old-1.pdf","purchase_id":"p1",'
    '"packed_ok":true,"problem":null,"short":[],"shipped_at":"2027-01-09T09:00:00Z",'
    '"tracking_status":null,"tracking_detail":null,"tracking_at":null,'
    '"carrier_estimate":null,"scans":0,"delayed":true,"delay_episode":1,'
    '"delay_reason":"not picked up 30 hours after it shipped","delivered_at":null,'
    '"review_after_days":null,"repeat_after_days":null},{"id":"ord_old-2","seq":2,'
    '"warehouse":"east","lines":[["B",1]],"status":"packed","service_level":"standard",'
    '"promised_by":"2027-01-20","parcel":{"weight_g":100,"length_cm":10,"width_cm":10,'
    '"height_cm":10},"rate":null,"estimated_delivery":null,"tracking_number":null,'
    '"tracking_url":null,"label_format":null,"label_path":null,"purchase_id":null,'
    '"packed_ok":true,"problem":null,"short":[],"shipped_at":null,"tracking_status":null,'
    '"tracking_detail":null,"tracking_at":null,"carrier_estimate":null,"scans":0,'
    '"delayed":false,"delay_episode":0,"delay_reason":null,"delivered_at":null,'
    '"review_after_days":null,"repeat_after_days":null}],"follow_ups":[],'
    '"holds":["ord_old-2","dead:3"]}'
)
DOCUMENT = (
    '{"id":"ord_old","platform":"generic","external_id":"old-1","name":"#OLD1",'
    '"paid_at":"2027-01-08T09:00:00Z","currency":"EUR","customer":{"email":"old@example.com",'
    '"phone":null,"first_name":"Ada","last_name":"","accepts_sms":false,"locale":null},'
    '"shipping_address":{"name":"Ada","company":"","line1":"Damrak 1","line2":"",'
    '"city":"Amsterdam","region":"","postal_code":"1012 LG","country":"NL","phone":null},'
    '"lines":[{"sku":"A","quantity":1,"name":"","external_line_id":null,'
    '"requires_shipping":true,"grams":100,"unit_price":"0"},{"sku":"B","quantity":1,'
    '"name":"","external_line_id":null,"requires_shipping":true,"grams":100,'
    '"unit_price":"0"}],"total":null,"shipping_service":null,"note":null,'
    '"backorder_policy":null}'
)
# The order's events whose stored form changed (the others are stored as they were).
OLD_EVENTS = (
    (10, '{"type":"needs_attention","reason":"no label for shipment ord_old-2: address '
         'refused","hold":"ord_old-2","at":"2027-01-09T09:00:00Z"}'),
    (11, '{"type":"delayed","shipment_id":"ord_old-1","episode":1,'
         '"reason":"not picked up 30 hours after it shipped","at":"2027-01-11T09:00:00Z"}'),
    (12, '{"type":"needs_attention","reason":"message 3 dead-lettered after 5 deliveries",'
         '"hold":"dead:3","at":"2027-01-12T09:00:00Z"}'),
)  # fmt: skip
# What ``orderd dlq replay`` sent after replaying message 3.
OLD_RELEASE = '{"type":"hold_release","hold":"dead:3","by":"operator","order_id":"ord_old"}'


async def store_the_old_order(pg: Any) -> None:
    """The order as the version before left it: its row, shipments, events, reminders."""
    await pg.execute(
        """
        INSERT INTO orders (id, source, external_id, name, state, state_reason, version,
                            backorder_policy, paid_at, currency, actor_state, last_seq,
                            shipped_at)
        VALUES ($1, 'generic', 'old-1', '#OLD1', 'needs_attention',
                'message 3 dead-lettered after 5 deliveries', 12, 'wait_all',
                '2027-01-08T09:00:00Z', 'EUR', $2::jsonb, 12, '2027-01-09T09:00:00Z')
        """,
        ORDER_ID,
        ACTOR_STATE,
    )
    await pg.execute(
        "INSERT INTO order_documents (order_id, document) VALUES ($1, $2::jsonb)",
        ORDER_ID,
        DOCUMENT,
    )
    await pg.execute("INSERT INTO order_seq (order_id, last) VALUES ($1, 12)", ORDER_ID)
    await pg.execute(
        """
        INSERT INTO shipments (id, order_id, seq, warehouse, status, label_id, delayed,
                               delay_episode, delay_reason)
        VALUES ('ord_old-1', $1, 1, 'main', 'shipped', 'p1', true, 1,
                'not picked up 30 hours after it shipped'),
               ('ord_old-2', $1, 2, 'east', 'packed', NULL, false, 0, NULL)
        """,
        ORDER_ID,
    )
    await pg.executemany(
        """
        INSERT INTO order_event_turns (order_id, seq, upto, events)
        VALUES ($1, $2, $2, jsonb_build_array($3::jsonb))
        """,
        [(ORDER_ID, seq, data) for seq, data in OLD_EVENTS],
    )
    # Set when ord_old-1 shipped: its pickup check fired (the delay), its promise check waits.
    await pg.execute(
        """
        INSERT INTO reminders (key, order_id, kind, due_at, fired_at) VALUES
            ('ord_old:pickup_check:ord_old-1', $1, 'pickup_check', '2027-01-11T09:00:00Z',
             '2027-01-11T09:00:01Z'),
            ('ord_old:promise_check:ord_old-1', $1, 'promise_check', '2027-01-21T00:00:00Z',
             NULL)
        """,
        ORDER_ID,
    )


class World:
    """Turns, reminders and the mailbox of the test's order, as the daemon runs them."""

    def __init__(self, pg: Any, turns: OrderTurns, reminders: Reminders, clock: Clock) -> None:
        self.pg = pg
        self.turns = turns
        self.reminders = reminders
        self.clock = clock

    async def tell(self, *messages: Message) -> None:
        async with self.pg.transaction():
            await mailbox.post(self.pg, list(messages))

    async def store_old(self, body: str, stored_type: str) -> None:
        """A message in the mailbox as the version before stored it."""
        seq = await self.pg.fetchval(
            "UPDATE order_seq SET last = last + 1 WHERE order_id = $1 RETURNING last", ORDER_ID
        )
        await self.pg.execute(
            "INSERT INTO mailbox (order_id, seq, type, body) VALUES ($1, $2, $3, $4)",
            ORDER_ID,
            seq,
            stored_type,
            body.encode(),
        )

    async def apply_stored(self) -> list[Message]:
        """Apply every stored message of the order not yet applied, in order."""
        rows = await self.pg.fetch(
            """
            SELECT seq, body FROM mailbox
            WHERE order_id = $1 AND seq > (SELECT last_seq FROM orders WHERE id = $1)
            ORDER BY seq
            """,
            ORDER_ID,
        )
        applied = []
        for row in rows:
            message = decode_message(bytes(row["body"]))
            assert await self.turns.apply(ORDER_ID, row["seq"], message) is Outcome.APPLIED
            applied.append(message)
        return applied

    def news(self, status: TrackingStatus) -> TrackingUpdated:
        at = datetime.fromtimestamp(self.clock(), UTC)
        return TrackingUpdated(
            order_id=ORDER_ID, shipment_id="ord_old-1", status=status, carrier_status=status,
            at=at,
        )  # fmt: skip

    async def events_since(self, seq: int) -> list[Any]:
        rows = await self.pg.fetch(
            "SELECT data::text FROM order_events WHERE order_id = $1 AND seq > $2 ORDER BY seq",
            ORDER_ID,
            seq,
        )
        return [decode_event(r["data"]) for r in rows]

    async def last_event_seq(self) -> int:
        seq: int = await self.pg.fetchval(
            "SELECT max(seq) FROM order_events WHERE order_id = $1", ORDER_ID
        )
        return seq


@pytest.fixture
async def world(
    pg: Any,
    pg_schema_name: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    make_allocator: Callable[..., Awaitable[Allocator]],
    settings: Settings,
    clock: Clock,
) -> AsyncIterator[World]:
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=4)
    keys = runtime_keys(redis_prefix)
    streams = Streams(redis_client, keys)
    await streams.ensure_group()
    mail = Mail(PostgresMailbox(pool), streams)
    allocator = await make_allocator()
    turns = OrderTurns(
        orders=PostgresOrders(pool, allocator.epochs),
        leases=Leases(redis_client, keys, lease_ms=30_000),
        schedule=RedisSchedule(redis_client, keys),
        stock=allocator,
        rules=Rules(),
        clock=clock,
        messages=CustomerMessages(
            settings=msgspec.structs.replace(message_settings(settings), email_enabled=True),
            feedback_secret=lambda: "secret",
        ),
    )
    reminders = Reminders(
        store=PostgresReminders(pool),
        schedule=RedisSchedule(redis_client, keys),
        mail=mail,
        clock=clock,
    )
    try:
        yield World(pg, turns, reminders, clock)
    finally:
        await mail.drain()
        await pool.close()


async def test_an_order_stored_with_string_holds_is_listed_shown_and_retried(
    pg: Any, run_orderd: Run
) -> None:
    await store_the_old_order(pg)
    loaded = await orders.load(pg, ORDER_ID)
    assert loaded.snapshot is not None
    assert loaded.snapshot.holds == (ShipmentHold("ord_old-2"), DeadLetterHold(seq=3))
    assert loaded.snapshot.shipments[0].delay_cause is DelayCause.NOT_PICKED_UP

    listed = run_orderd("order", "list", "--held")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "ord_old #OLD1  needs_attention: message 3 dead-lettered after 5 deliveries"
        " [held for: shipment ord_old-2, dead letter 3]"
    ]
    shown = run_orderd("order", "show", ORDER_ID)
    assert shown.returncode == 0, shown.stderr
    assert "  held for: shipment ord_old-2, dead letter 3" in shown.stdout.splitlines()
    as_json = json.loads(run_orderd("order", "show", ORDER_ID, "--json").stdout)
    assert as_json["holds"] == ["shipment ord_old-2", "dead letter 3"]

    # The packed shipment held without its label is found in the string holds.
    retried = run_orderd("order", "retry", ORDER_ID)
    assert retried.returncode == 0, retried.stderr
    body = await pg.fetchval(
        "SELECT body FROM mailbox WHERE order_id = $1 AND type = 'retry_requested'", ORDER_ID
    )
    assert decode_message(bytes(body)) == RetryRequested(order_id=ORDER_ID, shipment_id="ord_old-2")


async def test_an_order_stored_before_typed_state_loads_and_goes_on(pg: Any, world: World) -> None:
    await store_the_old_order(pg)

    # The replayed dead letter's release, as the version before stored it.
    await world.store_old(OLD_RELEASE, "hold_release")
    [release] = await world.apply_stored()
    assert release == HoldRelease(order_id=ORDER_ID, hold=DeadLetterHold(seq=3))
    loaded = await orders.load(pg, ORDER_ID)
    assert loaded.snapshot is not None
    assert loaded.snapshot.holds == (ShipmentHold("ord_old-2"),)
    stored = json.loads(
        await pg.fetchval("SELECT actor_state::text FROM orders WHERE id = $1", ORDER_ID)
    )
    assert stored["holds"] == [{"kind": "shipment", "shipment_id": "ord_old-2"}]

    # Its delay was for want of a pickup (read from its words): a scan before pickup does
    # not end it, the first scan in the carrier's hands does.
    since = await world.last_event_seq()
    await world.tell(world.news("pre_transit"))
    await world.apply_stored()
    assert not any(isinstance(e, DelayEnded) for e in await world.events_since(since))
    world.clock.advance(3600)
    await world.tell(world.news("in_transit"))
    await world.apply_stored()
    assert DelayEnded in [type(e) for e in await world.events_since(since)]
    # The next scan's check has the key the version before gave such checks.
    keys = await pg.fetch(
        "SELECT key, kind FROM reminders WHERE order_id = $1 AND fired_at IS NULL ORDER BY due_at",
        ORDER_ID,
    )
    assert [tuple(r) for r in keys] == [
        ("ord_old:no_scan:ord_old-1:2", "no_scan"),
        ("ord_old:promise_check:ord_old-1", "promise_check"),
    ]

    # Four days without a scan: the check finds it late, and a scan ends that episode.
    world.clock.now = datetime(2027, 1, 19, 9, 1, tzinfo=UTC).timestamp()
    assert await world.reminders.rebuild() == 2
    assert await world.reminders.fire_due() == 1
    since = await world.last_event_seq()
    [due] = await world.apply_stored()
    assert isinstance(due, ReminderDue)
    assert (due.kind, due.scope) == (ReminderKind.NO_SCAN, ReminderScope("ord_old-1", 2))
    [detected] = [e for e in await world.events_since(since) if isinstance(e, DelayDetected)]
    assert (detected.episode, detected.cause) == (2, DelayCause.NO_SCAN)
    world.clock.advance(3600)
    await world.tell(world.news("in_transit"))
    await world.apply_stored()

    # The promise check the version before set fires, and finds the promise broken.
    world.clock.now = datetime(2027, 1, 21, 1, 0, tzinfo=UTC).timestamp()
    assert await world.reminders.fire_due() == 1
    since = await world.last_event_seq()
    [due] = await world.apply_stored()
    assert isinstance(due, ReminderDue)
    assert (due.kind, due.scope) == (ReminderKind.PROMISE_CHECK, ReminderScope("ord_old-1"))
    [detected] = [e for e in await world.events_since(since) if isinstance(e, DelayDetected)]
    assert (detected.episode, detected.cause) == (3, DelayCause.PROMISE_PASSED)
    loaded = await orders.load(pg, ORDER_ID)
    assert loaded.snapshot is not None
    [shipped, held] = loaded.snapshot.shipments
    assert (shipped.delayed, shipped.delay_cause) == (True, DelayCause.PROMISE_PASSED)
    assert held.status == "packed"

    # The whole history reads back: the old events in today's types.
    history = await world.events_since(0)
    assert history[:3] == [
        AttentionNeeded(
            at=datetime(2027, 1, 9, 9, 0, tzinfo=UTC),
            reason="no label for shipment ord_old-2: address refused",
            hold=ShipmentHold("ord_old-2"),
        ),
        DelayDetected(
            at=datetime(2027, 1, 11, 9, 0, tzinfo=UTC),
            shipment_id="ord_old-1",
            episode=1,
            reason="not picked up 30 hours after it shipped",
            cause=DelayCause.NOT_PICKED_UP,
        ),
        AttentionNeeded(
            at=datetime(2027, 1, 12, 9, 0, tzinfo=UTC),
            reason="message 3 dead-lettered after 5 deliveries",
            hold=DeadLetterHold(seq=3),
        ),
    ]
