"""Floods of orders while things break: the daemon killed again and again, Redis flushed or
restarted empty, PostgreSQL away for half a minute, two processes handed the same orders,
SIGTERM in the middle of it all. Each test has a Redis and a PostgreSQL of its own, and
judges the outcome from the durable record (tests/faults/history.py), never from logs.

Every order takes one unit of a hot SKU stocked for a quarter of them, and one unit of a
plentiful one: a quarter end with the warehouse (fulfillment_requested, held there by the
harness's sandbox delay), the rest wait for the hot SKU (backordered).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

from tests.faults.flood import Flood, Job, Lines, cancelled, paid, single_jobs
from tests.faults.history import (
    PASSING,
    PASSING_SHIPPED,
    RESTING,
    RESTING_SHIPPED,
    SHIPPED,
    History,
    Settling,
)
from tests.faults.world import World
from tests.integration.daemon_harness import Daemon

HOT = "HOT-1"
PLENTY = ("U-1", "U-2")
# The harness's grace for running turns at SIGTERM (ORDERD_DAEMON__SHUTDOWN_GRACE_S).
GRACE_S = 5.0
# Beyond the grace: the background loops finish their batch, connections close.
MARGIN_S = 5.0


def hot_orders(prefix: str, count: int) -> list[tuple[str, Lines]]:
    return [(f"{prefix}{n:05d}", [(HOT, 1), (PLENTY[n % len(PLENTY)], 1)]) for n in range(count)]


def stock_for(count: int, served: int | None = None) -> dict[str, int]:
    """The hot SKU for ``served`` of ``count`` orders (a quarter); the others for all."""
    return {HOT: count // 4 if served is None else served, **{sku: count for sku in PLENTY}}


def shared_out(hot: int, taken: int) -> dict[str, int]:
    """The states of ``taken`` orders once ``hot`` units of the hot SKU are shared out."""
    served = min(hot, taken)
    states = {"fulfillment_requested": served, "backordered": taken - served}
    return {state: n for state, n in states.items() if n}


async def settled(
    world: World, flood: Flood, *, shipping: bool = False
) -> tuple[Settling, History, str]:
    """Let the orders the flood got taken settle (60 s at most), then check the record;
    also the story to tell if an assertion fails. ``shipping``: the warehouse packs at
    once, so the orders served go on to their labels and ship."""
    passing, resting = (PASSING_SHIPPED, RESTING_SHIPPED) if shipping else (PASSING, RESTING)
    settling = await world.settle(len(flood.taken_refs()), within_s=60, passing=passing)
    history = await world.flood_history(flood, stock_for(len(flood.refs())), resting=resting)
    return settling, history, await world.story(flood, settling, history)


def assert_sound(
    flood: Flood, settling: Settling, history: History, told: str, *, states: bool = True
) -> None:
    """Every order answered and taken exactly once, each final or waiting, nothing left
    unapplied, and the hot SKU shared out exactly: no unit oversold, none forgotten."""
    count = len(flood.refs())
    assert flood.unanswered() == [], told
    assert flood.accepted_twice() == [], told
    assert history.lost == [], told
    assert history.stranded == {}, told
    assert settling.settled, told
    assert history.problems() == [], told
    assert history.orders == count, told
    if states:
        assert history.states == shared_out(count // 4, count), told


def running(daemon: Daemon) -> bool:
    return daemon.process is not None and daemon.process.poll() is None


async def terminated(world: World, daemon: Daemon) -> tuple[int | None, float]:
    """SIGTERM, then the exit code (None: still running well past its grace) and how
    long the daemon took to exit."""
    world.note("SIGTERM")
    stopped = time.monotonic()
    daemon.signal(signal.SIGTERM)
    try:
        code: int | None = await asyncio.to_thread(daemon.wait, GRACE_S + MARGIN_S + 20)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - stopped


async def flood_under_way(
    world: World, count: int, name: str
) -> tuple[Daemon, Flood, asyncio.Task[None]]:
    """A daemon taking a flood of ``count`` orders, a third of them accepted already."""
    await world.prepare(stock_for(count))
    daemon = world.daemon(name)
    flood = Flood(single_jobs(hot_orders(name.upper(), count), [daemon.url]), within_s=90)
    sending = asyncio.create_task(flood.run())
    if not await flood.wait_accepted(count // 3, within_s=30):
        sending.cancel()
        raise AssertionError(f"a third of the flood was not accepted in 30 s: {flood.summary()}")
    return daemon, flood, sending


@pytest.mark.timeout(120)
async def test_a_flood_without_faults_is_taken_whole(world: World) -> None:
    # The harness checked on its own: with nothing breaking, the record is exact.
    count = 600
    await world.prepare(stock_for(count))
    daemon = world.daemon("d1")
    flood = Flood(single_jobs(hot_orders("N", count), [daemon.url]))
    await flood.run()
    settling, history, told = await settled(world, flood)
    assert flood.answers() == {"202": count}, told
    assert_sound(flood, settling, history, told)


@pytest.mark.timeout(150)
async def test_kill_9_eight_times_in_a_flood_loses_nothing_and_oversells_nothing(
    world: World,
) -> None:
    # 200 orders go all the way to a label; the rest queue for the hot SKU.
    count, kills, served = 2000, 8, 200
    await world.prepare(stock_for(count, served))
    # Restarted the way systemd restarts it: the same consumer name, on the same port. The
    # warehouse packs at once, so kills land in label purchases too.
    daemon = world.daemon(
        "same-name", ORDERD_WMS__SANDBOX_DELAY_S="0", ORDERD_WMS__SANDBOX_MISPICK_RATE="0"
    )
    flood = Flood(single_jobs(hot_orders("K", count), [daemon.url]), within_s=100)
    sending = asyncio.create_task(flood.run())
    killed = 0
    for k in range(1, kills + 1):
        if not await flood.wait_accepted(k * count // (kills + 2), within_s=30):
            break
        world.note(f"kill -9 number {k}")
        await asyncio.to_thread(daemon.kill)  # SIGKILL: no drain, nothing acknowledged
        killed += 1
        await world.start(daemon)
    await asyncio.wait_for(sending, 110)
    assert killed == kills, flood.summary()
    settling, history, told = await settled(world, flood, shipping=True)
    shipped = sum(n for state, n in history.states.items() if state in SHIPPED)
    # Every order served shipped with one label; the rest wait for the hot SKU.
    assert (shipped, history.labels, history.labels_twice) == (served, served, []), told
    assert history.states.get("backordered") == count - served, told
    assert_sound(flood, settling, history, told, states=False)


async def lost_nothing_to_redis(
    world: World, daemon: Daemon, flood: Flood, sending: asyncio.Task[None]
) -> None:
    """After Redis lost everything: the flood done, the same daemon still running, no
    message dead-lettered for the loss, and the record sound."""
    await asyncio.wait_for(sending, 100)
    settling, history, told = await settled(world, flood)
    assert running(daemon), f"the daemon died\n{told}"
    assert history.dead_letters == 0, told
    assert_sound(flood, settling, history, told)


@pytest.mark.timeout(120)
async def test_redis_flushed_mid_flood_loses_nothing_and_dead_letters_nothing(
    world: World,
) -> None:
    daemon, flood, sending = await flood_under_way(world, 1200, "f")
    client = aioredis.Redis.from_url(world.redis.url)
    try:
        world.note("FLUSHALL")
        await client.flushall()  # stock, reservations, stream, group, scripts: all gone
    finally:
        await client.aclose()
    await lost_nothing_to_redis(world, daemon, flood, sending)


@pytest.mark.timeout(120)
async def test_redis_restarted_empty_mid_flood_loses_nothing_and_dead_letters_nothing(
    world: World,
) -> None:
    daemon, flood, sending = await flood_under_way(world, 1200, "r")
    world.note("Redis killed")
    await asyncio.to_thread(world.redis.stop)  # killed: nothing saved
    # The outage itself: long enough for turns and the stream to meet Redis away.
    await asyncio.sleep(5)
    await asyncio.to_thread(world.redis.start)  # empty: no stock, stream, group or scripts
    world.note("Redis started empty")
    await lost_nothing_to_redis(world, daemon, flood, sending)


@pytest.mark.timeout(150)
async def test_postgres_away_30_s_mid_flood_answers_503_and_the_daemon_carries_on(
    world: World,
) -> None:
    daemon, flood, sending = await flood_under_way(world, 1200, "p")
    world.note("PostgreSQL stopping (fast)")
    await asyncio.to_thread(world.postgres.stop, "fast")
    down_at = time.monotonic()
    world.note("PostgreSQL stopped")
    # The outage itself: thirty seconds without a database while the flood keeps coming.
    await asyncio.sleep(30)
    up_at = time.monotonic()
    await asyncio.to_thread(world.postgres.start)
    world.note("PostgreSQL started")
    await asyncio.wait_for(sending, 90)
    settling, history, told = await settled(world, flood)
    while_down = flood.answers(since=down_at, until=up_at)
    others = {answer: n for answer, n in while_down.items() if answer not in ("503", "200", "202")}
    assert (while_down["503"] > 0, others) == (True, {}), f"while away: {while_down}\n{told}"
    assert running(daemon), f"the daemon died\n{told}"
    assert_sound(flood, settling, history, told)
    code, took = await terminated(world, daemon)
    assert (code, took <= GRACE_S + MARGIN_S) == (0, True), f"exit {code} after {took:.1f} s"


def _pairs(refs: Sequence[tuple[str, Lines]], urls: Sequence[str], cancel_every: int) -> list[Job]:
    """Each order delivered to two daemons at once with two delivery ids (a platform
    retrying a delivery it thinks was lost); every ``cancel_every``-th is then cancelled
    through the third daemon."""
    jobs: list[Job] = []
    for n, (ref, lines) in enumerate(refs):
        first, second, third = (urls[(n + i) % len(urls)] for i in range(3))
        stages = [[paid(ref, lines, first, f"{ref}-a"), paid(ref, lines, second, f"{ref}-b")]]
        if n % cancel_every == 0:
            stages.append([cancelled(ref, lines, third)])
        jobs.append(stages)
    return jobs


@pytest.mark.timeout(120)
async def test_the_same_orders_at_two_of_three_processes_are_taken_once(world: World) -> None:
    count, cancel_every = 600, 4
    await world.prepare(stock_for(count))
    daemons = [world.daemon(name, start=False) for name in ("p1", "p2", "p3")]
    await asyncio.gather(*(world.start(d) for d in daemons))
    flood = Flood(_pairs(hot_orders("D", count), [d.url for d in daemons], cancel_every))
    await flood.run()
    settling, history, told = await settled(world, flood)
    assert flood.unanswered() == [], told
    # Per order: one delivery accepted, the other recognised as the same order.
    once = [(200, "duplicate"), (202, "accepted")]
    wrong = {ref: a for ref, a in flood.final_answers(paid=True).items() if sorted(a) != once}
    assert wrong == {}, f"{len(wrong)} answered otherwise: {list(wrong.items())[:5]}\n{told}"
    assert history.problems() == [], told
    assert settling.settled, told
    cancels = len(range(0, count, cancel_every))
    # What the cancelled orders held goes to orders waiting for it.
    left = shared_out(count // 4, count - cancels)
    assert (history.orders, history.states) == (count, {"cancelled": cancels, **left}), told


@pytest.mark.timeout(120)
async def test_sigterm_in_a_flood_exits_in_its_grace_and_the_next_process_finishes(
    world: World,
) -> None:
    daemon, flood, sending = await flood_under_way(world, 1500, "same")
    code, took = await terminated(world, daemon)
    assert (code, took <= GRACE_S + MARGIN_S) == (0, True), f"exit {code} after {took:.1f} s"
    await world.start(daemon)  # the next process, as systemd starts it: the same name
    await asyncio.wait_for(sending, 90)
    settling, history, told = await settled(world, flood)
    assert_sound(flood, settling, history, told)
