"""Small PDF documents written by hand: pages of Helvetica text and filled or outlined boxes.

Enough for labels and warehouse printouts without a PDF library: the two standard Helvetica
fonts in WinAnsiEncoding (so nothing is embedded), text cut to fit by Adobe's glyph widths,
and a PDF 1.4 file of one or more pages with a correct xref table. Pure: pages in, bytes out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# Advance widths (1/1000 em) of printable ASCII, codes 32..126, from Adobe's AFM files.
# Character 39 is quotesingle and 96 grave, as WinAnsiEncoding maps them.
# fmt: off
_HELVETICA = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
)
_HELVETICA_BOLD = (
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
)
# fmt: on

# No WinAnsi glyph in either font is wider than this; used for what the tables lack.
_WIDEST_GLYPH = 1000


class Page:
    """The drawing operators of one page's content stream, fonts /F1 and /F2 (bold).

    Coordinates are points from the bottom left corner; ``margin`` bounds text on the left
    and right.
    """

    def __init__(self, *, width: float, height: float, margin: float) -> None:
        self.width = width
        self.height = height
        self.margin = margin
        self._operators: list[bytes] = []

    @property
    def text_width(self) -> float:
        """The width between the left and right margins."""
        return self.width - 2 * self.margin

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: float,
        bold: bool = False,
        max_width: float | None = None,
        mark: str = "",
    ) -> None:
        """Draw ``text`` with its baseline at (x, y), cut to fit before the right margin.

        ``mark`` ends the text where it is cut, e.g. an ellipsis.
        """
        limit = self.width - self.margin - x if max_width is None else max_width
        shown = fit(winansi(text), size=size, bold=bold, max_width=limit, mark=mark)
        self._show(x, y, shown, size, bold)

    def centred_text(self, y: float, text: str, *, size: float, bold: bool = False) -> None:
        """Draw ``text`` centred across the page, cut to the text width."""
        shown = fit(winansi(text), size=size, bold=bold, max_width=self.text_width)
        x = (self.width - measure(shown, size=size, bold=bold)) / 2
        self._show(x, y, shown, size, bold)

    def right_text(
        self,
        right: float,
        y: float,
        text: str,
        *,
        size: float,
        bold: bool = False,
        max_width: float | None = None,
    ) -> None:
        """Draw ``text`` so that it ends at ``right``, cut to fit after the left margin."""
        limit = right - self.margin if max_width is None else max_width
        shown = fit(winansi(text), size=size, bold=bold, max_width=limit)
        self._show(right - measure(shown, size=size, bold=bold), y, shown, size, bold)

    def rule(self, y: float, *, thickness: float = 0.75) -> None:
        """A horizontal line across the text width."""
        self.rectangle(self.margin, y, self.text_width, thickness)

    def rectangle(self, x: float, y: float, width: float, height: float) -> None:
        """A filled black rectangle with its bottom left corner at (x, y)."""
        self._operators.append(f"{_corner(x, y, width, height)} re f".encode())

    def barcode(
        self, widths: Sequence[int], *, x: float, bottom: float, module: float, height: float
    ) -> None:
        """The bars of a one-dimensional barcode: ``widths`` alternate bar, space, bar, ...
        in modules ``module`` points wide, from ``x``, standing on ``bottom``.

        Drawn in module units under one transformation and filled at once: each bar is a
        few small integers, and stays exactly as wide as its modules.
        """
        rectangles = []
        at = 0
        for index, width in enumerate(widths):
            if index % 2 == 0:  # even positions are bars, odd ones spaces
                rectangles.append(f"{at} 0 {width} 1 re")
            at += width
        place = " ".join(format_number(n) for n in (module, 0, 0, height, x, bottom))
        self._operators.append(f"q {place} cm {' '.join(rectangles)} f Q".encode())

    def box(self, x: float, y: float, width: float, height: float) -> None:
        """The outline of a rectangle with its bottom left corner at (x, y)."""
        # q/Q keep the line width to this box.
        self._operators.append(f"q 0.75 w {_corner(x, y, width, height)} re S Q".encode())

    def content(self) -> bytes:
        """The content stream's bytes."""
        return b"\n".join(self._operators) + b"\n"

    def _show(self, x: float, y: float, shown: str, size: float, bold: bool) -> None:
        font = "/F2" if bold else "/F1"
        position = f"{format_number(x)} {format_number(y)}"
        self._operators.append(
            f"BT {font} {format_number(size)} Tf {position} Td (".encode()
            + escape_string(shown)
            + b") Tj ET"
        )


