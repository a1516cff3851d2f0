"""``orderd run`` under faults: kill -9, several processes, poison messages, SIGTERM, and
Redis losing everything. Every test uses real processes, Redis and PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapters.postgres.pool import connection
from tests.conftest import PostgresServer, RedisServer, SetStock, add_products
from tests.integration.daemon_harness import (
    eventually,
    generic_body,
    generic_headers,
    get,
    request,
)

MakeDaemon = Callable[..., Any]
Run = Callable[..., subprocess.CompletedProcess[str]]


def send_orders(url: str, orders: list[tuple[str, list[tuple[str, int]]]]) -> list[int]:
    """Post generic orders concurrently, as a platform's workers would; return the statuses."""

    def post(order: tuple[str, list[tuple[str, int]]]) -> int:
        body = generic_body(order[0], order[1])
        try:
            return request(f"{url}/webhooks/orders", body, generic_headers(body))[0]
        except OSError:
            return 0  # the daemon was killed mid-request

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, orders))


async def settled(pg: Any, count: int) -> bool:
    """Every stored message applied, and ``count`` orders known."""
    pending = await pg.fetchval(
        """
        SELECT count(*) FROM mailbox m
        WHERE m.seq > coalesce((SELECT last_seq FROM orders o WHERE o.id = m.order_id), 0)
        """
    )
    orders = await pg.fetchval("SELECT count(*) FROM orders")
    return bool(pending == 0 and orders == count)


async def holdings_match_stock(pg: Any, run_orderd: Run, skus: list[str]) -> None:
    """What orders hold adds up to what stock says is reserved, and Redis matches the ledger."""
    reconcile = run_orderd("stock", "reconcile")
    assert reconcile.returncode == 0, reconcile.stdout
    for sku in skus:
        held = await pg.fetchval(
            "SELECT coalesce(sum(reserved), 0) FROM order_lines WHERE sku = $1", sku
        )
        shown = json.loads(run_orderd("stock", "show", sku, "--json").stdout)
        assert shown["reserved"] == held, sku
        assert shown["on_hand"] == shown["available"] + shown["reserved"]


async def one_outcome_each(pg: Any) -> None:
    """No order received twice, none applied out of order."""
    repeats = await pg.fetchval(
        """
        SELECT count(*) FROM (
            SELECT order_id FROM order_events WHERE type = 'received'
            GROUP BY order_id HAVING count(*) > 1) r
        """
    )
    assert repeats == 0
    allocations = await pg.fetchval(
        """
        SELECT count(*) FROM (
            SELECT order_id FROM order_events WHERE type = 'stock_allocated'
            GROUP BY order_id HAVING count(*) > 1) r
        """
    )
    assert allocations == 0


async def test_kill_9_mid_flight_loses_nothing_and_reserves_nothing_twice(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Run, set_stock: SetStock
) -> None:
    skus = ["A-1", "B-1", "C-1"]
    await add_products(pg, *skus)
    await set_stock(dict.fromkeys(skus, 40))
    first = make_daemon("same-name")
    orders = [(f"K{n}", [(skus[n % 3], 1), (skus[(n + 1) % 3], 2)]) for n in range(60)]
    with ThreadPoolExecutor(max_workers=1) as background:
        sending = background.submit(send_orders, first.url, orders)
        await eventually(lambda: _at_least(pg, 10), what="some orders to be taken before the kill")
        first.kill()  # SIGKILL: no drain, no acknowledgements
        statuses = sending.result()
    accepted = [order for order, status in zip(orders, statuses, strict=True) if status == 202]
    refused = [order for order, status in zip(orders, statuses, strict=True) if status != 202]
    # The platform retries what was not accepted; the restarted daemon takes it.
    second = make_daemon("same-name")
    assert all(status in (202, 200) for status in send_orders(second.url, refused))
    await eventually(lambda: settled(pg, len(orders)), what="every order to settle")
    assert len(accepted) + len(refused) == len(orders)
    await one_outcome_each(pg)
    await holdings_match_stock(pg, run_orderd, skus)


async def _at_least(pg: Any, count: int) -> bool:
    taken: int = await pg.fetchval("SELECT count(*) FROM orders")
    return taken >= count


