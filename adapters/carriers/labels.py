"""Shipping labels drawn by orderd itself: a 4x6 inch label as PDF or ZPL II, and Code 128.

Used where no carrier supplies the label file (the sandbox carrier). Pure: label data in,
bytes out. Both formats carry the same content: carrier and service, sender, recipient,
weight, ship date, orderd's reference and the tracking number as a Code 128 barcode.
"""

from __future__ import annotations

from datetime import date

import msgspec

from actors.order.types import Address
from adapters.pdf import Page, document, one_line


class LabelData(msgspec.Struct, frozen=True, kw_only=True):
    """Everything printed on one shipping label."""

    ship_from: Address
    ship_to: Address
    carrier: str  # as printed, e.g. "Sandbox Express"
    service: str
    tracking_number: str
    weight_g: int
    reference: str  # orderd's shipment id
    ship_date: date


# Code 128 bar/space widths in modules, one digit each, indexed by symbol value (ISO/IEC 15417).
# 0-102 are data symbols, 103-105 the start codes A, B and C, 106 the stop pattern.
# fmt: off
_CODE128_PATTERNS = (
    212222, 222122, 222221, 121223, 121322, 131222, 122213, 122312, 132212, 221213,
    221312, 231212, 112232, 122132, 122231, 113222, 123122, 123221, 223211, 221132,
    221231, 213212, 223112, 312131, 311222, 321122, 321221, 312212, 322112, 322211,
    212123, 212321, 232121, 111323, 131123, 131321, 112313, 132113, 132311, 211313,
    231113, 231311, 112133, 112331, 132131, 113123, 113321, 133121, 313121, 211331,
    231131, 213113, 213311, 213131, 311123, 311321, 331121, 312113, 312311, 332111,
    314111, 221411, 431111, 111224, 111422, 121124, 121421, 141122, 141221, 112214,
    112412, 122114, 122411, 142112, 142211, 241211, 221114, 413111, 241112, 134111,
    111242, 121142, 121241, 114212, 124112, 124211, 411212, 421112, 421211, 212141,
    214121, 412121, 111143, 111341, 131141, 114113, 114311, 411113, 411311, 113141,
    114131, 311141, 411131, 211412, 211214, 211232, 2331112,
)
# fmt: on
_START_B = 104
_STOP = 106
_QUIET_MODULES = 10  # blank space scanners need on each side of the bars


def code128(text: str) -> list[int]:
    """Module widths (bar, space, bar, ...) of ``text`` as a Code 128 code set B symbol.

    Includes the start code, the mod 103 checksum and the stop pattern. Raises ValueError
    for an empty text or a character outside printable ASCII (32..126).
    """
    if not text:
        raise ValueError("Code 128 needs at least one character")
    values = [_START_B]
    for char in text:
        if not " " <= char <= "~":
            raise ValueError(f"Code 128 set B cannot encode {char!r}")
        values.append(ord(char) - 32)
    checksum = (values[0] + sum(weight * value for weight, value in enumerate(values[1:], 1))) % 103
    values += [checksum, _STOP]
    return [int(width) for value in values for width in str(_CODE128_PATTERNS[value])]


def _address_lines(address: Address) -> list[str]:
    """The address as printed, top to bottom, without empty lines."""
    region_postal = " ".join(part for part in (address.region, address.postal_code) if part)
    city_line = ", ".join(part for part in (address.city, region_postal) if part)
    lines = [address.name, address.company, address.line1, address.line2, city_line]
    return [line for line in lines if line.strip()] + [address.country]


def _weight(grams: int) -> str:
    return f"{grams / 1000:.2f} kg"


# ---- PDF ----------------------------------------------------------------------------------

_PAGE_WIDTH = 288  # 4 x 6 inches in points
_PAGE_HEIGHT = 432
_MARGIN = 12
_TEXT_WIDTH = _PAGE_WIDTH - 2 * _MARGIN
_MAX_MODULE = 1.2  # points; wider bars gain nothing and crowd out long tracking numbers


def render_pdf(data: LabelData) -> bytes:
    """The label as a one-page PDF 1.4 document, 4x6 inches, using only the standard fonts.

    Raises ValueError when the tracking number cannot be drawn as a Code 128 barcode.
    """
    page = Page(width=_PAGE_WIDTH, height=_PAGE_HEIGHT, margin=_MARGIN)
    top = _PAGE_HEIGHT - _MARGIN
    page.text(_MARGIN, top - 16, data.carrier, size=16, bold=True)
    page.text(_MARGIN, top - 30, data.service, size=10)
    page.rule(top - 38)

    y = top - 50.0
    page.text(_MARGIN, y, "FROM", size=7, bold=True)
    for line in _address_lines(data.ship_from):
        y -= 9
        page.text(_MARGIN, y, line, size=8)
    y -= 8
    page.rule(y)

    y -= 12
    page.text(_MARGIN, y, "SHIP TO", size=8, bold=True)
    name, *rest = _address_lines(data.ship_to)
    y -= 16
    page.text(_MARGIN, y, name, size=14, bold=True)
    for line in rest:
        y -= 15
        page.text(_MARGIN, y, line, size=12)
    y -= 9
    page.rule(y)

    y -= 12
    page.text(_MARGIN, y, f"WEIGHT {_weight(data.weight_g)}", size=9, max_width=_TEXT_WIDTH / 2)
    page.text(_MARGIN + _TEXT_WIDTH / 2, y, f"SHIP DATE {data.ship_date.isoformat()}", size=9)
    y -= 12
    page.text(_MARGIN, y, f"REF {data.reference}", size=9)

    _barcode(page, data.tracking_number, bottom=44, height=72)
    page.centred_text(30, data.tracking_number, size=10, bold=True)
    return document([page])


