"""README's table of a warehouse's Redis keys names the keys Redis really holds.

An operator reads the table beside redis-cli: after reservations, a backorder, a release
and a stock movement, every key under the prefix is one of the table's, and each of the
table's keys is there.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapters.stock.allocator import Allocator
from tests.conftest import add_products

README = Path(__file__).resolve().parents[2] / "README.md"


def warehouse_key_patterns(prefix: str) -> dict[str, re.Pattern[str]]:
    """The table's keys (``orderd:{main}:...``), as patterns under ``prefix``."""
    section = README.read_text(encoding="utf-8").split("### Reading it with redis-cli", 1)[1]
    table = section.split("```", 1)[0]
    names = re.findall(r"^\| `(orderd:\{main\}:[^`]+)` \|", table, flags=re.MULTILINE)
    patterns = {}
    for name in names:
        parts = re.split(r"(<[a-z]+>)", name.removeprefix("orderd:"))
        # A movement's id may hold colons (a release's is release:<order>:...): it ends
        # the key, and takes the rest.
        body = "".join(
            (".+" if p == "<movement>" else "[^:]+") if p.startswith("<") else re.escape(p)
            for p in parts
        )
        patterns[name] = re.compile(re.escape(prefix) + body)
    return patterns


async def test_readme_names_every_warehouse_key_as_redis_holds_it(
    make_allocator: Callable[..., Awaitable[Allocator]],
    pg: Any,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    await add_products(pg, "A", "B")
    allocator = await make_allocator()
    await allocator.adjust("A", 5, movement_id="count-1", mode="set")
    await allocator.reserve("o1", [("A", 2)])
    await allocator.reserve("o2", [("A", 2), ("B", 1)], policy="wait_all")  # B: none
    await allocator.release("o1", "cancel")

    patterns = warehouse_key_patterns(redis_prefix)
    assert len(patterns) >= 8, patterns
    keys = [key.decode() async for key in redis_client.scan_iter(match=f"{redis_prefix}*")]
    unnamed = [k for k in keys if not any(p.fullmatch(k) for p in patterns.values())]
    assert unnamed == []
    # The movement ids are as the table says: the one given, and a release's fills.
    moves = sorted(k.split(":move:", 1)[1] for k in keys if ":move:" in k)
    assert moves[0] == "A:count-1"
    assert re.fullmatch(r"A:release:o1:cancel@[0-9a-f]+", moves[1]), moves
    absent = [n for n, p in patterns.items() if not any(p.fullmatch(k) for k in keys)]
    assert absent == []
