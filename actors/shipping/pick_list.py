"""The pick list a picker walks, and the parcel its items make.

Pure: lines in, an ordered pick list or a parcel estimate out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from msgspec import Struct

from actors.shipping.carriers import Parcel

_RUNS = re.compile(r"\d+|\D+")
_MIN_SIDE_CM = 1.0

# One run of a bin code: (0, number, digits) for digits, (1, 0, text) for anything else,
# so numbers compare as numbers and never against text.
BinRun = tuple[int, int, str]


class PickLine(Struct, frozen=True, kw_only=True):
    line_no: int
    sku: str
    name: str
    quantity: int
    bin: str  # zone-aisle-shelf location code, e.g. "A-02-10"
    weight_g: int  # one unit
    length_cm: float | None = None
    width_cm: float | None = None
    height_cm: float | None = None
    flags: tuple[str, ...] = ()  # handling notes from the catalog: fragile, keep_upright, ...


def bin_sort_key(bin: str) -> tuple[int, tuple[BinRun, ...]]:
    """A key that orders bin codes the way a picker walks them.

    Digit runs compare as numbers ("A-9" before "A-10", "A-2-3" before "A-2-10"), letters
    ignore case, and a line without a bin goes last.
    """
    code = bin.strip().casefold()
    runs = tuple(
        (0, int(run), run) if run.isdigit() else (1, 0, run) for run in _RUNS.findall(code)
    )
    return (0 if code else 1, runs)


def sort_pick_list(lines: Sequence[PickLine]) -> tuple[PickLine, ...]:
    """The lines in walking order: by bin, then SKU, then order line number."""
    return tuple(sorted(lines, key=lambda line: (bin_sort_key(line.bin), line.sku, line.line_no)))


def estimate_parcel(
    lines: Sequence[PickLine],
    *,
    default_box: tuple[float, float, float] = (30.0, 20.0, 10.0),
    tare_g: int = 100,
) -> Parcel:
    """The parcel the lines pack into: their weight plus the box, and its size.

    With every item's dimensions known, items lie flat and stack: the box is as long and
    wide as the largest item and as high as the stack. Otherwise the default box, since a
    guess from part of the items would understate the size.
    """
    if not lines:
        raise ValueError("a parcel needs at least one line")
    weight_g = sum(line.weight_g * line.quantity for line in lines) + tare_g
    sides: list[tuple[float, float, float]] = []
    for line in lines:
        if line.length_cm is None or line.width_cm is None or line.height_cm is None:
            length, width, height = default_box
            return Parcel(weight_g=weight_g, length_cm=length, width_cm=width, height_cm=height)
        longest, middle, shortest = sorted(
            (line.length_cm, line.width_cm, line.height_cm), reverse=True
        )
        sides.append((longest, middle, shortest * line.quantity))
    return Parcel(
        weight_g=weight_g,
        length_cm=max(_MIN_SIDE_CM, *(s[0] for s in sides)),
        width_cm=max(_MIN_SIDE_CM, *(s[1] for s in sides)),
        height_cm=max(_MIN_SIDE_CM, sum(s[2] for s in sides)),
    )
