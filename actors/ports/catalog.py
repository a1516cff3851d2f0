"""The product catalog as a pick list and an order's follow-ups read it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from msgspec import Struct


class CatalogItem(Struct, frozen=True, kw_only=True):
    sku: str
    name: str
    weight_g: int
    bin: str
    length_cm: float | None = None
    width_cm: float | None = None
    height_cm: float | None = None
    flags: tuple[str, ...] = ()  # handling notes: fragile, liquid, ...
    review_after_days: int | None = None
    repeat_after_days: int | None = None


class ProductCatalog(Protocol):
    async def products(self, skus: Collection[str]) -> dict[str, CatalogItem]:
        """The catalog's products among ``skus``, by sku; unknown skus are left out."""
        ...
