"""The product catalog in PostgreSQL: one transaction for a whole import, and the
products pick lists are made of (:class:`actors.ports.catalog.ProductCatalog`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from msgspec import Struct

from actors.ports.catalog import CatalogItem
from adapters.catalog import Product

_COLUMNS = (
    "sku", "name", "weight_g", "bin", "unit_cost", "length_cm", "width_cm", "height_cm",
    "review_after_days", "repeat_after_days", "flags",
)  # fmt: skip


class ImportResult(Struct, frozen=True):
    created: int
    updated: int
    unchanged: int


async def upsert_products(conn: Any, products: Sequence[Product]) -> ImportResult:
    """Insert or update every product, all or nothing; count new, changed and unchanged."""
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE catalog_import (LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "catalog_import",
            records=[tuple(getattr(p, c) for c in _COLUMNS) for p in products],
            columns=_COLUMNS,
        )
        rows = await conn.fetch(
            """
            INSERT INTO products AS p
                (sku, name, weight_g, bin, unit_cost, length_cm, width_cm, height_cm,
                 review_after_days, repeat_after_days, flags)
            SELECT sku, name, weight_g, bin, unit_cost, length_cm, width_cm, height_cm,
                   review_after_days, repeat_after_days, flags
            FROM catalog_import
            ON CONFLICT (sku) DO UPDATE SET
                name = excluded.name, weight_g = excluded.weight_g, bin = excluded.bin,
                unit_cost = excluded.unit_cost, length_cm = excluded.length_cm,
                width_cm = excluded.width_cm, height_cm = excluded.height_cm,
                flags = excluded.flags, review_after_days = excluded.review_after_days,
                repeat_after_days = excluded.repeat_after_days, updated_at = now()
            WHERE (p.name, p.weight_g, p.bin, p.unit_cost, p.length_cm, p.width_cm, p.height_cm,
                   p.flags, p.review_after_days, p.repeat_after_days)
                IS DISTINCT FROM (excluded.name, excluded.weight_g, excluded.bin,
                    excluded.unit_cost, excluded.length_cm, excluded.width_cm, excluded.height_cm,
                    excluded.flags, excluded.review_after_days, excluded.repeat_after_days)
            RETURNING (xmax = 0) AS created
            """
        )
    created = sum(1 for row in rows if row["created"])
    updated = len(rows) - created
    return ImportResult(created=created, updated=updated, unchanged=len(products) - len(rows))


class PostgresCatalog:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def products(self, skus: Collection[str]) -> dict[str, CatalogItem]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                SELECT sku, name, weight_g, bin, length_cm, width_cm, height_cm, flags,
                       review_after_days, repeat_after_days
                FROM products WHERE sku = ANY($1::text[])
                """,
                list(skus),
            )
        return {r["sku"]: _item(r) for r in rows}


def _item(row: Any) -> CatalogItem:
    return CatalogItem(
        sku=row["sku"],
        name=row["name"],
        weight_g=row["weight_g"],
        bin=row["bin"],
        length_cm=_cm(row["length_cm"]),
        width_cm=_cm(row["width_cm"]),
        height_cm=_cm(row["height_cm"]),
        flags=tuple(row["flags"]),
        review_after_days=row["review_after_days"],
        repeat_after_days=row["repeat_after_days"],
    )


def _cm(value: Any) -> float | None:
    # numeric(8, 2) comes as a Decimal; the pick list works in floats.
    return float(value) if value is not None else None
