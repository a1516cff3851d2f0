"""``orderd run``: the daemon, and the one place where its parts are put together.

Start-up: settings, PostgreSQL (schema checked), Redis, the allocation core (Redis rebuilt
from the ledger if it does not hold this database), the actor runtime, reminders, the
pump, and the HTTP server; READY=1 goes to systemd only when all of them are up.

Shutdown, on SIGTERM or SIGINT: STOPPING=1, webhooks answer 503, the runtime stops
reading and gives running turns the grace period; what is unfinished stays pending in
the consumer group for the next process. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from actors.errors import OrderdError
from actors.fulfillment import Dispatcher
from actors.loops import drain_repeatedly
from actors.mail import Mail
from actors.notifier import Outbox
from actors.order.actor import OrderTurns
from actors.order.outbox import CustomerMessages
from actors.ports.mail import Posted
from actors.ports.stream import Entry
from actors.ports.turns import Turn
from actors.reminders import Reminders
from actors.runtime import ActorRuntime
from actors.runtime import RuntimeSettings as ActorSettings
from actors.stock_push import StockPusher
from actors.storefront_sender import StorefrontSender
from adapters.outages import is_outage
from adapters.postgres import mailbox
from adapters.postgres.dead_letters import PostgresDeadLetters
from adapters.postgres.fulfillment import PostgresRequests
from adapters.postgres.mailbox import PostgresMailbox
from adapters.postgres.notifications import PostgresNotifications
from adapters.postgres.orders import PostgresOrders
from adapters.postgres.platform_calls import PostgresPlatformCalls
from adapters.postgres.platform_stock import PostgresPushedLevels
from adapters.postgres.reminders import PostgresReminders
from adapters.redis.client import FAILURES
from adapters.redis.leases import Leases, SoleLease
from adapters.redis.reminders import RedisSchedule
from adapters.redis.streams import (
    drop_streams_of,
    forget_running,
    laid_out_before,
    order_stream,
    partition_streams,
    record_layout,
    running_otherwise,
    seen_running,
)
from daemon import logs, shipping, systemd
from daemon.http import Context, build_app
from daemon.intake import Intake, Tracked
from daemon.metrics import Metrics
from daemon.resources import open_resources
from daemon.runtimes import Runtimes
from daemon.settings import Settings

log = logging.getLogger("orderd.daemon")

_FINISH_S = 10.0  # how long the background loops get to finish their batch at shutdown
# A process not seen for this long is taken to have stopped (it notes itself every third).
_SEEN_WITHIN_MS = 15_000
# Collect the youngest objects after this many allocations, not CPython's 700: every
# webhook and turn allocates hundreds of short-lived objects, nearly none in cycles.
_GC_YOUNG = 20_000


def _stock_push_lease_ms(settings: Settings) -> int:
    """How long the process pushing stock holds it without a pass: longer than a pass of
    three calls cut off at the platforms' timeout, so another process takes over only
    from one that stopped."""
    webhooks = settings.webhooks
    pushing = [p for p in (webhooks.shopify, webhooks.woocommerce) if p.push_stock]
    timeout = max([p.timeout_s for p in pushing] or [0.0])
    return int((webhooks.stock_every_s + 3 * timeout + 5) * 1000)


class Daemon:
    """The running process: its parts, their tasks, and how it stops."""

    def __init__(
        self,
        settings: Settings,
        resources: Any,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = observer = metrics or Metrics()
        self.clock = clock
        pool, redis, allocator = resources.pool, resources.redis, resources.allocator
        self.keys = keys = settings.redis.runtime_keys()
        self.redis = redis
        # One stream per partition, each read by a runtime of its own.
        self.partitions = partition_streams(redis, keys, elsewhere=self.stream_elsewhere)
        self.mail = Mail(PostgresMailbox(pool), order_stream(self.partitions, keys))
        system = shipping.warehouse_system(settings)
        self.dispatcher = Dispatcher(
            requests=PostgresRequests(pool),
            mail=self.mail,
            warehouse=system,
            retry_max_s=settings.wms.retry_max_s,
            # Longer than any delivery can take, so a live sender's claim never runs out.
            lease_s=settings.wms.timeout_s * 3 + 30,
            clock=clock,
            observer=observer,
        )
        carriers = shipping.carriers(settings, pool, clock)
        self.sandbox = shipping.sandbox(carriers)
        self.shipping = shipping.shipping(settings, pool, carriers, system, observer)
        self.outbox = Outbox(
            notifications=PostgresNotifications(pool),
            mail=self.mail,
            senders=shipping.senders(settings),
            settings=shipping.outbox_settings(settings),
            clock=clock,
            observer=observer,
        )
        webhooks = settings.webhooks
        writing = [w for w in (webhooks.shopify, webhooks.woocommerce) if w.write_back]
        self.storefronts = StorefrontSender(
            calls=PostgresPlatformCalls(pool),
            platforms=shipping.storefronts(settings),
            # A delivery is up to three calls, each cut off after the platform's timeout_s:
            # a live sender's claim never runs out, and a dead one's does soon after.
            lease_s=3 * max([w.timeout_s for w in writing] or [0.0]) + 5,
            clock=clock,
            observer=observer,
        )
        self.stock_push = StockPusher(
            figures=allocator,
            pushed=PostgresPushedLevels(pool),
            platforms=shipping.inventories(settings),
            lease=SoleLease(redis, keys.stock_push, lease_ms=_stock_push_lease_ms(settings)),
        )
        self.feedback_key = ""  # read from the database at start when none is configured
        messages = CustomerMessages(
            settings=shipping.message_settings(settings),
            feedback_secret=lambda: self.feedback_secrets()[0],
        )
        schedule = RedisSchedule(redis, keys)
        self.turns = turns = OrderTurns(
            orders=PostgresOrders(pool, allocator.epochs),
            leases=Leases(redis, keys, lease_ms=settings.runtime.lease_ms),
            schedule=schedule,
            stock=allocator,
            rules=shipping.rules(settings),
            clock=clock,
            shipping=self.shipping,
            messages=messages,
            on_saved=self.saved,
        )
        self.consumer = consumer = (
            settings.daemon.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        )
        intake = Intake(pool, self.mail)
        # The turns running at once are shared out among the partitions' runtimes.
        share = max(1, settings.runtime.max_turns // keys.partitions)
        self.runtime = Runtimes(
            [
                ActorRuntime(
                    streams=streams,
                    turns=turns,
                    dead_letters=PostgresDeadLetters(pool),
                    is_outage=is_outage,
                    consumer=consumer,
                    settings=ActorSettings(
                        read_count=settings.runtime.read_count,
                        max_deliveries=settings.runtime.max_deliveries,
                        claim_idle_ms=settings.runtime.claim_idle_ms,
                        max_turns=share,
                    ),
                    on_group_lost=self.rebuild_backlog,
                    on_gap=self.restream_order,
                    pressed=intake.pressed,
                    observer=observer,
                )
                for streams in self.partitions
            ]
        )
        self.reminders = Reminders(
            store=PostgresReminders(pool), schedule=schedule, mail=self.mail, clock=clock
        )
        self.context = Context(
            settings=settings,
            pool=pool,
            redis=redis,
            intake=intake,
            allocator=allocator,
            mail=self.mail,
            ready=self.ready,
            metrics=self.exposition,
            feedback_secrets=self.feedback_secrets,
            clock=clock,
        )
        self.pool = pool
        self.stopping = asyncio.Event()

    def ready(self) -> str:
        """ "ok" while the consumers run and orders move: the oldest unfinished message on
        the stream is younger than ``[runtime] max_pending_age_s``; else why not. An intake
        process runs no consumers: it is ready once it serves."""
        if not self.actors_here:
            return "ok"
        if not self.runtime.reading:
            return "not running"
        oldest, bound = self.runtime.oldest_pending_s, self.settings.runtime.max_pending_age_s
        if oldest >= bound:
            return f"the oldest unfinished message is {oldest:.0f} s old (bound {bound:.0f} s)"
        return "ok"

    @property
    def actors_here(self) -> bool:
        return self.settings.daemon.role in ("all", "actors")

    @property
    def http_here(self) -> bool:
        return self.settings.daemon.role in ("all", "intake")

    async def saved(self, told: Sequence[Posted], saved: Sequence[Turn]) -> None:
        """After turns are saved: stream what orders told themselves, wake the senders."""
        await self.mail.stream(told)
        # Requests due later (the sandbox's picking time) are found by the dispatcher's tick.
        if any(t.requests or t.resends for t in saved) and self.dispatcher.warehouse.delay_s == 0:
            self.dispatcher.wake()
        if any(t.notifications for t in saved):
            self.outbox.wake()
        if any(t.platform for t in saved):
            self.storefronts.wake()

    def feedback_secrets(self) -> list[str]:
        """Keys of rating links: the configured ones, else the database's own."""
        configured = self.settings.feedback
        keys = [k for k in (configured.secret, *configured.previous_secrets) if k]
        return keys or [self.feedback_key]

    async def sandbox_tracking(self) -> None:
        """The sandbox carrier's scans, sent the way a carrier's webhook sends them."""
        sandbox = self.sandbox
        assert sandbox is not None  # started only with the sandbox carrier enabled
        while not self.stopping.is_set():
            try:
                for quote_id, count, next_scan_at, update in await sandbox.news():
                    answer = await self.context.intake.accept(
                        source="sandbox",
                        topic="tracking",
                        delivery_id=update.event_id or f"{update.tracking_number}:{count}",
                        event_id=None,
                        body=msgspec.json.encode(update),
                        decision=Tracked(update),
                    )
                    if answer.status < 300:
                        await sandbox.told(quote_id, count, next_scan_at)
            except Exception as exc:
                log.warning("sandbox tracking failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def close(self) -> None:
        # Stopped: another layout may start now without waiting for this one's note to age.
        with contextlib.suppress(*FAILURES):
            await forget_running(self.redis, self.keys, self.consumer)
        await self.turns.drain()
        await self.dispatcher.close()
        await self.outbox.close()
        await self.storefronts.close()
        await self.stock_push.close()
        await self.shipping.close()

    async def rebuild_backlog(self) -> None:
        """Redis lost the stream: stream again every stored message not yet applied."""
        async with self.pool.acquire() as conn:
            count = await mailbox.restream_unapplied(conn)
        await self.reminders.rebuild()
        log.warning("stream rebuilt from PostgreSQL: %d message(s) to stream again", count)

    async def stream_elsewhere(self, entry: Entry) -> None:
        """An entry read in a partition its order is not in (added under another layout):
        the order's messages not applied, up to it, streamed again into its own."""
        count = await self.mail.restream_order(entry.order_id, entry.seq + 1)
        log.warning(
            "order %s: a message found in another partition's stream, %d streamed again",
            entry.order_id,
            count,
        )

    async def restream_order(self, order_id: str, before_seq: int) -> None:
        count = await self.mail.restream_order(order_id, before_seq)
        if count:
            log.warning(
                "order %s waited for %d earlier message(s) nobody had: streamed again",
                order_id,
                count,
            )

    async def exposition(self) -> bytes:
        """What ``GET /metrics`` answers (:mod:`daemon.metrics`)."""
        return await self.metrics.exposition(
            pool=self.pool,
            backlog=self.backlog if self.actors_here else None,
            webhooks=self.context.intake.outcomes,
            answers=self.context.answers,
            now=datetime.fromtimestamp(self.clock(), UTC),
            put_off=self.runtime.outages,
            active=self.runtime.active_actors,
        )

    async def backlog(self) -> dict[str, float]:
        """The group's backlog over every partition of the stream."""
        found = await asyncio.gather(*(p.backlog() for p in self.partitions))
        return {
            "lag": sum(f["lag"] for f in found),
            "pending": sum(f["pending"] for f in found),
            "oldest_pending_age_seconds": round(self.runtime.oldest_pending_s, 3),
        }

    async def lay_out_streams(self) -> None:
        """The groups on every partition's stream; and when the stream was laid out
        otherwise before (another number of partitions, or tagged for a cluster), every
        message not yet applied streamed again into this layout, and the old streams
        deleted (the messages are in PostgreSQL; repeats are recognised)."""
        now_ms = int(time.time() * 1000)
        others = await running_otherwise(self.redis, self.keys, now_ms, _SEEN_WITHIN_MS)
        if others:
            # Two layouts at once would read different streams and take different leases.
            raise OrderdError(
                f"orderd processes run with another layout of the stream ({', '.join(others)}"
                f"; this one: {self.keys.layout}): stop every process before changing "
                "[redis] stream_partitions or cluster"
            )
        await seen_running(self.redis, self.keys, self.consumer, now_ms)
        for streams in self.partitions:
            await streams.ensure_group()
        was = await laid_out_before(self.redis, self.keys)
        if was is None:
            await record_layout(self.redis, self.keys)
            return
        log.warning("the stream was laid out as %r, now %r", was, self.keys.layout)
        await self.rebuild_backlog()
        await record_layout(self.redis, self.keys)
        dropped = await drop_streams_of(self.redis, self.keys, was)
        if dropped:
            log.warning("streams of the earlier layout deleted: %s", ", ".join(dropped))

    async def announce(self) -> None:
        """Tell the others, every few seconds, that this process runs, with its layout."""
        while not self.stopping.is_set():
            try:
                await seen_running(self.redis, self.keys, self.consumer, int(time.time() * 1000))
            except Exception as exc:
                log.warning("could not note this process as running: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), _SEEN_WITHIN_MS / 3000)

    async def pump(self) -> None:
        """Stream what was stored but not streamed (a crash in between, Redis away)."""
        await drain_repeatedly(
            self.mail.pump, self.stopping, every_s=1.0, failed="pump failed", log=log
        )

    async def watchdog(self, every_s: float) -> None:
        """WATCHDOG=1 while the event loop runs and the runtime keeps reading."""
        stale_after = max(every_s * 4, 10.0)
        while not self.stopping.is_set():
            # Without actors here, a running loop is the progress there is.
            moving = time.monotonic() - self.runtime.last_progress < stale_after
            if moving or not self.actors_here:
                systemd.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), every_s)


