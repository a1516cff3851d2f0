"""The pick list a picker carries through the warehouse, as a printable A4 PDF.

Pure: a fulfillment request in, PDF bytes out. The lines keep the request's walking order,
each with a box to tick; every page repeats the order's header, the first also shows where
the parcel goes and the customer's note, the last the totals and the packer's signatures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from actors.shipping.pick_list import PickLine
from actors.shipping.warehouse import FulfillmentRequest
from adapters.pdf import Page, document, measure, winansi

_PAGE_WIDTH = 595  # A4 portrait in points
_PAGE_HEIGHT = 842
_MARGIN = 36
_TOP = _PAGE_HEIGHT - _MARGIN
_RIGHT = _PAGE_WIDTH - _MARGIN
_CUT = "\u2026"  # ends text cut to its column, so a picker knows there is more

# Heights of the horizontal bands, top to bottom; pagination and drawing both use them.
_HEADER_HEIGHT = 72
_SHIP_TO_HEIGHT = 62  # first page only
_HEADINGS_HEIGHT = 20
_ROW_HEIGHT = 20  # room to tick a box and to read across without a ruler
_CLOSING_HEIGHT = 92  # last page only: totals, then the signatures at the bottom

# Table columns, left edges; quantity and weight are right-aligned to their right edges.
_GAP = 6
_BIN_X = _MARGIN + 18  # the tick box sits before the bin
_SKU_X = _BIN_X + 84
_NAME_X = _SKU_X + 110
_WEIGHT_RIGHT = _RIGHT
_QTY_RIGHT = _WEIGHT_RIGHT - 70
_BIN_WIDTH = _SKU_X - _BIN_X - _GAP
_SKU_WIDTH = _NAME_X - _SKU_X - _GAP
_NAME_WIDTH = _QTY_RIGHT - 40 - _NAME_X  # the quantity column is 40 wide, its gap included

# Widths of the header fields but the last, which takes what is left.
_FIELD_WIDTHS = (125, 100, 90, 78)
_NOTE_X = _MARGIN + 260
_NOTE_LINES = 3


def render_pick_list_pdf(request: FulfillmentRequest) -> bytes:
    """The request's pick list as an A4 portrait PDF of one or more pages.

    Rows keep the order of ``request.pick_list`` (the walking order); a long list goes on
    over further pages of about thirty rows.
    """
    lines = request.pick_list
    chunks = _paginate(len(lines))
    pages = []
    for number, rows in enumerate(chunks, start=1):
        page = Page(width=_PAGE_WIDTH, height=_PAGE_HEIGHT, margin=_MARGIN)
        _header(page, request, number=number, count=len(chunks))
        top = _TOP - _HEADER_HEIGHT
        if number == 1:
            _ship_to(page, request, top=top)
            top -= _SHIP_TO_HEIGHT
        bottom = _table(page, lines[rows.start : rows.stop], top=top)
        if number == len(chunks):
            _totals(page, request, top=bottom)
            _signatures(page)
        pages.append(page)
    return document(pages)


def _rows_below(top: float) -> int:
    """How many rows a table starting at ``top`` holds above the bottom margin."""
    return int((top - _HEADINGS_HEIGHT - _MARGIN) // _ROW_HEIGHT)


def _paginate(count: int) -> list[range]:
    """Which rows go on which page, the last page keeping room for the totals."""
    closing_rows = math.ceil(_CLOSING_HEIGHT / _ROW_HEIGHT)
    capacity = _rows_below(_TOP - _HEADER_HEIGHT - _SHIP_TO_HEIGHT)
    pages = []
    start = 0
    while count - start + closing_rows > capacity:
        # At least one row moves on with the totals, which never stand on a page alone.
        taken = min(capacity, count - start - 1)
        pages.append(range(start, start + taken))
        start += taken
        capacity = _rows_below(_TOP - _HEADER_HEIGHT)
    pages.append(range(start, count))
    return pages


def _header(page: Page, request: FulfillmentRequest, *, number: int, count: int) -> None:
    page_number = f"page {number} of {count}"
    page.right_text(_RIGHT, _TOP - 10, page_number, size=9)
    page.text(_MARGIN, _TOP - 10, "PICK LIST", size=10, bold=True)
    title_width = page.text_width - measure(page_number, size=9) - _GAP
    title = request.order_name or request.order_id
    page.text(_MARGIN, _TOP - 32, title, size=18, bold=True, max_width=title_width, mark=_CUT)

    promised_by = request.promised_by.isoformat() if request.promised_by else "-"
    fields = (
        ("SHIPMENT", request.shipment_id),
        ("WAREHOUSE", request.warehouse),
        ("SERVICE", request.service_level),
        ("PROMISED BY", promised_by),
        ("REQUESTED", _timestamp(request.requested_at)),
    )
    x: float = _MARGIN
    for index, (heading, value) in enumerate(fields):
        width = _FIELD_WIDTHS[index] if index < len(_FIELD_WIDTHS) else _RIGHT - x
        page.text(x, _TOP - 48, heading, size=7, bold=True)
        page.text(x, _TOP - 60, value, size=10, max_width=width - _GAP, mark=_CUT)
        x += width
    page.rule(_TOP - 68)


def _ship_to(page: Page, request: FulfillmentRequest, *, top: float) -> None:
    """Who the parcel is for, and the customer's note: a pick list needs no full address."""
    address = request.ship_to
    width = _NOTE_X - _MARGIN - 2 * _GAP
    place = ", ".join(part for part in (address.city, address.country) if part.strip())
    page.text(_MARGIN, top - 12, "SHIP TO", size=7, bold=True)
    page.text(_MARGIN, top - 28, address.name, size=13, bold=True, max_width=width, mark=_CUT)
    page.text(_MARGIN, top - 42, place, size=10, max_width=width, mark=_CUT)

    note = _wrap(request.note or "", size=9, width=_RIGHT - _NOTE_X)
    if note:
        page.text(_NOTE_X, top - 12, "NOTE", size=7, bold=True)
        for index, line in enumerate(note[:_NOTE_LINES]):
            if index == _NOTE_LINES - 1 and len(note) > _NOTE_LINES:
                # Joined with what follows, the line is too wide, so it is cut and marked.
                line = f"{line} {note[_NOTE_LINES]}"
            page.text(_NOTE_X, top - 24 - 11 * index, line, size=9, mark=_CUT)
    page.rule(top - 58)


