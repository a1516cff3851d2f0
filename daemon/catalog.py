"""Importing a catalog file: read, check every row, then write all or nothing."""

from __future__ import annotations

from pathlib import Path

from actors.errors import OrderdError
from adapters.catalog import parse_catalog
from adapters.postgres import schema
from adapters.postgres.catalog import upsert_products
from daemon.resources import database
from daemon.settings import Settings

_MAX_CATALOG_BYTES = 256 * 1024 * 1024


def _read_catalog(path: Path) -> list[str]:
    try:
        if path.stat().st_size > _MAX_CATALOG_BYTES:
            raise OrderdError(f"{path}: larger than {_MAX_CATALOG_BYTES // 2**20} MiB; split it")
        # utf-8-sig: spreadsheets often start a CSV with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return handle.readlines()
    except FileNotFoundError:
        raise OrderdError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise OrderdError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise OrderdError(f"{path}: cannot read: {exc.strerror}") from None


async def import_catalog(settings: Settings, path: Path) -> str:
    """Import the catalog at ``path``; return the summary line. Nothing is written on error."""
    products = parse_catalog(_read_catalog(path))
    async with database(settings) as conn:
        await schema.require_current(conn, settings.postgres.schema)
        result = await upsert_products(conn, products)
    return (
        f"imported {len(products)} products from {path}: {result.created} new, "
        f"{result.updated} changed, {result.unchanged} unchanged"
    )