def settle_memory() -> None:
    """Once started: what startup made (modules, settings, caches) lives as long as the
    process, so the collector stops walking it, and it runs less often. Measured with
    bench/intake.py, collections took a tenth of the daemon's CPU time before this, and
    under a fiftieth after."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, older, oldest)


def scaled(clock: Callable[[], float], scale: float, offset_s: float = 0.0) -> Callable[[], float]:
    """A clock ``offset_s`` ahead of ``clock`` that runs ``scale`` times faster from now on
    (demos and tests)."""
    if scale == 1 and not offset_s:
        return clock
    start = clock()
    return lambda: start + offset_s + (clock() - start) * scale


async def serve(settings: Settings, clock: Callable[[], float] = time.time) -> int:
    """Run until a signal; return the exit status."""
    logs.configure(settings.daemon.log_level)
    clock = scaled(clock, settings.clock.scale, settings.clock.offset_s)
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int]()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, int(sig))

    metrics = Metrics()
    async with open_resources(settings, observer=metrics) as resources:
        rebuilt = await resources.allocator.start()
        if rebuilt:
            log.warning("stock rebuilt from the ledger for warehouse(s): %s", ", ".join(rebuilt))
        daemon = Daemon(settings, resources, clock, metrics)
        async with resources.pool.acquire() as conn:
            daemon.feedback_key = await conn.fetchval("SELECT feedback_key FROM orderd_instance")
        await daemon.lay_out_streams()
        await daemon.reminders.rebuild()

        runner = web.AppRunner(build_app(daemon.context), access_log=None)
        await runner.setup()
        if daemon.http_here:
            site = web.TCPSite(
                runner,
                settings.http.host,
                settings.http.port,
                reuse_address=True,
                reuse_port=settings.http.reuse_port or None,
            )
            await site.start()

        parts: list[tuple[str, Callable[[], Awaitable[None]], asyncio.Event]] = [
            ("pump", daemon.pump, daemon.stopping),
            ("announce", daemon.announce, daemon.stopping),
        ]
        if daemon.actors_here:
            stopping = daemon.stopping
            parts += [
                *(
                    (f"runtime-{k}" if k else "runtime", runtime.run, runtime.stopping)
                    for k, runtime in enumerate(daemon.runtime.all)
                ),
                ("reminders", lambda: daemon.reminders.run(stopping), stopping),
                ("dispatcher", lambda: daemon.dispatcher.run(stopping), stopping),
                ("outbox", lambda: daemon.outbox.run(stopping), stopping),
                ("storefronts", lambda: daemon.storefronts.run(stopping), stopping),
                (
                    "stock-push",
                    lambda: daemon.stock_push.run(stopping, settings.webhooks.stock_every_s),
                    stopping,
                ),
            ]
            if daemon.sandbox is not None:
                parts.append(("sandbox-tracking", daemon.sandbox_tracking, stopping))
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(supervised(name, part, until), name=name)
            for name, part, until in parts
        ]
        every = systemd.watchdog_interval_s()
        if every is not None:
            tasks.append(asyncio.create_task(daemon.watchdog(every), name="watchdog"))
        if daemon.actors_here:
            await _until_reading(daemon, tasks)
        address = f"{settings.http.host}:{settings.http.port}" if daemon.http_here else "-"
        role = settings.daemon.role
        log.info(
            "orderd ready",
            extra={"http": address, "consumer": daemon.runtime.consumer, "role": role},
        )
        settle_memory()
        systemd.notify(f"READY=1\nSTATUS=serving on {address} ({role})")

        number = await _first(signals, tasks)
        log.info("stopping", extra={"signal": number})
        systemd.notify("STOPPING=1\nSTATUS=draining")
        daemon.context.draining = True
        grace = settings.daemon.shutdown_grace_s
        deadline = loop.time() + grace
        drained = asyncio.create_task(daemon.runtime.stop(grace))
        forced = asyncio.create_task(signals.get())
        done, _ = await asyncio.wait({drained, forced}, return_when=asyncio.FIRST_COMPLETED)
        if forced in done:
            log.warning("second signal: stopping now")
            drained.cancel()
            await daemon.runtime.abort()
            # Connections stuck in a statement are closed, not waited for.
            resources.pool.terminate()
        else:
            forced.cancel()
        daemon.stopping.set()
        if forced not in done:
            # The senders finish what they have on their way (and record it) first, within
            # what is left of the grace (a second or more).
            await asyncio.wait(tasks, timeout=max(1.0, min(_FINISH_S, deadline - loop.time())))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await daemon.close()
    log.info("stopped")
    return 0


async def supervised(
    name: str, part: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run a part of the daemon until ``stopping``; a part that fails or ends before that
    is started again (after 1 s, doubling to 30 s while it keeps failing). Every loop of
    the daemon outlives an outage and resumes by itself; only a signal stops the daemon."""
    pause = 1.0
    while not stopping.is_set():
        try:
            await part()
        except Exception as exc:
            if stopping.is_set():
                return
            log.error("%s failed, starting it again: %s", name, exc, exc_info=exc)
        else:
            if stopping.is_set():
                return
            log.error("%s stopped by itself, starting it again", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
        pause = min(pause * 2, 30.0)


async def _until_reading(daemon: Daemon, tasks: list[asyncio.Task[Any]]) -> None:
    """Wait until the runtime reads the stream (its own pending entries dispatched first)."""
    reading = asyncio.create_task(daemon.runtime.wait_started())
    done, _ = await asyncio.wait({reading, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    if reading not in done:
        reading.cancel()
        for task in done:
            task.result()  # a part that died at start-up stops the daemon with its error


async def _first(signals: asyncio.Queue[int], tasks: list[asyncio.Task[Any]]) -> int:
    """The first signal; a part of the daemon that ends by itself is an error."""
    waiter = asyncio.create_task(signals.get())
    done, _ = await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    for task in done:
        task.result()  # raises what stopped it
    raise RuntimeError(f"{next(iter(done)).get_name()} stopped by itself")
