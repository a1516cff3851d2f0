"""The order stream's housekeeping and the durable reminders, against real Redis and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from actors.mail import Mail
from actors.order.messages import CancelRequested, ReminderDue, decode_message
from actors.order.reminder import ReminderKind
from actors.ports.mail import Posted
from actors.reminders import Reminders
from adapters.postgres import mailbox
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.pool import create_pool
from adapters.postgres.reminders import PostgresReminders
from adapters.redis.reminders import RedisSchedule
from adapters.redis.streams import Streams
from tests.conftest import POSTGRES_DSN, Clock, runtime_keys


async def stored(pg: Any, count: int) -> list[Posted]:
    messages = [
        CancelRequested(order_id=f"o{n % 3}", reason="test", requested_by="test")
        for n in range(count)
    ]
    async with pg.transaction():
        return await mailbox.post(pg, messages)


async def test_messages_are_numbered_per_order(pg: Any) -> None:
    posted = await stored(pg, 7)
    assert [(p.order_id, p.seq) for p in posted] == [
        ("o0", 1), ("o1", 1), ("o2", 1), ("o0", 2), ("o1", 2), ("o2", 2), ("o0", 3),
    ]  # fmt: skip
    more = await stored(pg, 1)
    assert (more[0].order_id, more[0].seq) == ("o0", 4)


async def test_a_batch_goes_on_the_stream_in_order_with_every_field(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    messages = [
        CancelRequested(order_id=f"o{n % 7}", reason=f"réason ✓ {n}", requested_by="test")
        for n in range(600)
    ]
    async with pg.transaction():
        posted = await mailbox.post(pg, messages)
    ids = await streams.add(posted)
    entries: Any = await redis_client.xrange(streams.stream)
    assert [entry_id.decode() for entry_id, _ in entries] == ids
    assert [
        (f[b"order"].decode(), int(f[b"seq"]), f[b"msg"], int(f[b"mid"])) for _, f in entries
    ] == [(p.order_id, p.seq, p.body, p.id) for p in posted]
    read, _ = await streams.read("c1", count=1000, block_ms=None)
    assert [decode_message(e.body) for e in read] == messages


async def test_trimming_keeps_every_entry_still_pending(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    await streams.add(await stored(pg, 10))
    first, _ = await streams.read("c1", count=4, block_ms=None)
    second, _ = await streams.read("c2", count=4, block_ms=None)
    await streams.ack([e.id for e in first])  # c1 done; c2's four still pending
    await streams.trim()
    left: Any = await redis_client.xrange(streams.stream)
    left_ids = [entry_id.decode() for entry_id, _ in left]
    assert [e.id for e in second] == left_ids[:4]
    assert len(left) == 6  # c2's pending four and the two never delivered


async def test_a_consumer_with_pending_entries_is_never_forgotten(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    await streams.add(await stored(pg, 2))
    await streams.read("busy", count=1, block_ms=None)
    await streams.read("idle", count=1, block_ms=None, own_pending=True)
    assert await streams.forget_idle_consumers(idle_ms=0) == ["idle"]
    consumers = await redis_client.xinfo_consumers(streams.stream, "orderd")
    assert [c["name"].decode() for c in consumers] == ["busy"]


async def test_idle_entries_of_a_dead_consumer_are_claimed_with_their_delivery_count(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    await streams.add(await stored(pg, 3))
    taken, _ = await streams.read("dead", count=3, block_ms=None)
    claimed, cursor = await streams.claim_idle("alive", min_idle_ms=0)
    assert cursor == "0-0"  # the whole pending list was scanned
    assert [e.id for e in claimed] == [e.id for e in taken]
    assert {e.deliveries for e in claimed} == {2}


async def test_a_due_reminder_is_sent_to_its_order_once(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str, clock: Clock
) -> None:
    keys = runtime_keys(redis_prefix)
    streams = Streams(redis_client, keys)
    await streams.ensure_group()
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=2)
    mail = Mail(PostgresMailbox(pool), streams)
    reminders = Reminders(
        store=PostgresReminders(pool),
        schedule=RedisSchedule(redis_client, keys),
        mail=mail,
        clock=clock,
    )
    due = datetime.fromtimestamp(clock.now, UTC) + timedelta(minutes=5)
    await pg.execute(
        """
        INSERT INTO reminders (key, order_id, kind, due_at) VALUES
            ('o1:cancel_backorder', 'o1', 'cancel_backorder', $1),
            ('o1:delivery_check:1', 'o1', 'delivery_check', $1)
        """,
        due,
    )
    assert await reminders.rebuild() == 2
    assert await reminders.fire_due() == 0  # not yet
    clock.advance(301)
    # A kind no order of this version reads is fired without a message.
    assert await reminders.fire_due() == 1
    assert await reminders.fire_due() == 0
    [entry], _ = await streams.read("c", count=10, block_ms=None)
    message = decode_message(entry.body)
    assert isinstance(message, ReminderDue)
    assert (message.order_id, message.kind, message.key, message.scope) == (
        "o1", ReminderKind.CANCEL_BACKORDER, "o1:cancel_backorder", None,
    )  # fmt: skip
    assert await redis_client.zcard(keys.reminders) == 0
    assert await pg.fetchval("SELECT bool_and(fired_at IS NOT NULL) FROM reminders") is True
    await mail.drain()
    await pool.close()


async def test_messages_left_off_the_stream_are_streamed_by_the_pump(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    keys = runtime_keys(redis_prefix)
    pool = await create_pool(POSTGRES_DSN, pg_schema_name)
    unreachable = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    try:
        away = Mail(PostgresMailbox(pool), Streams(unreachable, keys))
        messages = [
            CancelRequested(order_id=f"o{n}", reason="test", requested_by="test") for n in range(3)
        ]
        posted = await away.send(messages)  # stored; the stream could not be reached
        assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 1
        mail = Mail(PostgresMailbox(pool), Streams(redis_client, keys))
        assert await mail.pump(older_than_s=0) == 3
        await mail.drain()
        assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 0
        entries: Any = await redis_client.xrange(keys.orders_stream)
        assert [int(fields[b"mid"]) for _, fields in entries] == [p.id for p in posted]
        assert await mail.pump(older_than_s=0) == 0
        # Streamed at once, a batch leaves nothing behind for the pump.
        await mail.send(messages[:1])
        await mail.drain()
        assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 0
    finally:
        await unreachable.aclose()
        await pool.close()


async def test_after_redis_lost_the_stream_every_unapplied_message_goes_on_it_again(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    posted = await stored(pg, 6)  # o0, o1, o2 twice each
    # Streamed, then lost with Redis, with its "streamed" note still on its way.
    late_note = await pg.fetchval("SELECT id FROM unstreamed")
    await pg.execute("INSERT INTO orders (id, last_seq) VALUES ('o0', 2), ('o1', 1)")
    assert await mailbox.restream_unapplied(pg, batch_size=2) == 3
    assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 2
    # Another process finding the group gone rebuilds the same, in place of the first.
    assert await mailbox.restream_unapplied(pg, batch_size=2) == 3
    assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 2
    # The note arriving late takes nothing the rebuild put on the stream's way.
    await mailbox.streamed(pg, [late_note])
    assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 2
    pool = await create_pool(POSTGRES_DSN, pg_schema_name)
    try:
        mail = Mail(PostgresMailbox(pool), Streams(redis_client, runtime_keys(redis_prefix)))
        assert await mail.pump(older_than_s=60) == 3  # taken at once, however recent
        await mail.drain()
    finally:
        await pool.close()
    entries: Any = await redis_client.xrange(runtime_keys(redis_prefix).orders_stream)
    again = {(fields[b"order"].decode(), int(fields[b"seq"])) for _, fields in entries}
    assert again == {("o1", 2), ("o2", 1), ("o2", 2)}
    assert {(p.order_id, p.seq) for p in posted} > again
