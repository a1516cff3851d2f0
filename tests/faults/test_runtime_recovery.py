"""The runtime's own recovery paths against real Redis and PostgreSQL: two processes taking
the same new order at the same moment, the pump after a lost stream, claiming a large
pending list left by a consumer that died, and the age of the oldest unfinished entry."""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from typing import Any, cast

import redis.asyncio as aioredis

from actors.mail import Mail
from actors.order.actor import OrderTurns, Outcome, Outside
from actors.order.messages import CancelRequested, Message
from actors.ports.mail import Posted
from actors.ports.stream import DeadLetters
from actors.runtime import ActorRuntime, RuntimeSettings
from adapters.outages import is_outage
from adapters.platforms import generic, shopify
from adapters.postgres import mailbox
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.pool import connection, create_pool
from adapters.redis.streams import Streams
from daemon.intake import Intake
from tests.conftest import POSTGRES_DSN, add_products, runtime_keys
from tests.integration.daemon_harness import (
    eventually,
    generic_body,
    generic_headers,
    get,
    request,
    shopify_body,
)


async def _waiting_on_locks(pg: Any, count: int, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        waiting = await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE '%WITH given AS%'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} statements did not come to wait on the order's counter")


async def test_the_same_new_order_taken_by_two_processes_at_once_is_accepted_once(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    pools = [await create_pool(POSTGRES_DSN, pg_schema_name) for _ in range(2)]
    mails = [Mail(PostgresMailbox(pool), streams) for pool in pools]
    intakes = [Intake(pool, mail, calm_after_s=0) for pool, mail in zip(pools, mails, strict=True)]
    body = shopify_body(555, name="#555")
    order = shopify.parse(body, "orders/paid")
    order_id = order.order.id  # type: ignore[union-attr]
    try:
        # (The statement's text is longer than pg_stat_activity keeps: found by its start.)
        # The order's counter row, held by a third session: both statements take their
        # snapshot, find the order new, and wait here together. Then they race.
        async with connection(POSTGRES_DSN, pg_schema_name) as blocker:
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute("INSERT INTO order_seq (order_id, last) VALUES ($1, 1)", order_id)
            answers = [
                asyncio.create_task(
                    intake.accept(
                        source="shopify",
                        topic="orders/paid",
                        delivery_id=f"delivery-{n}",
                        event_id=f"event-{n}",
                        body=body,
                        decision=order,
                    )
                )
                for n, intake in enumerate(intakes)
            ]
            await _waiting_on_locks(pg, 2)
            await holding.rollback()
        statuses = sorted(answer.status for answer in await asyncio.gather(*answers))
    finally:
        for mail, pool in zip(mails, pools, strict=True):
            await mail.drain()
            await pool.close()
    assert statuses == [200, 202]
    paid = await pg.fetchval(
        "SELECT count(*) FROM mailbox WHERE order_id = $1 AND type = 'order_paid'", order_id
    )
    assert paid == 1
    # The order's numbers have no gap: the refused copy took none.
    assert await pg.fetchval("SELECT last FROM order_seq WHERE order_id = $1", order_id) == 1


async def _stored(pg: Any, count: int, orders: int = 50) -> list[Posted]:
    messages = [
        CancelRequested(order_id=f"o{n % orders}", reason="test", requested_by="test")
        for n in range(count)
    ]
    async with pg.transaction():
        return await mailbox.post(pg, messages)


async def test_the_pump_puts_each_stored_message_on_the_stream_once(
    pg: Any, pg_schema_name: str, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=2)
    mail = Mail(PostgresMailbox(pool), streams)
    try:
        for _ in range(4):
            await _stored(pg, 300)  # four batches never streamed (a crash, Redis away)
        pumped = [await mail.pump(older_than_s=0, limit=500) for _ in range(6)]
        await mail.drain()
    finally:
        await pool.close()
    assert sum(pumped) == 1200
    assert pumped[-1] == 0
    assert await redis_client.xlen(streams.stream) == 1200
    assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 0


async def test_the_pump_with_redis_away_streams_nothing_and_says_so(
    pg: Any, pg_schema_name: str, redis_prefix: str
) -> None:
    away = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=2)
    mail = Mail(PostgresMailbox(pool), Streams(away, runtime_keys(redis_prefix)))
    try:
        await _stored(pg, 10)
        try:
            await mail.pump(older_than_s=0)
            raise AssertionError("the pump hid that Redis was away")
        except aioredis.ConnectionError:
            pass  # the loop around it waits before trying again
    finally:
        await pool.close()
        await away.aclose()
    assert await pg.fetchval("SELECT count(*) FROM unstreamed") == 1


