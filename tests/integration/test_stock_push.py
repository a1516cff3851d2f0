"""Stock counts pushed to the platforms from the real allocation core, against local
servers that speak Shopify's GraphQL Admin API and WooCommerce's REST API: many
movements between two passes go as one figure per sku; a sale the shop counted first is
not overwritten; a throttled or failing platform gets the last figure once it is back;
what was pushed is kept in PostgreSQL for the next process."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from actors.stock_push import StockPusher
from adapters.platforms.shopify_admin import ShopifyGraphql
from adapters.platforms.shopify_inventory import ShopifyInventory
from adapters.platforms.woocommerce_api import WooCommerceRest
from adapters.platforms.woocommerce_inventory import WooCommerceInventory
from adapters.postgres.platform_stock import PostgresPushedLevels
from adapters.postgres.pool import create_pool
from adapters.redis.leases import SoleLease
from adapters.stock.allocator import Allocator
from adapters.stock.model import WarehouseConfig
from tests.conftest import POSTGRES_DSN, add_products, runtime_keys
from tests.platform_servers import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN,
    ShopifyAdminServer,
    WooCommerceServer,
)

MAIN, EAST = 11, 12  # Shopify location ids
MUG, CAP = 701, 702  # Shopify inventory item ids
_moves = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pool(pg_schema_name: str) -> AsyncIterator[Any]:
    made = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=2)
    yield made
    await made.close()


async def allocator_with_stock(
    make_allocator: Callable[..., Awaitable[Allocator]], pg: Any, **units: int
) -> Allocator:
    await add_products(pg, *units)
    allocator = await make_allocator(
        warehouses=[WarehouseConfig("main", priority=1), WarehouseConfig("east", priority=2)]
    )
    for sku, count in units.items():
        await allocator.adjust(sku, count, movement_id=f"m{next(_moves)}", mode="set")
    return allocator


def shop_inventory(shop: ShopifyAdminServer) -> ShopifyInventory:
    api = ShopifyGraphql(admin_url=shop.url, access_token=TOKEN, api_version=shop.version)
    return ShopifyInventory(
        api,
        locations={"main": str(MAIN), "east": f"gid://shopify/Location/{EAST}"},
        inventory_items={"MUG": str(MUG), "CAP": str(CAP)},
    )


class World:
    """What a pusher works on: the test's allocation core, database and Redis."""

    def __init__(
        self,
        make_allocator: Callable[..., Awaitable[Allocator]],
        pg: Any,
        pool: Any,
        redis: aioredis.Redis,
        prefix: str,
    ) -> None:
        self.make_allocator, self.pg, self.pool = make_allocator, pg, pool
        self.redis, self.prefix = redis, prefix

    async def stocked(self, **units: int) -> Allocator:
        return await allocator_with_stock(self.make_allocator, self.pg, **units)

    def pusher(self, allocator: Allocator, clock: Clock, **platforms: Any) -> StockPusher:
        lease = SoleLease(self.redis, runtime_keys(self.prefix).stock_push, lease_ms=30_000)
        return StockPusher(
            figures=allocator, pushed=PostgresPushedLevels(self.pool), platforms=platforms,
            lease=lease, clock=clock,
        )  # fmt: skip


