"""``orderd stock ...`` and ``orderd recover`` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis.keys import WarehouseKeys
from tests.conftest import SetStock, add_products

Run = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def show(run_orderd: Run, sku: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(run_orderd("stock", "show", sku, "--json")))
    return shown


async def test_set_adjust_and_show(run_orderd: Run, pg: Any) -> None:
    await add_products(pg, "MUG-1")
    assert show(run_orderd, "MUG-1") == {
        "sku": "MUG-1",
        "warehouse": "main",
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
        "backordered": 0,
    }
    assert "on hand 12 (+12)" in ok(run_orderd("stock", "set", "MUG-1", "12"))
    out = ok(run_orderd("stock", "adjust", "MUG-1", "+5", "--reason", "receipt", "--id", "po-7"))
    assert "on hand 17 (+5)" in out
    assert "(movement po-7)" in out
    assert "on hand 14 (-3)" in ok(
        run_orderd("stock", "adjust", "MUG-1", "-3", "--reason", "damage")
    )
    assert show(run_orderd, "MUG-1")["available"] == 14
    rows = await pg.fetch("SELECT kind, lines::text, reason FROM stock_ledger ORDER BY at")
    assert [(r["kind"], json.loads(r["lines"]), r["reason"]) for r in rows] == [
        ("set", [["MUG-1", 12, 0, 0]], "stock set"),
        ("adjust", [["MUG-1", 5, 0, 0]], "receipt"),
        ("adjust", [["MUG-1", -3, 0, 0]], "damage"),
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("stock", "adjust", "MUG-1", "+5", "--reason", "again", "--id", "po-7"),
            "already recorded",
        ),
        (("stock", "adjust", "BAD SKU", "+1", "--reason", "x"), "malformed sku 'BAD SKU'"),
        (("stock", "adjust", "NOPE-1", "+1", "--reason", "x"), "unknown sku 'NOPE-1'"),
        (("stock", "adjust", "MUG-1", "0", "--reason", "x"), "must change something"),
        (("stock", "adjust", "MUG-1", "five", "--reason", "x"), "expected +N or -N"),
        (("stock", "adjust", "MUG-1", "+1000000001", "--reason", "x"), "not a real stock level"),
        (("stock", "adjust", "MUG-1", "-6", "--reason", "x"), "it cannot go below 0"),
        (("stock", "adjust", "MUG-1", "+1"), "--reason is required"),
        (("stock", "adjust", "MUG-1", "+1", "--reason", " "), "--reason: 1-200"),
        (("stock", "set", "MUG-1", "-1"), "expected a whole number >= 0"),
        (("stock", "set", "MUG-1", "1", "--warehouse", "east"), "unknown warehouse 'east'"),
        (("stock", "set", "MUG-1", "1", "--id", "has space"), "movement id"),
        (("stock", "show", "NOPE-1"), "unknown sku 'NOPE-1'"),
    ],
)
async def test_bad_stock_commands_are_refused_and_write_nothing(
    run_orderd: Run,
    pg: Any,
    set_stock: SetStock,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    args: tuple[str, ...],
    expected: str,
) -> None:
    await add_products(pg, "MUG-1")
    await set_stock({"MUG-1": 5}, mode="delta", movement_id="po-7", reason="receipt")
    keys = WarehouseKeys(redis_prefix, "main")

    async def written() -> tuple[Any, Any]:
        figures = [await redis_client.hget(key, "MUG-1") for key in keys.stock]
        return await pg.fetch("SELECT * FROM stock_ledger"), figures

    before = await written()
    assert expected in refused(run_orderd(*args))
    assert await written() == before
    assert before[1][0] == b"5"


async def test_reconcile_finds_drift_and_fix_repairs_it(
    run_orderd: Run, pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await add_products(pg, "MUG-1")
    ok(run_orderd("stock", "set", "MUG-1", "8"))
    assert ok(run_orderd("stock", "reconcile")).strip() == "Redis matches the ledger"
    await redis_client.hset(WarehouseKeys(redis_prefix, "main").on_hand, "MUG-1", 3)
    drift = run_orderd("stock", "reconcile")
    assert drift.returncode == 1
    assert "drift main on_hand MUG-1: Redis 3, ledger 8" in drift.stdout
    assert "fixed" in ok(run_orderd("stock", "reconcile", "--fix"))
    assert show(run_orderd, "MUG-1")["on_hand"] == 8


async def test_recover_rebuilds_what_redis_lost(
    run_orderd: Run, pg: Any, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await add_products(pg, "MUG-1", "TEE-M")
    ok(run_orderd("stock", "set", "MUG-1", "8"))
    ok(run_orderd("stock", "set", "TEE-M", "2"))
    keys = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
    await redis_client.delete(*keys)
    out = ok(run_orderd("recover"))
    assert "warehouse main: rebuilt 2 skus" in out
    assert show(run_orderd, "MUG-1")["on_hand"] == 8
    assert show(run_orderd, "TEE-M")["on_hand"] == 2


@pytest.mark.usefixtures("pg")
def test_stock_commands_with_redis_down_say_so(run_orderd: Run) -> None:
    line = refused(
        run_orderd(
            "stock",
            "show",
            "MUG-1",
            env={"ORDERD_REDIS__URL": "redis://127.0.0.1:1/0", "ORDERD_REDIS__CLUSTER": "false"},
        )
    )
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in line