def _table(page: Page, lines: Sequence[PickLine], *, top: float) -> float:
    """The headings and one row per line from ``top`` down; returns the bottom of the rows."""
    page.text(_BIN_X, top - 12, "Bin", size=8, bold=True)
    page.text(_SKU_X, top - 12, "SKU", size=8, bold=True)
    page.text(_NAME_X, top - 12, "Name", size=8, bold=True)
    page.right_text(_QTY_RIGHT, top - 12, "Qty", size=8, bold=True)
    page.right_text(_WEIGHT_RIGHT, top - 12, "Weight", size=8, bold=True)
    page.rule(top - 17)

    y = top - _HEADINGS_HEIGHT
    for line in lines:
        baseline = y - 14
        page.box(_MARGIN + 1, y - 15, 10, 10)
        bin_code = line.bin or "no bin"
        page.text(_BIN_X, baseline, bin_code, size=10, bold=True, max_width=_BIN_WIDTH, mark=_CUT)
        page.text(_SKU_X, baseline, line.sku, size=9, max_width=_SKU_WIDTH, mark=_CUT)
        # Handling notes first in the cell, so a cut long name never hides them.
        name = f"[{', '.join(line.flags)}] {line.name}" if line.flags else line.name
        page.text(_NAME_X, baseline, name, size=9, max_width=_NAME_WIDTH, mark=_CUT)
        page.right_text(_QTY_RIGHT, baseline, str(line.quantity), size=10, bold=True)
        page.right_text(_WEIGHT_RIGHT, baseline, _weight(line.weight_g * line.quantity), size=9)
        y -= _ROW_HEIGHT
        page.rule(y, thickness=0.25)
    return y


def _totals(page: Page, request: FulfillmentRequest, *, top: float) -> None:
    lines = request.pick_list
    units = sum(line.quantity for line in lines)
    items_g = sum(line.weight_g * line.quantity for line in lines)
    parcel = request.parcel
    page.rule(top - 1)
    baseline = top - 15
    page.text(_BIN_X, baseline, "TOTAL", size=9, bold=True)
    page.text(_SKU_X, baseline, f"{len(lines)} lines", size=9)
    page.right_text(_QTY_RIGHT, baseline, str(units), size=10, bold=True)
    page.right_text(_WEIGHT_RIGHT, baseline, _weight(items_g), size=9)
    size = " x ".join(f"{side:g}" for side in (parcel.length_cm, parcel.width_cm, parcel.height_cm))
    parcel_line = f"Estimated parcel: {_weight(parcel.weight_g)} with packaging, {size} cm"
    page.text(_BIN_X, baseline - 16, parcel_line, size=9)


def _signatures(page: Page) -> None:
    """Lines for the packer and the checker to sign, at the foot of the page."""
    baseline = _MARGIN + 6
    half = page.text_width / 2
    for x, label in ((_MARGIN, "Packed by"), (_MARGIN + half, "Checked by")):
        page.text(x, baseline, label, size=10)
        start = x + measure(label, size=10) + _GAP
        page.rectangle(start, baseline - 2, x + half - 2 * _GAP - start, 0.5)


def _wrap(text: str, *, size: float, width: float) -> list[str]:
    """``text`` broken into lines no wider than ``width`` at spaces; a longer word stays whole."""
    lines: list[str] = []
    current = ""
    for word in winansi(text).split():
        candidate = f"{current} {word}" if current else word
        if current and measure(candidate, size=size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _timestamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}".rstrip()


def _weight(grams: int) -> str:
    return f"{grams} g" if grams < 1000 else f"{grams / 1000:.2f} kg"
