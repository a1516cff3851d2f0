"""``orderd``: the command line.

Every command reports a problem an operator can fix as one line on stderr and exit
code 2; ``--debug`` adds the traceback for anything unexpected. The daemon, the demo,
the report and the catalog import are loaded by their own commands only, so that a
quick command (``stock set``, ``order show``) starts in half the time.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from actors.errors import OrderdError
from actors.order.types import is_valid_sku
from actors.stock import Adjusted
from adapters.errors import CatalogError
from adapters.postgres import platform_stock, schema
from adapters.stock.model import StockLevel
from daemon.order_commands import add_commands, moment
from daemon.resources import database, open_resources
from daemon.settings import Settings, load_settings, resolve_config_path

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_DRIFT = 1
EXIT_USAGE = 2
_MAX_QUANTITY = 1_000_000_000
_MAX_PROBLEMS_SHOWN = 50

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


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
    async with database(settings) as conn:
        applied = await schema.migrate(conn, settings.postgres.schema)
        version = await schema.current_version(conn)
    where = f"schema {settings.postgres.schema!r}"
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        _out(f"migrated {where} to version {version}: applied {names}")
    else:
        _out(f"{where} is up to date at version {version}")
    return EXIT_OK


async def cmd_catalog_import(args: argparse.Namespace) -> int:
    from daemon.catalog import import_catalog

    _out(await import_catalog(_settings(args), Path(args.file)))
    return EXIT_OK


def _sku(text: str) -> str:
    if not is_valid_sku(text):
        raise OrderdError(
            f"malformed sku {text!r}: 1-64 of letters, digits and . _ / + # -, "
            "starting with a letter or digit"
        )
    return text


def _quantity(text: str, *, signed: bool) -> int:
    """A whole number within +/-1e9: ``+N``/``-N`` (not 0) when signed, else ``N >= 0``."""
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isdigit() or (not signed and stripped[:1] in "+-"):
        form = "+N or -N" if signed else "a whole number >= 0"
        raise OrderdError(f"quantity {text!r}: expected {form}")
    value = int(stripped)
    if abs(value) > _MAX_QUANTITY:
        raise OrderdError(
            f"quantity {text!r}: more than {_MAX_QUANTITY:,} is not a real stock level"
        )
    if signed and value == 0:
        raise OrderdError("quantity 0: an adjustment must change something")
    return value


def _warehouse(settings: Settings, code: str | None) -> str:
    codes = [w.code for w in settings.warehouses]
    if code is None:
        return sorted(settings.warehouses, key=lambda w: (w.priority, w.code))[0].code
    if code not in codes:
        raise OrderdError(f"unknown warehouse {code!r}; configured: {', '.join(codes)}")
    return code


def _movement_id(args: argparse.Namespace) -> str:
    movement: str = args.id or f"cli-{uuid.uuid4().hex}"
    if not 1 <= len(movement) <= 128 or not movement.isprintable() or " " in movement:
        raise OrderdError(f"movement id {movement!r}: 1-128 printable characters, no spaces")
    return movement


def _reason(text: str | None) -> str | None:
    if text is not None and (not text.strip() or len(text) > 200 or not text.isprintable()):
        raise OrderdError("--reason: 1-200 printable characters")
    return text


def _describe_adjusted(done: Adjusted) -> list[str]:
    lines = [
        f"{done.sku} @ {done.warehouse}: on hand {done.on_hand} ({done.on_hand_delta:+d}), "
        f"reserved {done.reserved}, available {done.on_hand - done.reserved}, "
        f"backordered {done.backordered} (movement {done.movement_id})"
    ]
    if done.filled_orders:
        lines.append(f"filled backorders: {', '.join(done.filled_orders)}")
    return lines


async def _adjust(args: argparse.Namespace, quantity: int, mode: str, reason: str) -> int:
    settings = _settings(args)
    sku = _sku(args.sku)
    warehouse = _warehouse(settings, args.warehouse)
    movement = _movement_id(args)
    async with open_resources(settings, pool_size=2) as res:
        await res.allocator.start()
        done = await res.allocator.adjust(
            sku,
            quantity,
            movement_id=movement,
            mode="set" if mode == "set" else "delta",
            reason=reason,
            warehouse=warehouse,
        )
        await res.mail.tell_filled(done)
    for line in _describe_adjusted(done):
        _out(line)
    return EXIT_OK


async def cmd_stock_set(args: argparse.Namespace) -> int:
    quantity = _quantity(args.quantity, signed=False)
    return await _adjust(args, quantity, "set", _reason(args.reason) or "stock set")


async def cmd_stock_adjust(args: argparse.Namespace) -> int:
    quantity = _quantity(args.delta, signed=True)
    reason = _reason(args.reason)
    if reason is None:
        raise OrderdError("--reason is required: say why stock changes (receipt, count, damage)")
    return await _adjust(args, quantity, "delta", reason)


async def cmd_stock_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sku = _sku(args.sku)
    warehouse = _warehouse(settings, args.warehouse)
    async with open_resources(settings, pool_size=2) as res:
        await res.allocator.start()
        level: StockLevel = await res.allocator.stock(sku, warehouse)
        async with res.pool.acquire() as conn:
            told = await platform_stock.of_sku(conn, sku)
    if args.json:
        _out(msgspec.json.encode(level).decode())
    else:
        _out(
            f"{level.sku} @ {level.warehouse}: on hand {level.on_hand}, reserved {level.reserved}, "
            f"available {level.available}, backordered {level.backordered}"
        )
        for row in told:
            where = f" at {row['location']}" if row["location"] else ""
            figure = "not set" if row["pushed"] is None else f"told {row['pushed']}"
            error = f" ({row['last_error']})" if row["last_error"] else ""
            _out(f"  {row['platform']}{where}: {figure}{error}")
    return EXIT_OK


async def cmd_stock_reconcile(args: argparse.Namespace) -> int:
    settings = _settings(args)
    warehouse = _warehouse(settings, args.warehouse) if args.warehouse else None
    async with open_resources(settings, pool_size=2) as res:
        drift = await res.allocator.reconcile(warehouse)
        for item in drift:
            _out(f"drift {item.warehouse} {item.what}: Redis {item.redis}, ledger {item.ledger}")
        if not drift:
            _out("Redis matches the ledger")
            return EXIT_OK
        if not args.fix:
            _out(f"{len(drift)} difference(s); run with --fix to rebuild Redis from the ledger")
            return EXIT_DRIFT
        for code in sorted({item.warehouse for item in drift}):
            await res.allocator.recover(code)
        left = await res.allocator.reconcile(warehouse)
    if left:
        raise OrderdError(f"{len(left)} difference(s) remain after the rebuild")
    _out(f"fixed: rebuilt Redis from the ledger ({len(drift)} difference(s) repaired)")
    return EXIT_OK


async def cmd_recover(args: argparse.Namespace) -> int:
    settings = _settings(args)
    async with open_resources(settings, pool_size=2) as res:
        for code in res.allocator.warehouses:
            rebuilt = await res.allocator.recover(code)
            if rebuilt is None:
                _out(f"warehouse {code}: rebuilt by another process meanwhile")
            else:
                _out(
                    f"warehouse {code}: rebuilt {rebuilt.skus} skus, {rebuilt.reservations} "
                    f"reservation lines, {rebuilt.backorders} backordered orders from the ledger"
                )
    return EXIT_OK


async def cmd_run(args: argparse.Namespace) -> int:
    from daemon.run import serve

    return await serve(_settings(args))


async def cmd_demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    if not 1 <= args.orders <= 100_000:
        raise OrderdError("--orders: from 1 to 100000")
    await run_demo(_settings(args), args.orders, lambda line: _out(f"demo: {line}"), keep=args.keep)
    return EXIT_OK


async def cmd_report(args: argparse.Namespace) -> int:
    from daemon import report

    since, until = moment("--since", args.since), moment("--until", args.until)
    if since is not None and until is not None and until < since:
        raise OrderdError("--until: before --since")
    figures = await report.report(_settings(args), since, until)
    if args.json:
        _out(msgspec.json.encode(figures).decode())
    else:
        for line in report.lines(figures):
            _out(line)
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

    def add(
        name: str,
        func: Command,
        help_text: str,
        sub: Any = commands,
        parents: Sequence[argparse.ArgumentParser] = (),
    ) -> Any:
        command = sub.add_parser(
            name, help=help_text, description=help_text, parents=[common, *parents]
        )
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

    stock = commands.add_parser("stock", help="stock levels, adjustments and reconciliation")
    stock_commands = stock.add_subparsers(dest="stock_command", required=True, metavar="ACTION")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--warehouse", metavar="CODE", help="warehouse code (default: the first)")
    movement = argparse.ArgumentParser(add_help=False)
    movement.add_argument(
        "--id", metavar="MOVEMENT", help="movement id; repeating one is refused (default: new)"
    )
    stock_set = add(
        "set",
        cmd_stock_set,
        "set the quantity on hand (a count)",
        stock_commands,
        (where, movement),
    )
    stock_set.add_argument("sku")
    stock_set.add_argument("quantity", help="units on hand, >= 0")
    stock_set.add_argument("--reason", help="why (default: stock set)")
    stock_adjust = add(
        "adjust",
        cmd_stock_adjust,
        "add or remove units on hand (+N receipt, -N damage)",
        stock_commands,
        (where, movement),
    )
    stock_adjust.add_argument("sku")
    stock_adjust.add_argument("delta", help="+N or -N")
    stock_adjust.add_argument("--reason", help="why: receipt, count, damage ... (required)")
    show = add("show", cmd_stock_show, "one sku's stock", stock_commands, (where,))
    show.add_argument("sku")
    show.add_argument("--json", action="store_true", help="print JSON")
    reconcile = add(
        "reconcile",
        cmd_stock_reconcile,
        "compare Redis with the ledger (exit 1 on drift)",
        stock_commands,
        (where,),
    )
    reconcile.add_argument("--fix", action="store_true", help="rebuild Redis from the ledger")

    add("recover", cmd_recover, "rebuild Redis state from PostgreSQL")
    shown = add("report", cmd_report, "fulfillment time, accuracy, satisfaction, turnover")
    shown.add_argument("--since", help="orders paid since this ISO date or time (default: all)")
    shown.add_argument("--until", help="orders paid until this ISO date or time (default: now)")
    shown.add_argument("--json", action="store_true", help="print JSON")
    add("run", cmd_run, "run the daemon (what systemd starts)")
    add_commands(commands, add)
    demo = add("demo", cmd_demo, "run orderd end to end on this machine")
    demo.add_argument("--orders", type=int, default=50, help="orders to run (default 50)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="then keep orderd serving (dashboard, admin API) until Ctrl-C",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orderd`` console script."""
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    debug = getattr(args, "debug", False)
    try:
        code: int = uvloop.run(args.func(args))
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