def _corner(x: float, y: float, width: float, height: float) -> str:
    return f"{format_number(x)} {format_number(y)} {format_number(width)} {format_number(height)}"


def document(pages: Sequence[Page]) -> bytes:
    """A complete PDF 1.4 file of ``pages`` in order, with its xref table.

    Raises ValueError for no pages.
    """
    if not pages:
        raise ValueError("a PDF document needs at least one page")
    # Objects: 1 catalog, 2 page tree, then a page and its content stream per page, then
    # the two fonts, so every number is known before anything is written.
    first_font = 3 + 2 * len(pages)
    font = "<< /Type /Font /Subtype /Type1 /BaseFont /{} /Encoding /WinAnsiEncoding >>"
    kids = " ".join(f"{3 + 2 * index} 0 R" for index in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
    ]
    for index, page in enumerate(pages):
        content = page.content()
        size = f"{format_number(page.width)} {format_number(page.height)}"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size}]"
            f" /Resources << /Font << /F1 {first_font} 0 R /F2 {first_font + 1} 0 R >> >>"
            f" /Contents {4 + 2 * index} 0 R >>".encode()
        )
        objects.append(
            f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
        )
    objects += [font.format("Helvetica").encode(), font.format("Helvetica-Bold").encode()]

    # The second line's high bytes tell transfer tools the file is binary.
    output = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_offset = len(output)
    # Each entry is exactly 20 bytes, its line ending being a space and a newline.
    output += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    output += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    output += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    output += f"startxref\n{xref_offset}\n%%EOF\n".encode()
    return bytes(output)


def one_line(text: str) -> str:
    """``text`` on one line: whitespace becomes a space, other control characters "?"."""
    if text.isprintable():  # nearly every address line and name
        return text
    return "".join(" " if char.isspace() else char if char.isprintable() else "?" for char in text)


def winansi(text: str) -> str:
    """``text`` on one line, with what the standard fonts cannot show replaced by "?"."""
    if text.isascii() and text.isprintable():
        return text
    # The codec replaces each character WinAnsi lacks with one "?".
    return one_line(text).encode("cp1252", "replace").decode("cp1252")


def _glyph_width(char: str, widths: Sequence[int]) -> int:
    if " " <= char <= "~":
        return widths[ord(char) - 32]
    # Accented Latin letters are as wide as their base letter in both fonts.
    base = unicodedata.normalize("NFD", char)[0]
    if base != char and " " <= base <= "~":
        return widths[ord(base) - 32]
    return _WIDEST_GLYPH


def _width_table(widths: Sequence[int]) -> dict[str, int]:
    """The width of every character WinAnsiEncoding has, looked up once, not per glyph drawn."""
    table = {}
    for code in range(256):
        try:
            char = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            continue  # the five codes WinAnsiEncoding leaves unassigned
        table[char] = _glyph_width(char, widths)
    return table


_WIDTHS = _width_table(_HELVETICA)
_BOLD_WIDTHS = _width_table(_HELVETICA_BOLD)


def _units(text: str, *, bold: bool) -> int:
    """The width of ``text`` in 1/1000 em."""
    widths = _BOLD_WIDTHS if bold else _WIDTHS
    return sum([widths.get(char, _WIDEST_GLYPH) for char in text])


def measure(text: str, *, size: float, bold: bool = False) -> float:
    """The width of ``text`` (already WinAnsi-safe) in points, in Helvetica of ``size``."""
    return _units(text, bold=bold) * size / 1000


def fit(text: str, *, size: float, bold: bool = False, max_width: float, mark: str = "") -> str:
    """The longest start of ``text`` no wider than ``max_width`` points.

    When ``text`` has to be cut, the start is followed by ``mark`` (WinAnsi-safe), within
    the same width.
    """
    room = max_width * 1000 / size  # in 1/1000 em, as the width tables count
    if _units(text, bold=bold) <= room:  # most lines fit whole
        return text
    widths = _BOLD_WIDTHS if bold else _WIDTHS
    used = 0
    for index, char in enumerate(text):
        used += widths.get(char, _WIDEST_GLYPH)
        if used > room:
            if not mark:
                return text[:index]
            rest = max_width - measure(mark, size=size, bold=bold)
            return fit(text[:index], size=size, bold=bold, max_width=rest).rstrip() + mark
    return text


def escape_string(text: str) -> bytes:
    """``text`` (already WinAnsi-safe) as the inside of a PDF literal string."""
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def format_number(value: float) -> str:
    """A PDF number: at most three decimals, no exponent, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")
