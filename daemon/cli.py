"""``orderd``: the command line.

Every command reports a problem an operator can fix as one line on stderr and exit
code 2; ``--debug`` adds the traceback for anything unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from adapters.catalog import parse_catalog
from adapters.errors import CatalogError, OrderdError
from adapters.postgres import schema
from adapters.postgres.catalog import upsert_products
from adapters.postgres.pool import connection
from daemon.settings import Settings, load_settings, resolve_config_path

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
_MAX_PROBLEMS_SHOWN = 50
_MAX_CATALOG_BYTES = 256 * 1024 * 1024

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _db(settings: Settings) -> Any:
    pg = settings.postgres
    return connection(pg.dsn, pg.schema, pg.connect_timeout_s)


async def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.path or resolve_config_path(args.config, os.environ)
    settings = load_settings(path)
    enabled = [
        name
        for name in ("shopify", "woocommerce", "generic")
        if getattr(settings.webhooks, name).enabled
    ]
    _out(
        f"{settings.source}: ok ({len(settings.warehouses)} warehouse(s); "
        f"webhooks: {', '.join(enabled) or 'none enabled'})"
    )
    return EXIT_OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with _db(settings) as conn:
        applied = await schema.migrate(conn, settings.postgres.schema)
        version = await schema.current_version(conn)
    where = f"schema {settings.postgres.schema!r}"
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        _out(f"migrated {where} to version {version}: applied {names}")
    else:
        _out(f"{where} is up to date at version {version}")
    return EXIT_OK


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
    async with _db(settings) as conn:
        await schema.require_current(conn, settings.postgres.schema)
        result = await upsert_products(conn, products)
    return (
        f"imported {len(products)} products from {path}: {result.created} new, "
        f"{result.updated} changed, {result.unchanged} unchanged"
    )


async def cmd_catalog_import(args: argparse.Namespace) -> int:
    _out(await import_catalog(_settings(args), Path(args.file)))
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with _db(settings) as conn:
        await schema.migrate(conn, settings.postgres.schema)
    _out(f"demo: schema {settings.postgres.schema!r} is at version {schema.latest_version()}")
    catalog = resources.files("daemon").joinpath("data", "demo_catalog.csv")
    with resources.as_file(catalog) as path:
        _out("demo: " + await import_catalog(settings, path))
    _out(
        "demo: stops here for now: order intake, allocation and shipping are not part of "
        "this orderd yet, so no orders are run."
    )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="settings file (default: $ORDERD_CONFIG, then /etc/orderd/orderd.toml)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an unexpected error",
    )
    parser = argparse.ArgumentParser(
        prog="orderd",
        description="Order processing and fulfillment daemon for e-commerce warehouses.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str, sub: Any = commands) -> Any:
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(func=func)
        return command

    config = commands.add_parser("config", help="work with the settings file")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = add(
        "check",
        cmd_config_check,
        "validate a settings file; exit 2 naming a bad key",
        config_commands,
    )
    check.add_argument("path", nargs="?", help="file to check (default: the one orderd would use)")

    add("migrate", cmd_migrate, "apply PostgreSQL migrations (safe to repeat)")

    catalog = commands.add_parser("catalog", help="the product catalog")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, metavar="ACTION"
    )
    imp = add(
        "import",
        cmd_catalog_import,
        "import products from CSV: sku,name,weight_g,bin,unit_cost[,length_cm,width_cm,height_cm]",
        catalog_commands,
    )
    imp.add_argument("file", help="CSV file; all rows are imported or none")

    add("demo", cmd_demo, "run orderd end to end on this machine")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orderd`` console script."""
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    debug = getattr(args, "debug", False)
    try:
        code: int = asyncio.run(args.func(args))
        return code
    except CatalogError as exc:
        _err(f"orderd: {exc}")
        for problem in exc.problems[:_MAX_PROBLEMS_SHOWN]:
            _err(f"  {problem}")
        if len(exc.problems) > _MAX_PROBLEMS_SHOWN:
            _err(f"  ... and {len(exc.problems) - _MAX_PROBLEMS_SHOWN} more")
        return EXIT_USAGE
    except OrderdError as exc:
        _err(f"orderd: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            _err(
                f"orderd: unexpected error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback)"
            )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
