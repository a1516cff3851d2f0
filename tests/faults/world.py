"""A test's own world: a private Redis and PostgreSQL on free ports, the ``orderd`` command
line and ``orderd run`` processes pointed at them, and the checks run over it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from adapters.postgres.pool import connection
from adapters.redis.client import RedisClient
from adapters.redis.keys import GROUP, RuntimeKeys
from tests.conftest import PostgresServer
from tests.faults.flood import Flood
from tests.faults.history import PASSING, RESTING, History, Settling, check_history, settle
from tests.integration.daemon_harness import Daemon

Run = Callable[..., subprocess.CompletedProcess[str]]


class RedisOfItsOwn(Protocol):
    """A Redis server of the test's own, or a Redis Cluster of its own."""

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class World:
    """One test's servers, the daemons it started on them, and the faults it made."""

    def __init__(
        self,
        *,
        redis: RedisOfItsOwn,
        postgres: PostgresServer,
        schema: str,
        prefix: str,
        run_orderd: Run,
        make_daemon: Callable[..., Daemon],
        directory: Path,
        cluster: bool = False,
    ) -> None:
        self.redis = redis
        self.cluster = cluster
        self.postgres = postgres
        self.schema = schema
        self.prefix = prefix
        self._run_orderd = run_orderd
        self._make_daemon = make_daemon
        self.directory = directory
        self.daemons: list[Daemon] = []
        self.faults: list[str] = []  # what the test broke and when, to read the logs by

    def note(self, what: str) -> None:
        """Note a fault as it is made, with the wall-clock time the daemons' logs use."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.faults.append(f"{at} {what}")

    @property
    def env(self) -> dict[str, str]:
        return {
            "ORDERD_REDIS__URL": self.redis.url,
            "ORDERD_REDIS__CLUSTER": "true" if self.cluster else "false",
            "ORDERD_POSTGRES__DSN": self.postgres.dsn,
        }

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``orderd ARGS`` against this world's servers."""
        return self._run_orderd(*args, env={**self.env, **(env or {})})

    def must(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"orderd {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    async def prepare(self, stock: Mapping[str, int]) -> None:
        """Migrate, import a catalog of ``stock``'s SKUs and set their stock (the stock
        commands run side by side: each is a process of its own)."""
        await asyncio.to_thread(self.must, "migrate")
        catalog = self.directory / "catalog.csv"
        rows = [f"{sku},{sku},100,A-{n + 1:02d}-01,1" for n, sku in enumerate(stock)]
        catalog.write_text("sku,name,weight_g,bin,unit_cost\n" + "\n".join(rows) + "\n")
        await asyncio.to_thread(self.must, "catalog", "import", str(catalog))
        await asyncio.gather(
            *(
                asyncio.to_thread(self.must, "stock", "set", sku, str(qty))
                for sku, qty in stock.items()
            )
        )

    def daemon(self, name: str, *, start: bool = True, **extra: str) -> Daemon:
        """An ``orderd run`` process on this world's servers (consumer ``name``)."""
        daemon: Daemon = self._make_daemon(name, start=start, **{**self.env, **extra})
        self.daemons.append(daemon)
        return daemon

    async def start(self, daemon: Daemon) -> None:
        """(Re)start ``daemon`` on its port, without holding up a flood in progress."""
        await asyncio.to_thread(daemon.start)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A connection to this world's database, in the test's schema."""
        async with connection(self.postgres.dsn, self.schema) as conn:
            yield conn

    async def settle(
        self, expected: int, within_s: float = 60.0, passing: frozenset[str] = PASSING
    ) -> Settling:
        return await settle(self.connect, expected, within_s, passing=passing)

    async def history(
        self,
        *,
        taken: Collection[str],
        accepted: Collection[str] = (),
        skus: Iterable[str],
        resting: frozenset[str] = RESTING,
    ) -> History:
        async with self.connect() as conn:
            return await check_history(
                conn, self.run, taken=taken, accepted=accepted, skus=skus, resting=resting
            )

    async def flood_history(
        self, flood: Flood, skus: Iterable[str], resting: frozenset[str] = RESTING
    ) -> History:
        """The record checked against what ``flood`` was answered."""
        return await self.history(
            taken=flood.taken_refs(), accepted=flood.accepted_refs(), skus=skus, resting=resting
        )

    async def story(self, flood: Flood, settling: Settling, history: History) -> str:
        """Everything a failure should tell: the flood's answers, how the orders settled,
        the record's figures, and (when orders are missing) what the stream holds."""
        parts = [str(settling), flood.summary(), str(history)]
        if history.stranded or history.lost or not settling.settled:
            stranded = list(history.stranded)[:3]
            parts.append(await self.mailbox_state(stranded))
            parts.append(await self.stream_state(stranded))
        parts += [f"faults: {self.faults}", f"daemon logs: {self.logs()}"]
        return "\n".join(parts)

    async def mailbox_state(self, order_ids: Sequence[str]) -> str:
        """When the messages of ``order_ids`` were stored, and whether a batch still says
        they are to be streamed."""
        async with self.connect() as conn:
            rows = await conn.fetch(
                """
                SELECT m.order_id, m.seq, m.type, m.created_at,
                       EXISTS (SELECT 1 FROM unstreamed u WHERE m.id = ANY(u.message_ids))
                           AS unstreamed
                FROM mailbox m WHERE m.order_id = ANY($1::text[]) ORDER BY m.order_id, m.seq
                """,
                list(order_ids),
            )
        return "mailbox:\n" + "\n".join(
            f"  {r['order_id']} #{r['seq']} {r['type']} stored {r['created_at'].isoformat()}"
            f"{', in an unstreamed batch' if r['unstreamed'] else ''}"
            for r in rows
        )

    async def stream_state(self, order_ids: Sequence[str]) -> str:
        """The order stream as redis-cli shows it: the group, its consumers, and where the
        entries of ``order_ids`` are (pending for whom, delivered how often)."""
        keys = RuntimeKeys(self.prefix, tagged=self.cluster)
        stream = keys.orders_stream
        client: RedisClient = (
            RedisCluster.from_url(self.redis.url, decode_responses=True, socket_timeout=5)
            if self.cluster
            else aioredis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=5)
        )
        try:
            lines = [f"Redis: {stream} holds {await client.xlen(stream)} entries"]
            for group in await client.xinfo_groups(stream):
                lines.append(
                    f"  group {group['name']}: pending {group['pending']}, lag {group.get('lag')}"
                    f", last delivered {group['last-delivered-id']}"
                )
            for consumer in await client.xinfo_consumers(stream, GROUP):
                lines.append(
                    f"  consumer {consumer['name']}: pending {consumer['pending']}, "
                    f"idle {consumer['idle']} ms"
                )
            wanted = set(order_ids)
            # Bounded: a flood's stream holds a few thousand entries at most.
            entries: Any = await client.xrange(stream, count=100_000)
            for entry_id, fields in entries:
                if fields.get("order") not in wanted:
                    continue
                pending: Any = await client.xpending_range(
                    stream, GROUP, min=entry_id, max=entry_id, count=1
                )
                where = (
                    f"pending for {pending[0]['consumer']}, delivered "
                    f"{pending[0]['times_delivered']} time(s)"
                    if pending
                    else "acknowledged"
                )
                lines.append(f"  {fields['order']} #{fields['seq']} entry {entry_id}: {where}")
            for order_id in order_ids:
                lease = keys.lease(order_id)
                lines.append(
                    f"  {order_id}: lease {await client.get(lease)!r}, "
                    f"expires in {await client.pttl(lease)} ms"
                )
            return "\n".join(lines)
        except (RedisError, RedisClusterException, OSError) as exc:
            return f"Redis could not be read: {exc}"
        finally:
            await client.aclose()

    def logs(self) -> str:
        """Where each daemon's log is, for a failure's message."""
        return ", ".join(str(d.log_path) for d in self.daemons)

    def stop_all(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