def _barcode(page: Page, text: str, *, bottom: float, height: float) -> None:
    """``text`` as a Code 128 barcode, centred, as wide as the page allows."""
    widths = code128(text)
    modules = sum(widths)
    module = min(_MAX_MODULE, _PAGE_WIDTH / (modules + 2 * _QUIET_MODULES))
    x = (_PAGE_WIDTH - modules * module) / 2
    page.barcode(widths, x=x, bottom=bottom, module=module, height=height)


# ---- ZPL II -------------------------------------------------------------------------------

_DOTS_WIDE = 812  # 4 x 6 inches at 203 dpi
_DOTS_LONG = 1218
_DOTS_MARGIN = 40
_DOTS_TEXT_WIDTH = _DOTS_WIDE - 2 * _DOTS_MARGIN
# Font 0 is proportional and its metrics live in the printer, so lines are cut by count:
# this is a generous average character width, as a share of the font's width, for address text.
_ZPL_CHAR_WIDTH = 0.55
# ^FH's hex escapes for what would otherwise end the field or start a command.
_ZPL_ESCAPES = str.maketrans({"_": "_5F", "^": "_5E", "~": "_7E"})
# Code 128 field data uses these for subset and function codes, not as plain characters.
_ZPL_BARCODE_RESERVED = frozenset("^~>")


def render_zpl(data: LabelData) -> bytes:
    """The label as ZPL II for a 4x6 inch label on a 203 dpi printer, UTF-8 encoded.

    Raises ValueError when the tracking number cannot be printed as a Code 128 barcode
    across the label (a character outside printable ASCII, one of ``^ ~ >``, or too long).
    """
    reserved = _ZPL_BARCODE_RESERVED.intersection(data.tracking_number)
    if reserved:
        raise ValueError(f"tracking number has characters ZPL reserves: {sorted(reserved)}")
    modules = sum(code128(data.tracking_number))
    if modules + 2 * _QUIET_MODULES > _DOTS_WIDE:
        raise ValueError("tracking number too long for a barcode across the label")

    label = _ZplLabel()
    label.text(40, data.carrier, height=48)
    label.text(96, data.service, height=32)
    label.rule(144)

    label.text(164, "FROM", height=22)
    y = 194
    for line in _address_lines(data.ship_from):
        label.text(y, line, height=26)
        y += 30
    label.rule(y + 6)

    label.text(y + 28, "SHIP TO", height=26)
    name, *rest = _address_lines(data.ship_to)
    label.text(y + 62, name, height=48)
    y += 118
    for line in rest:
        label.text(y, line, height=40)
        y += 46
    label.rule(y + 6)

    half = _DOTS_TEXT_WIDTH // 2
    label.text(y + 28, f"WEIGHT {_weight(data.weight_g)}", height=30, width=half)
    label.text(y + 28, f"SHIP DATE {data.ship_date.isoformat()}", height=30, x=_DOTS_MARGIN + half)
    label.text(y + 68, f"REF {data.reference}", height=30)

    label.barcode(data.tracking_number, modules=modules, top=880, height=220)
    label.centred_text(1120, data.tracking_number, height=36)
    return label.render()


class _ZplLabel:
    """The commands of one label format, between ^XA and ^XZ."""

    def __init__(self) -> None:
        self._commands = ["^XA", "^CI28", f"^PW{_DOTS_WIDE}", f"^LL{_DOTS_LONG}", "^LH0,0"]

    def text(
        self,
        y: int,
        text: str,
        *,
        height: int,
        x: int = _DOTS_MARGIN,
        width: int | None = None,
    ) -> None:
        """A line of text with its top left corner at (x, y), cut to fit the label."""
        limit = _DOTS_WIDE - _DOTS_MARGIN - x if width is None else width
        field = _zpl_field(text, max_chars=int(limit // (height * _ZPL_CHAR_WIDTH)))
        self._commands.append(f"^FO{x},{y}^A0N,{height},{height}^FH^FD{field}^FS")

    def centred_text(self, y: int, text: str, *, height: int) -> None:
        """A line of text centred across the label."""
        max_chars = int(_DOTS_TEXT_WIDTH // (height * _ZPL_CHAR_WIDTH))
        field = _zpl_field(text, max_chars=max_chars)
        self._commands.append(
            f"^FO{_DOTS_MARGIN},{y}^A0N,{height},{height}"
            f"^FB{_DOTS_TEXT_WIDTH},1,0,C^FH^FD{field}^FS"
        )

    def rule(self, y: int) -> None:
        """A horizontal line across the text width."""
        self._commands.append(f"^FO{_DOTS_MARGIN},{y}^GB{_DOTS_TEXT_WIDTH},3,3^FS")

    def barcode(self, text: str, *, modules: int, top: int, height: int) -> None:
        """``text`` as a Code 128 barcode of ``modules`` modules, centred, no printed line."""
        module = min(3, _DOTS_WIDE // (modules + 2 * _QUIET_MODULES))
        x = (_DOTS_WIDE - modules * module) // 2
        self._commands.append(f"^FO{x},{top}^BY{module}^BCN,{height},N,N,N^FD{text}^FS")

    def render(self) -> bytes:
        """The finished label format."""
        return "\n".join([*self._commands, "^XZ"]).encode()


def _zpl_field(text: str, *, max_chars: int) -> str:
    """``text`` as ^FH field data: one line, at most ``max_chars`` characters, escaped."""
    return one_line(text)[:max_chars].translate(_ZPL_ESCAPES)
