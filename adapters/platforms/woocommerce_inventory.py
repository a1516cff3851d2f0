"""WooCommerce's stock counts set from orderd's (:class:`actors.stock_push.Inventory`):
each product's ``stock_quantity``, the units available in the warehouses that sell
through the store, summed (WooCommerce keeps one count per product).

A sku is found by ``GET /products?sku=``, once per process; a variation is set through
its parent product. Figures go in batches (``POST /products/batch``, and
``/products/<parent>/variations/batch``), whose answer says per product whether it was
set. WooCommerce has no compare-and-set: the figure is set as it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from actors.stock_push import Level, LevelChange, LevelResult
from actors.storefront import PlatformError
from adapters.platforms.woocommerce_api import WooCommerceRest

_MAX_ERROR_TEXT = 200
# (product id, parent product id for a variation, else None); None: not on the store.
_Product = tuple[int, int | None] | None


class WooCommerceInventory:
    # WooCommerce's batch endpoints take 100 products a call.
    batch = 100

    def __init__(self, api: WooCommerceRest, *, warehouses: Collection[str] = ()) -> None:
        self._api = api
        self._warehouses = frozenset(warehouses)  # empty: every warehouse
        self._products: dict[str, _Product] = {}

    def levels(self, available: Mapping[tuple[str, str], int]) -> dict[Level, int]:
        found: dict[Level, int] = {}
        for (warehouse, sku), units in available.items():
            if not self._warehouses or warehouse in self._warehouses:
                found[sku, ""] = found.get((sku, ""), 0) + units
        return found

    async def set_levels(self, changes: Sequence[LevelChange]) -> list[LevelResult]:
        results: dict[str, LevelResult] = {}
        groups: dict[int | None, list[tuple[int, LevelChange]]] = defaultdict(list)
        for change in changes:
            product = await self._product(change.sku)
            if product is None:
                error = "no product with this sku on the store"
                results[change.sku] = LevelResult(change.sku, "", "unknown", error=error)
            else:
                groups[product[1]].append((product[0], change))
        for parent, members in groups.items():
            path = "/products/batch" if parent is None else f"/products/{parent}/variations/batch"
            update = [
                {"id": pid, "manage_stock": True, "stock_quantity": c.quantity}
                for pid, c in members
            ]
            answer = await self._api.call("POST", path, {"update": update})
            done = _answered(answer)
            for pid, change in members:
                problem = done.get(pid, "not in WooCommerce's answer")
                if problem is None:
                    results[change.sku] = LevelResult(change.sku, "", "set")
                else:
                    self._products.pop(change.sku, None)  # found again next time
                    refused = f"WooCommerce refused it: {problem}"
                    results[change.sku] = LevelResult(change.sku, "", "unknown", error=refused)
        return [results[c.sku] for c in changes]

    async def _product(self, sku: str) -> _Product:
        if sku in self._products:
            return self._products[sku]
        listed = await self._api.call("GET", f"/products?sku={quote(sku, safe='')}")
        if not isinstance(listed, list):
            raise PlatformError("malformed answer from WooCommerce", temporary=False)
        found: _Product = None
        for product in listed:
            if isinstance(product, dict) and product.get("sku") == sku and "id" in product:
                parent = int(product.get("parent_id") or 0)
                variation = product.get("type") == "variation" or parent > 0
                found = (int(product["id"]), parent if variation else None)
                break
        self._products[sku] = found
        return found

    async def close(self) -> None:
        await self._api.close()


def _answered(answer: Any) -> dict[int, str | None]:
    """Per product id in a batch answer: None when set, else WooCommerce's message."""
    if not isinstance(answer, dict) or not isinstance(answer.get("update"), list):
        raise PlatformError("malformed answer from WooCommerce", temporary=False)
    done: dict[int, str | None] = {}
    for item in answer["update"]:
        if not isinstance(item, dict) or "id" not in item:
            continue
        error = item.get("error")
        if isinstance(error, dict):
            done[int(item["id"])] = " ".join(str(error.get("message", "")).split())[
                :_MAX_ERROR_TEXT
            ]
        else:
            done[int(item["id"])] = None
    return done