async def test_three_processes_share_the_group_without_running_an_order_twice(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Run, set_stock: SetStock
) -> None:
    skus = ["A-1", "B-1"]
    await add_products(pg, *skus)
    await set_stock({"A-1": 10})
    daemons = [make_daemon(name) for name in ("p1", "p2", "p3")]
    orders = [(f"T{n}", [("A-1", 1), ("B-1", 1)]) for n in range(30)]
    for n, daemon in enumerate(daemons):
        assert set(send_orders(daemon.url, orders[n::3])) == {202}
    await eventually(lambda: settled(pg, 30), what="30 orders backordered")
    # B-1 arrives: every order waits for it; the fills are messages for the same orders,
    # and cancellations for some of them race with them across the three processes.
    assert run_orderd("stock", "set", "B-1", "30").returncode == 0
    for n in range(0, 30, 4):
        cancel = generic_body(f"T{n}", [("A-1", 1), ("B-1", 1)], status="cancelled")
        url = daemons[n % 3].url
        assert request(f"{url}/webhooks/orders", cancel, generic_headers(cancel))[0] == 202
    await eventually(lambda: settled(pg, 30), what="fills and cancellations to settle")
    await one_outcome_each(pg)
    states = dict(await pg.fetch("SELECT name, state FROM orders"))
    assert all(states[f"#T{n}"] == "cancelled" for n in range(0, 30, 4))
    await holdings_match_stock(pg, run_orderd, skus)
    consumers = await pg.fetchval("SELECT count(DISTINCT order_id) FROM order_events")
    assert consumers == 30


async def test_a_poison_message_is_dead_lettered_while_others_flow(
    make_daemon: MakeDaemon,
    pg: Any,
    run_orderd: Run,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    set_stock: SetStock,
) -> None:
    await add_products(pg, "GOOD-1", "BAD-1")
    await set_stock({"GOOD-1": 10, "BAD-1": 10})
    # A stock record broken by hand: every turn reserving BAD-1 fails.
    await redis_client.hset(f"{redis_prefix}{{main}}:reserved", "BAD-1", "broken")
    daemon = make_daemon(ORDERD_RUNTIME__MAX_DELIVERIES="2")
    orders = [("P1", [("BAD-1", 1)]), *[(f"G{n}", [("GOOD-1", 1)]) for n in range(5)]]
    assert set(send_orders(daemon.url, orders)) == {202}
    await eventually(lambda: settled(pg, 6), what="the good orders and the poison one")
    states = dict(await pg.fetch("SELECT name, state FROM orders"))
    assert states.pop("#P1") == "needs_attention"
    # Reserved whole, each went on to the warehouse (which the tests keep waiting).
    assert set(states.values()) == {"fulfillment_requested"}
    listed = run_orderd("dlq", "list")
    assert listed.returncode == 0
    assert "message 1 after 2 deliveries" in listed.stdout
    # Repaired, the dead letter is sent again and the order goes through.
    assert run_orderd("recover").returncode == 0
    letter = await pg.fetchval("SELECT id FROM dead_letters")
    assert run_orderd("dlq", "replay", str(letter)).returncode == 0

    async def reserved() -> bool:
        state = await pg.fetchval("SELECT state FROM orders WHERE name = '#P1'")
        return bool(state == "fulfillment_requested")

    await eventually(reserved, what="the replayed order to be reserved and sent on")
    assert "no dead letters" in run_orderd("dlq", "list").stdout


async def test_sigterm_drains_and_tells_systemd(
    make_daemon: MakeDaemon, pg: Any, tmp_path: Path
) -> None:
    await add_products(pg, "A-1")
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    try:
        daemon = make_daemon(start=False, NOTIFY_SOCKET=address)
        daemon.start()
        assert listener.recv(4096).startswith(b"READY=1\nSTATUS=serving on")
        assert set(send_orders(daemon.url, [(f"S{n}", [("A-1", 1)]) for n in range(10)])) == {202}
        daemon.signal(signal.SIGTERM)
        assert listener.recv(4096).startswith(b"STOPPING=1")
        assert daemon.wait(timeout=15) == 0
        assert '"msg":"stopped"' in daemon.log_path.read_text()
    finally:
        listener.close()
    # Whatever was accepted and not finished is taken by the next process.
    make_daemon("d2")
    await eventually(lambda: settled(pg, 10), what="the accepted orders to settle")