class _Applying:
    """Turns that apply every message once (the order's last number kept here)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.applied = 0

    async def apply(
        self, order_id: str, seq: int, message: Message, outside: Outside = nullcontext
    ) -> Outcome:
        if seq <= self.last.get(order_id, 0):
            return Outcome.REPEAT
        if seq > self.last.get(order_id, 0) + 1:
            return Outcome.EARLY
        self.last[order_id] = seq
        self.applied += 1
        return Outcome.APPLIED


async def _run_until(runtime: ActorRuntime, check: Any, within_s: float, what: str) -> None:
    """Run ``runtime`` until ``check`` holds (looked at every 20 ms), then stop it."""
    running = asyncio.create_task(runtime.run())
    deadline = time.monotonic() + within_s
    try:
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)
    finally:
        await runtime.stop(5)
        await running


async def test_a_dead_consumers_whole_pending_list_is_claimed(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    await streams.add(await _stored(pg, 3000, orders=3000))
    taken, _ = await streams.read("died", count=3000, block_ms=None)
    assert len(taken) == 3000
    turns = _Applying()
    runtime = ActorRuntime(
        streams=streams,
        turns=cast(OrderTurns, turns),
        dead_letters=cast(DeadLetters, None),  # nothing here is dead-lettered
        is_outage=is_outage,
        consumer="alive",
        # Pages of 100 scan at most 1,000 pending entries each: the cursor must be walked.
        settings=RuntimeSettings(
            claim_idle_ms=1, claim_count=100, max_buffered=500, janitor_every_s=3600
        ),
    )

    async def all_applied() -> bool:
        summary: Any = await redis_client.xpending(streams.stream, "orderd")
        return turns.applied == 3000 and summary["pending"] == 0

    await _run_until(runtime, all_applied, 60, "every claimed entry applied and acknowledged")


async def test_the_oldest_unfinished_entry_is_found_pending_or_not_yet_read(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    assert await streams.oldest_unfinished_ms() is None
    first = await streams.add(await _stored(pg, 2))
    await streams.read("c", count=1, block_ms=None)  # the first is pending, the second unread
    assert await streams.oldest_unfinished_ms() == int(first[0].split("-")[0])
    await streams.ack([first[0]])
    assert await streams.oldest_unfinished_ms() == int(first[1].split("-")[0])
    await streams.read("c", count=1, block_ms=None)
    await streams.ack([first[1]])
    assert await streams.oldest_unfinished_ms() is None


async def test_a_restarted_consumer_runs_all_of_its_own_pending_entries_first(
    pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    streams = Streams(redis_client, runtime_keys(redis_prefix))
    await streams.ensure_group()
    await streams.add(await _stored(pg, 700, orders=700))
    await streams.read("same", count=700, block_ms=None)  # then the process was killed
    turns = _Applying()
    runtime = ActorRuntime(
        streams=streams,
        turns=cast(OrderTurns, turns),
        dead_letters=cast(DeadLetters, None),  # nothing here is dead-lettered
        is_outage=is_outage,
        consumer="same",
        # No claims: only its own pending list brings the entries back.
        settings=RuntimeSettings(read_count=100, claim_idle_ms=3_600_000, janitor_every_s=3600),
    )

    async def all_applied() -> bool:
        return turns.applied == 700

    await _run_until(runtime, all_applied, 30, "every own pending entry to be applied")


async def test_readiness_fails_while_an_order_is_stuck_and_comes_back_when_it_moves(
    make_daemon: Any,
    pg: Any,
    run_orderd: Any,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    await add_products(pg, "A-1")
    assert run_orderd("stock", "set", "A-1", "5").returncode == 0
    body = generic_body("STUCK1", [("A-1", 1)])
    decision = generic.parse(body)
    order_id = decision.order.id  # type: ignore[union-attr]
    # Another process holds the order and never lets go: its message stays pending.
    lease = runtime_keys(redis_prefix).lease(order_id)
    await redis_client.set(lease, "f" * 16, px=600_000)
    daemon = make_daemon(
        ORDERD_RUNTIME__MAX_PENDING_AGE_S="1", ORDERD_RUNTIME__CLAIM_IDLE_MS="600000"
    )
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

    async def not_ready() -> bool:
        return get(f"{daemon.url}/readyz")[0] == 503

    await eventually(not_ready, within_s=30, what="readiness to fail for the stuck order")
    checks = get(f"{daemon.url}/readyz")[1]["checks"]
    assert checks["consumers"].startswith("the oldest unfinished message is ")
    metrics = get(f"{daemon.url}/metrics")[1]
    age = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("orderd_stream_oldest_pending_age_seconds{")
    )
    assert age > 1
    stuck = run_orderd("order", "list", "--stuck", env={"ORDERD_RUNTIME__MAX_PENDING_AGE_S": "1"})
    assert f"{order_id}  not created [1 message(s) not applied since" in stuck.stdout

    await redis_client.delete(lease)  # the other process is gone: the order moves

    async def ready_and_taken() -> bool:
        state = await pg.fetchval("SELECT state FROM orders WHERE id = $1", order_id)
        return state == "fulfillment_requested" and get(f"{daemon.url}/readyz")[0] == 200

    await eventually(ready_and_taken, within_s=30, what="the order to move and readiness back")
