"""Reading a product catalog CSV (sku,name,weight_g,bin,unit_cost, optional dimensions,
optional ``flags``: handling words such as ``fragile;keep_upright``, separated by ``;``,
and optional ``review_after_days`` / ``repeat_after_days``: the product's own follow-ups).

Pure: text in, products or a list of every problem (with its line number) out. A file is
taken whole or not at all, so the parser reports every bad row rather than the first.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from msgspec import Struct

from actors.order.types import is_valid_sku
from adapters.errors import CatalogError

REQUIRED = ("sku", "name", "weight_g", "bin", "unit_cost")
DIMENSIONS = ("length_cm", "width_cm", "height_cm")
FLAGS = "flags"
FOLLOW_UPS = ("review_after_days", "repeat_after_days")
_MAX_FOLLOW_UP_DAYS = 3650
_FLAG = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_ROWS = 1_000_000
_MAX_WEIGHT_G = 1_000_000  # a tonne: beyond that it is not a parcel
_MAX_COST = Decimal(1_000_000_000)
_MAX_DIMENSION_CM = Decimal(1000)
_CENT_CENT = Decimal("0.0001")  # four decimals, as the database keeps them


class Product(Struct, frozen=True, kw_only=True):
    sku: str
    name: str
    weight_g: int
    bin: str
    unit_cost: Decimal
    length_cm: Decimal | None = None
    width_cm: Decimal | None = None
    height_cm: Decimal | None = None
    flags: tuple[str, ...] = ()  # handling notes for the packer and the carrier
    # Days after delivery for this product's review request and repeat-purchase reminder
    # (a mattress is reviewed after a month, coffee runs out in three weeks).
    review_after_days: int | None = None
    repeat_after_days: int | None = None


def parse_catalog(lines: Iterable[str]) -> list[Product]:
    """Parse CSV text (header first) into products; raise :class:`CatalogError` listing problems."""
    reader = csv.reader(lines, strict=True)
    problems: list[str] = []
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CatalogError([f"line 1: not readable as CSV: {exc}"]) from None
    if header is None or not any(cell.strip() for cell in header):
        raise CatalogError(["line 1: empty file; expected a header: " + ",".join(REQUIRED)])
    columns = [cell.strip().lstrip("\ufeff").lower() for cell in header]
    header_problem = _check_header(columns)
    if header_problem:
        raise CatalogError([f"line 1: {header_problem}"])

    products: list[Product] = []
    first_seen: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"line {reader.line_num}: not readable as CSV: {exc}")
            break
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines are harmless
        if len(products) + len(problems) >= MAX_ROWS:
            problems.append(f"line {number}: more than {MAX_ROWS} rows; split the file")
            break
        if len(row) != len(columns):
            problems.append(f"line {number}: {len(row)} fields, the header has {len(columns)}")
            continue
        product, row_problems = _parse_row(dict(zip(columns, row, strict=True)))
        if product is not None and product.sku in first_seen:
            row_problems.append(f"sku {product.sku!r} repeats line {first_seen[product.sku]}")
        if row_problems:
            problems.extend(f"line {number}: {p}" for p in row_problems)
        elif product is not None:
            first_seen[product.sku] = number
            products.append(product)
    if problems:
        raise CatalogError(problems)
    if not products:
        raise CatalogError(["no products after the header"])
    return products


def _check_header(columns: list[str]) -> str | None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return f"header lacks {', '.join(missing)}; expected " + ",".join(REQUIRED)
    known = {*REQUIRED, *DIMENSIONS, FLAGS, *FOLLOW_UPS}
    unknown = [c for c in columns if c not in known]
    if unknown:
        return f"unknown column {unknown[0]!r}"
    if len(set(columns)) != len(columns):
        return "a column is named twice"
    present = [c for c in DIMENSIONS if c in columns]
    if present and len(present) != len(DIMENSIONS):
        return "dimensions need all of length_cm, width_cm, height_cm"
    return None


def _parse_row(row: dict[str, str]) -> tuple[Product | None, list[str]]:
    problems: list[str] = []
    sku = row["sku"].strip()
    if not is_valid_sku(sku):
        problems.append(
            f"sku {sku!r} is not valid (1-64 of letters, digits and . _ / + # -, "
            "starting with a letter or digit)"
        )
    name = row["name"].strip()
    if not name or len(name) > 200 or not name.isprintable():
        problems.append("name must be 1-200 printable characters")
    weight = row["weight_g"].strip()
    weight_g = int(weight) if weight.isdigit() else 0
    if not 0 < weight_g <= _MAX_WEIGHT_G:
        problems.append(f"weight_g must be whole grams from 1 to {_MAX_WEIGHT_G}, got {weight!r}")
    bin_code = row["bin"].strip()
    if not bin_code or len(bin_code) > 32 or not bin_code.isprintable():
        problems.append("bin must be 1-32 printable characters")
    unit_cost = _decimal(row["unit_cost"], "unit_cost", Decimal(0), _MAX_COST, problems)
    dims: dict[str, Decimal | None] = {}
    if "length_cm" in row:
        values = {c: row[c].strip() for c in DIMENSIONS}
        if any(values.values()) and not all(values.values()):
            problems.append("give all three dimensions or none")
        elif all(values.values()):
            for column in DIMENSIONS:
                dims[column] = _decimal(
                    values[column], column, Decimal("0.01"), _MAX_DIMENSION_CM, problems
                )
    flags = tuple(
        dict.fromkeys(f.strip().lower() for f in row.get(FLAGS, "").split(";") if f.strip())
    )
    bad = [f for f in flags if not _FLAG.fullmatch(f)]
    if bad or len(flags) > 8:
        problems.append("flags: up to 8 words of a-z, 0-9 and _, separated by ';'")
    review, repeat = (_days(row, column, problems) for column in FOLLOW_UPS)
    if problems or unit_cost is None:
        return None, problems
    product = Product(
        sku=sku, name=name, weight_g=weight_g, bin=bin_code, unit_cost=unit_cost, flags=flags,
        review_after_days=review, repeat_after_days=repeat, **dims,
    )  # fmt: skip
    return product, problems


def _days(row: dict[str, str], column: str, problems: list[str]) -> int | None:
    raw = row.get(column, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_FOLLOW_UP_DAYS:
        problems.append(f"{column}: whole days from 1 to {_MAX_FOLLOW_UP_DAYS}, or empty")
        return None
    return int(raw)


def _decimal(
    raw: str, column: str, low: Decimal, high: Decimal, problems: list[str]
) -> Decimal | None:
    text = raw.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        problems.append(f"{column} must be a number, got {text!r}")
        return None
    if not value.is_finite() or not low <= value <= high or value != value.quantize(_CENT_CENT):
        problems.append(f"{column} must be from {low} to {high} with at most 4 decimals")
        return None
    return value