@pytest.fixture
def world(
    make_allocator: Callable[..., Awaitable[Allocator]],
    pg: Any,
    pool: Any,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> World:
    return World(make_allocator, pg, pool, redis_client, redis_prefix)


async def test_a_flurry_of_movements_reaches_shopify_as_one_figure_per_sku_and_location(
    world: World, pg: Any
) -> None:
    allocator = await world.stocked(MUG=10, CAP=4, SOCK=9)
    async with ShopifyAdminServer() as shop:
        shop.stock(MAIN, {MUG: 0, CAP: 0})
        shop.stock(EAST, {MUG: 0, CAP: 0})
        shop.throttle_next = 1  # the shop's budget is spent at first
        clock = Clock()
        push = world.pusher(allocator, clock, shopify=shop_inventory(shop))
        await push.push_once()
        assert shop.inventory_sets == []  # throttled: waits as long as Shopify asked
        # Meanwhile: six orders reserve a mug each, and stock arrives in the east.
        for n in range(6):
            await allocator.reserve(f"o{n}", [("MUG", 1)], op_id="r")
        await allocator.adjust("MUG", 3, movement_id="east-in", warehouse="east")
        clock.now += 2
        await push.push_once()
        # One call, each level once with its last figure; SOCK has no inventory item.
        assert shop.inventory_sets == [
            {
                ("gid://shopify/InventoryItem/701", "gid://shopify/Location/11"): 4,
                ("gid://shopify/InventoryItem/702", "gid://shopify/Location/11"): 4,
                ("gid://shopify/InventoryItem/701", "gid://shopify/Location/12"): 3,
                ("gid://shopify/InventoryItem/702", "gid://shopify/Location/12"): 0,
            }
        ]
        await allocator.release("o0", "x")
        await allocator.release("o1", "x")
        await push.push_once()
        assert shop.inventory_sets[1:] == [
            {("gid://shopify/InventoryItem/701", "gid://shopify/Location/11"): 6}
        ]
        rows = await pg.fetch(
            "SELECT sku, location, pushed, platform_has FROM platform_stock ORDER BY 1, 2"
        )
        assert [tuple(r) for r in rows] == [
            ("CAP", "gid://shopify/Location/11", 4, 4),
            ("CAP", "gid://shopify/Location/12", 0, 0),
            ("MUG", "gid://shopify/Location/11", 6, 6),
            ("MUG", "gid://shopify/Location/12", 3, 3),
        ]
        await push.close()


async def test_a_sale_shopify_counted_first_is_not_overwritten(world: World, pg: Any) -> None:
    allocator = await world.stocked(MUG=10)
    async with ShopifyAdminServer() as shop:
        shop.stock(MAIN, {MUG: 0})
        shop.stock(EAST, {MUG: 0})
        clock = Clock()
        push = world.pusher(allocator, clock, shopify=shop_inventory(shop))
        await push.push_once()
        assert shop.level(MUG, MAIN) == 10
        shop.available["gid://shopify/InventoryItem/701", "gid://shopify/Location/11"] = 8
        await allocator.adjust("MUG", 5, movement_id="in")  # 15 here; 2 sold there
        await push.push_once()
        assert shop.level(MUG, MAIN) == 8  # stale: not overwritten
        clock.now += 10  # the sale's order reaches orderd meanwhile
        await allocator.reserve("shop-sale", [("MUG", 2)], op_id="r")
        await push.push_once()
        assert shop.level(MUG, MAIN) == 13
        assert len(shop.inventory_sets) == 2  # the first push and this one
        await push.close()


async def test_an_item_shopify_does_not_stock_at_a_location_is_set_aside_with_the_reason(
    world: World, pg: Any, run_orderd: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    allocator = await world.stocked(MUG=10, CAP=4)
    async with ShopifyAdminServer() as shop:
        shop.stock(MAIN, {MUG: 0, CAP: 0})
        shop.stock(EAST, {MUG: 0})  # the caps are not stocked in the east
        push = world.pusher(allocator, Clock(), shopify=shop_inventory(shop))
        await push.push_once()
        assert shop.inventory_sets == []  # one refusal applies nothing of the call
        await push.push_once()  # the others go again, without it
        assert shop.level(MUG, MAIN) == 10
        assert shop.level(CAP, MAIN) == 4
        assert shop.level(MUG, EAST) == 0
        row = await pg.fetchrow(
            "SELECT pushed, last_error FROM platform_stock WHERE sku = 'CAP' AND location = $1",
            f"gid://shopify/Location/{EAST}",
        )
        assert row["pushed"] is None
        assert row["last_error"] == "Shopify refused it: The item is not stocked at the location."
        shown = run_orderd("stock", "show", "CAP")
        assert shown.stdout.splitlines()[1:] == [
            "  shopify at gid://shopify/Location/11: told 4",
            "  shopify at gid://shopify/Location/12: not set (Shopify refused it: The item is "
            "not stocked at the location.)",
        ]
        await push.close()


async def test_woocommerce_gets_each_products_units_summed_over_warehouses(
    world: World, pg: Any
) -> None:
    allocator = await world.stocked(MUG=10, CAP=4, SOCK=1)
    await allocator.adjust("CAP", 2, movement_id="east-cap", warehouse="east")
    async with WooCommerceServer() as store:
        store.add_product(31, "MUG", stock=0)
        store.add_product(45, "CAP", stock=0, parent=44)  # a variation of product 44
        store.fail_next = [429]
        store.retry_after = "5"
        api = WooCommerceRest(
            store_url=store.url, consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET
        )
        clock = Clock()
        push = world.pusher(allocator, clock, woocommerce=WooCommerceInventory(api))
        await push.push_once()
        assert store.stock_updates == []  # too many requests: waits the 5 s asked
        for n in range(3):
            await allocator.reserve(f"o{n}", [("MUG", 2)], op_id="r")
        clock.now += 5
        await push.push_once()
        assert store.stock_of("MUG") == 4
        assert store.stock_of("CAP") == 6
        assert store.products[31]["manage_stock"] is True
        assert store.stock_updates == [{45: 6}, {31: 4}]  # the variation through its parent
        sock = await pg.fetchrow("SELECT pushed, last_error FROM platform_stock WHERE sku='SOCK'")
        assert sock["pushed"] is None
        assert sock["last_error"] == "no product with this sku on the store"
        await push.push_once()
        assert len(store.stock_updates) == 2  # nothing changed, nothing sent
        await push.close()


async def test_a_second_process_pushes_nothing_while_the_first_holds_the_lease(
    world: World, pg: Any
) -> None:
    allocator = await world.stocked(MUG=10)
    async with ShopifyAdminServer() as shop:
        shop.stock(MAIN, {MUG: 0})
        shop.stock(EAST, {MUG: 0})
        clock = Clock()
        first = world.pusher(allocator, clock, shopify=shop_inventory(shop))
        second = world.pusher(allocator, clock, shopify=shop_inventory(shop))
        await first.push_once()
        await allocator.adjust("MUG", -1, movement_id="out")
        await second.push_once()
        assert shop.level(MUG, MAIN) == 10
        await first.push_once()
        assert shop.level(MUG, MAIN) == 9
        assert await world.redis.pttl(runtime_keys(world.prefix).stock_push) > 25_000
        await first.close()
        await second.close()
