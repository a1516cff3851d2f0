"""Shopify's stock counts set from orderd's (:class:`actors.stock_push.Inventory`): the
``available`` quantity of each mapped inventory item at the location mapped to each
warehouse, by ``inventorySetQuantities`` (Admin API 2026-01 or later).

Each figure names what orderd believes Shopify holds (``changeFromQuantity``: its last
push), so a sale Shopify counted first is not overwritten: Shopify refuses the set as
stale, the figures it holds are read, and the pusher sets them again once orderd has the
sale's order too. A first push names none (orderd is the source of truth). Every call
carries an idempotency key made of its figures, so a call repeated after a lost answer
is applied once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from actors.stock_push import Level, LevelChange, LevelResult
from actors.storefront import PlatformError
from adapters.platforms.shopify_admin import ShopifyGraphql

SET_MUTATION = """
mutation InventorySet($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""

LEVELS_QUERY = """
query InventoryLevels($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevels(first: 50) {
        nodes { location { id } quantities(names: ["available"]) { name quantity } }
      }
    }
  }
}
"""

_STALE = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
_MAX_ERROR_TEXT = 200


def gid(kind: str, value: str) -> str:
    """A Shopify global id, from an id given as a number or as the gid itself."""
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


class ShopifyInventory:
    # Shopify takes 250 quantities in one call.
    batch = 250

    def __init__(
        self,
        api: ShopifyGraphql,
        *,
        locations: Mapping[str, str],
        inventory_items: Mapping[str, str],
    ) -> None:
        self._api = api
        self._locations = {code: gid("Location", v) for code, v in locations.items()}
        self._items = {sku: gid("InventoryItem", v) for sku, v in inventory_items.items()}

    def levels(self, available: Mapping[tuple[str, str], int]) -> dict[Level, int]:
        """One level per mapped sku at each mapped warehouse's location."""
        found: dict[Level, int] = {}
        for (warehouse, sku), units in available.items():
            location = self._locations.get(warehouse)
            if location is not None and sku in self._items:
                found[sku, location] = found.get((sku, location), 0) + units
        return found

    async def set_levels(self, changes: Sequence[LevelChange]) -> list[LevelResult]:
        quantities = [
            {
                "inventoryItemId": self._items[c.sku],
                "locationId": c.location,
                "quantity": c.quantity,
                "changeFromQuantity": c.was,
            }
            for c in changes
        ]
        key = hashlib.sha256(msgspec.json.encode(quantities)).hexdigest()[:32]
        data = await self._api.call(
            SET_MUTATION,
            {
                "input": {
                    "name": "available",
                    "reason": "correction",
                    "referenceDocumentUri": "orderd://stock",
                    "quantities": quantities,
                },
                "key": key,
            },
        )
        try:
            errors = data["inventorySetQuantities"]["userErrors"] or []
        except (KeyError, TypeError):
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        if not errors:
            return [LevelResult(c.sku, c.location, "set") for c in changes]
        # Nothing of the call was applied: say why for each figure.
        refused: dict[int, str] = {}
        stale = False
        for error in errors:
            index = _quantity_index(error.get("field"))
            if error.get("code") in _STALE:
                stale = True
            elif index is not None and 0 <= index < len(changes):
                refused[index] = " ".join(str(error.get("message", "")).split())
            else:
                text = " ".join(str(error.get("message", "")).split())[:_MAX_ERROR_TEXT]
                raise PlatformError(f"Shopify refused the stock counts: {text}", temporary=False)
        held = await self._held(changes) if stale else {}
        results = []
        for index, change in enumerate(changes):
            if index in refused:
                error = f"Shopify refused it: {refused[index][:_MAX_ERROR_TEXT]}"
                results.append(LevelResult(change.sku, change.location, "unknown", error=error))
            elif stale:
                has = held.get((self._items[change.sku], change.location))
                results.append(LevelResult(change.sku, change.location, "stale", has))
            else:
                results.append(LevelResult(change.sku, change.location, "retry", change.was))
        return results

    async def _held(self, changes: Sequence[LevelChange]) -> dict[tuple[str, str], int]:
        """Shopify's ``available`` per (inventory item, location), for the changes' items."""
        ids = sorted({self._items[c.sku] for c in changes})
        data = await self._api.call(LEVELS_QUERY, {"ids": ids})
        held: dict[tuple[str, str], int] = {}
        try:
            for item in data["nodes"]:
                if not item:
                    continue
                for level in item["inventoryLevels"]["nodes"]:
                    for quantity in level["quantities"]:
                        if quantity["name"] == "available":
                            held[item["id"], level["location"]["id"]] = int(quantity["quantity"])
        except (KeyError, TypeError, ValueError):
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        return held

    async def close(self) -> None:
        await self._api.close()


def _quantity_index(field: Any) -> int | None:
    """The figure a user error names (``["input", "quantities", "3", ...]``)."""
    if isinstance(field, list) and len(field) >= 3 and field[1] == "quantities":
        try:
            return int(field[2])
        except (TypeError, ValueError):
            return None
    return None
