"""``orderd demo``: the pipeline as far as it is built, end to end on this machine.

Today that is the catalog and the allocation core: stock is set, a stream of random
orders is reserved or backordered concurrently, a delivery of the scarcest product fills
the waiting orders, and the demo's reservations are given back at the end so a second run
starts from the same stock.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Callable
from importlib import resources

from adapters.postgres import schema
from adapters.postgres.pool import connection
from daemon.catalog import import_catalog
from daemon.resources import open_resources
from daemon.settings import Settings

SCARCE_SKU = "MUG-BLK"
SCARCE_STOCK = 5
STOCK = 40
RECEIPT = 60


async def run_demo(settings: Settings, orders: int, say: Callable[[str], None]) -> None:
    """Run the demo against the configured servers, telling each step through ``say``."""
    pg = settings.postgres
    async with connection(pg.dsn, pg.schema, pg.connect_timeout_s) as conn:
        await schema.migrate(conn, pg.schema)
    say(f"schema {pg.schema!r} is at version {schema.latest_version()}")
    catalog = resources.files("daemon").joinpath("data", "demo_catalog.csv")
    with resources.as_file(catalog) as path:
        say(await import_catalog(settings, path))
        skus = [line.split(",", 1)[0] for line in path.read_text().splitlines()[1:] if line]

    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)  # noqa: S311 - demo orders, not secrets
    async with open_resources(settings) as res:
        allocator = res.allocator
        await allocator.start()
        for sku in skus:
            units = SCARCE_STOCK if sku == SCARCE_SKU else STOCK
            await allocator.adjust(
                sku, units, movement_id=f"demo-{run}-set-{sku}", mode="set", reason="demo count"
            )
        say(f"stock set: {STOCK} units of each product, {SCARCE_STOCK} of {SCARCE_SKU}")

        ids = [f"demo-{run}-{n:05d}" for n in range(orders)]

        async def place(order_id: str) -> str:
            picks = rng.sample(skus, rng.randint(1, 3))
            if rng.random() < 0.3:
                picks = [SCARCE_SKU, *picks[:2]]  # a popular product runs short
            lines = [(sku, rng.randint(1, 2)) for sku in dict.fromkeys(picks)]
            return (await allocator.reserve(order_id, lines)).status

        statuses = Counter(await asyncio.gather(*(place(order_id) for order_id in ids)))
        say(
            f"{orders} orders reserved concurrently: {statuses['reserved']} reserved, "
            f"{statuses['backordered']} backordered (policy {settings.allocation.backorder_policy})"
        )
        delivered = await allocator.adjust(
            SCARCE_SKU, RECEIPT, movement_id=f"demo-{run}-receipt", reason="demo receipt"
        )
        say(
            f"receipt of {RECEIPT} x {SCARCE_SKU} filled {len(delivered.filled_orders)} "
            "waiting orders in queue order"
        )
        level = await allocator.stock(SCARCE_SKU)
        say(
            f"{SCARCE_SKU} @ {level.warehouse}: on hand {level.on_hand}, reserved "
            f"{level.reserved}, available {level.available}, backordered {level.backordered}"
        )
        drift = await allocator.reconcile()
        say(
            "Redis matches the ledger" if not drift else f"{len(drift)} differences from the ledger"
        )
        for order_id in ids:
            await allocator.release(order_id, "demo-cancel")
        await allocator.adjust(
            SCARCE_SKU, -RECEIPT, movement_id=f"demo-{run}-return", reason="demo reset"
        )
        say("the demo's orders were cancelled and their stock released")
    say(
        "order intake, fulfillment and shipping are not built yet, so the demo stops after "
        "allocation"
    )