async def test_redis_losing_everything_loses_no_order(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Run, redis_server: RedisServer
) -> None:
    skus = ["A-1", "B-1"]
    await add_products(pg, *skus)
    # A server of its own, which this test empties: one server, even where the others run
    # on a cluster.
    private = {"ORDERD_REDIS__URL": redis_server.url, "ORDERD_REDIS__CLUSTER": "false"}
    assert run_orderd("stock", "set", "A-1", "50", env=private).returncode == 0
    assert run_orderd("stock", "set", "B-1", "50", env=private).returncode == 0
    daemon = make_daemon(**private)
    before = [(f"R{n}", [("A-1", 1), ("B-1", 1)]) for n in range(10)]
    assert set(send_orders(daemon.url, before)) == {202}
    await eventually(lambda: settled(pg, 10), what="the first orders")
    redis_server.stop()
    redis_server.start()  # empty: no stock, no stream, no group, no scripts
    after = [(f"R{n}", [("A-1", 2)]) for n in range(10, 20)]
    assert set(send_orders(daemon.url, after)) == {202}
    await eventually(lambda: settled(pg, 20), what="the orders after the loss", within_s=40)
    await one_outcome_each(pg)
    reconcile = run_orderd("stock", "reconcile", env=private)
    assert reconcile.returncode == 0, reconcile.stdout
    shown = json.loads(run_orderd("stock", "show", "A-1", "--json", env=private).stdout)
    assert shown["reserved"] == 10 + 20


async def test_postgres_away_for_a_while_answers_503_and_loses_nothing(
    make_daemon: MakeDaemon,
    run_orderd: Run,
    postgres_server: PostgresServer,
    pg_schema_name: str,
) -> None:
    private = {"ORDERD_POSTGRES__DSN": postgres_server.dsn}
    assert run_orderd("migrate", env=private).returncode == 0
    catalog = "sku,name,weight_g,bin,unit_cost\nA-1,A,100,A-1,1\n"
    catalog_file = Path(postgres_server.directory) / "catalog.csv"
    catalog_file.write_text(catalog)
    assert run_orderd("catalog", "import", str(catalog_file), env=private).returncode == 0
    assert run_orderd("stock", "set", "A-1", "10", env=private).returncode == 0
    daemon = make_daemon(**private)
    assert send_orders(daemon.url, [("PG1", [("A-1", 1)])]) == [202]

    async def reserved(names: list[str]) -> bool:
        async with connection(postgres_server.dsn, pg_schema_name) as conn:
            states = await conn.fetch("SELECT name, state FROM orders")
        return {name: "fulfillment_requested" for name in names} == dict(states)

    await eventually(lambda: reserved(["#PG1"]), what="the first order")
    postgres_server.stop()
    assert send_orders(daemon.url, [("PG2", [("A-1", 1)])]) == [503]
    assert get(f"{daemon.url}/readyz")[0] == 503
    postgres_server.start()
    # The platform retries; the daemon has reconnected by itself.
    assert send_orders(daemon.url, [("PG2", [("A-1", 1)])]) == [202]
    await eventually(lambda: reserved(["#PG1", "#PG2"]), what="both orders")
    assert get(f"{daemon.url}/readyz")[0] == 200


async def test_a_second_signal_stops_at_once_and_the_next_process_finishes_the_turn(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Run, set_stock: SetStock
) -> None:
    await add_products(pg, "A-1")
    await set_stock({"A-1": 5})
    daemon = make_daemon("same", ORDERD_DAEMON__SHUTDOWN_GRACE_S="60")
    assert send_orders(daemon.url, [("Z1", [("A-1", 2)])]) == [202]
    await eventually(lambda: settled(pg, 1), what="the order")
    # A row lock held here makes the cancellation's turn wait inside its save.
    async with pg.transaction():
        await pg.execute("SELECT 1 FROM orders WHERE name = '#Z1' FOR UPDATE")
        cancel = generic_body("Z1", [("A-1", 2)], status="cancelled")
        assert request(f"{daemon.url}/webhooks/orders", cancel, generic_headers(cancel))[0] == 202
        await eventually(lambda: _waiting_on_lock(pg), what="the turn to wait on the row lock")
        daemon.signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=2)
            raise AssertionError("the daemon stopped while a turn was running")
        except subprocess.TimeoutExpired:
            pass  # draining: the turn is given its grace period
        daemon.signal(signal.SIGINT)
        assert daemon.wait(timeout=15) == 0
    # The unfinished cancellation is still pending for this consumer: the next process
    # with the same name runs it first.
    make_daemon("same")

    async def cancelled() -> bool:
        state = await pg.fetchval("SELECT state FROM orders WHERE name = '#Z1'")
        return bool(state == "cancelled")

    await eventually(cancelled, what="the cancellation to be applied")
    assert run_orderd("stock", "reconcile").returncode == 0
    shown = json.loads(run_orderd("stock", "show", "A-1", "--json").stdout)
    assert shown["reserved"] == 0


async def _waiting_on_lock(pg: Any) -> bool:
    # Inside a transaction the statistics are a snapshot: take a fresh one each time.
    await pg.execute("SELECT pg_stat_clear_snapshot()")
    waiting = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%UPDATE orders%'"
    )
    return bool(waiting)
