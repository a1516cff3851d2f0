from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from typing import NamedTuple

import pytest

from actors.order.types import Address
from actors.shipping.carriers import Parcel
from actors.shipping.pick_list import PickLine
from actors.shipping.warehouse import FulfillmentRequest
from adapters.pdf import document, fit, measure
from adapters.wms.printout import render_pick_list_pdf
from tests.unit.test_labels import literal_strings, xref_entries

CUSTOMER = Address(
    name="Ann Example",
    line1="22 High Street",
    line2="Flat 3",
    city="York",
    postal_code="YO1 7HH",
    country="GB",
)


def pick_line(number: int, *, bin: str = "", name: str = "", quantity: int = 1) -> PickLine:
    return PickLine(
        line_no=number,
        sku=f"SKU-{number:04d}",
        name=name or f"Widget {number}",
        quantity=quantity,
        bin=bin or f"A-{number // 10:02d}-{number % 10:02d}",
        weight_g=250,
    )


def request(
    lines: tuple[PickLine, ...] | None = None,
    *,
    order_name: str | None = "#1001",
    ship_to: Address = CUSTOMER,
    note: str | None = None,
) -> FulfillmentRequest:
    if lines is None:
        lines = (
            pick_line(1, bin="A-01-02", quantity=2),
            pick_line(2, bin="B-03-01"),
            pick_line(3, bin="C-10-07", quantity=3),
        )
    return FulfillmentRequest(
        shipment_id="shp_0001",
        order_id="ord_0001",
        order_name=order_name,
        warehouse="leeds",
        requested_at=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        pick_list=lines,
        service_level="next_day",
        promised_by=date(2024, 5, 2),
        parcel=Parcel(weight_g=1850, length_cm=30, width_cm=20, height_cm=10),
        ship_to=ship_to,
        note=note,
    )


def many_lines(count: int) -> tuple[PickLine, ...]:
    return tuple(pick_line(number) for number in range(1, count + 1))


# ---- reading the PDF back ------------------------------------------------------------------


class Text(NamedTuple):
    bold: bool
    size: float
    x: float
    y: float
    text: str


_TEXT = re.compile(rb"BT /F([12]) (\S+) Tf (\S+) (\S+) Td \(((?:\\.|[^\\()])*)\) Tj ET")


def content_streams(pdf: bytes) -> list[bytes]:
    """Every content stream, in page order, each checked against its /Length."""
    streams = []
    for match in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        end = match.end() + int(match.group(1))
        assert pdf[end:].startswith(b"\nendstream"), "a stream's /Length is wrong"
        streams.append(pdf[match.end() : end])
    return streams


def page_texts(pdf: bytes) -> list[list[Text]]:
    """The text drawn on each page, in drawing order."""
    pages = []
    for content in content_streams(pdf):
        pages.append(
            [
                Text(
                    bold=match.group(1) == b"2",
                    size=float(match.group(2)),
                    x=float(match.group(3)),
                    y=float(match.group(4)),
                    text=re.sub(rb"\\(.)", rb"\1", match.group(5)).decode("cp1252"),
                )
                for match in _TEXT.finditer(content)
            ]
        )
    return pages


def shown(pdf: bytes) -> list[str]:
    return [text.text for page in page_texts(pdf) for text in page]


# ---- the file ------------------------------------------------------------------------------


def test_a_short_pick_list_is_one_a4_portrait_page() -> None:
    pdf = render_pick_list_pdf(request())
    assert pdf.startswith(b"%PDF-1.")
    assert pdf.rstrip(b"\r\n").endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    assert re.search(rb"/MediaBox\s*\[\s*0\s+0\s+595\s+842\s*\]", pdf)
    assert re.search(rb"/Count 1\b", pdf)


@pytest.mark.parametrize("count", [3, 75])
def test_every_xref_offset_points_at_its_object(count: int) -> None:
    pdf = render_pick_list_pdf(request(many_lines(count)))
    entries = xref_entries(pdf)
    assert entries[0] == (0, 65535, b"f")
    for number, (offset, generation, kind) in enumerate(entries[1:], start=1):
        assert (generation, kind) == (0, b"n")
        assert pdf[offset:].startswith(f"{number} 0 obj\n".encode())
    assert len(re.findall(rb"(?m)^\d+ 0 obj$", pdf)) == len(entries) - 1
    startxref = re.search(rb"startxref\s+(\d+)\s+%%EOF", pdf)
    assert startxref is not None
    assert pdf[int(startxref.group(1)) :].startswith(b"xref")


def test_the_pdf_uses_the_standard_helvetica_fonts() -> None:
    pdf = render_pick_list_pdf(request())
    for font in (b"Helvetica", b"Helvetica-Bold"):
        assert b"/Subtype /Type1 /BaseFont /" + font + b" /Encoding /WinAnsiEncoding" in pdf


# ---- what is printed -----------------------------------------------------------------------


def test_rows_keep_the_given_walking_order() -> None:
    bins = ["C-01-01", "A-02-10", "B-10-03", "A-01-01"]  # deliberately not alphabetical
    lines = tuple(pick_line(number, bin=bin) for number, bin in enumerate(bins, start=1))
    text = shown(render_pick_list_pdf(request(lines)))
    positions = [text.index(bin) for bin in bins]
    assert positions == sorted(positions)


def test_each_row_shows_bin_sku_name_quantity_and_weight_after_a_tick_box() -> None:
    pdf = render_pick_list_pdf(request())
    (page,) = page_texts(pdf)
    row = next(index for index, text in enumerate(page) if text.text == "A-01-02")
    assert [text.text for text in page[row : row + 5]] == [
        "A-01-02",
        "SKU-0001",
        "Widget 1",
        "2",
        "500 g",  # 2 x 250 g
    ]
    (content,) = content_streams(pdf)
    box_x = re.findall(rb"(?m)^q \S+ w (\S+) \S+ \S+ \S+ re S Q$", content)
    boxes = [float(x) for x in box_x]
    assert len(boxes) == 3
    assert all(box < page[row].x for box in boxes)  # the box comes before the bin


def test_the_header_names_the_order_shipment_warehouse_service_and_dates() -> None:
    text = shown(render_pick_list_pdf(request()))
    for expected in (
        "PICK LIST",
        "#1001",
        "shp_0001",
        "leeds",
        "next_day",
        "2024-05-02",
        "2024-05-01 09:30 UTC",
        "page 1 of 1",
    ):
        assert expected in text


def test_the_order_id_stands_in_for_a_missing_order_name() -> None:
    assert "ord_0001" in shown(render_pick_list_pdf(request(order_name=None)))


def test_the_ship_to_block_has_only_name_city_and_country() -> None:
    text = shown(render_pick_list_pdf(request()))
    assert "Ann Example" in text
    assert "York, GB" in text
    assert not any("High Street" in line or "YO1" in line or "Flat" in line for line in text)


def test_the_customer_note_is_shown_and_cut_to_three_lines() -> None:
    note = "Please wrap as a gift. " * 40 + "Happy birthday!"
    (page,) = page_texts(render_pick_list_pdf(request(note=note)))
    heading = next(text for text in page if text.text == "NOTE")
    note_lines = [text for text in page if text.x == heading.x and text.y < heading.y]
    note_lines = [text for text in note_lines if text.y > heading.y - 40]
    assert len(note_lines) == 3
    assert note_lines[0].text.startswith("Please wrap as a gift.")
    assert note_lines[-1].text.endswith("\u2026")
    assert "Happy birthday!" not in "".join(text.text for text in page)


def test_there_is_no_note_heading_without_a_note() -> None:
    assert "NOTE" not in shown(render_pick_list_pdf(request(note=None)))
    assert "NOTE" not in shown(render_pick_list_pdf(request(note=" \n ")))


def test_totals_count_units_and_give_the_estimated_parcel_weight() -> None:
    (page,) = page_texts(render_pick_list_pdf(request()))
    total = next(text for text in page if text.text == "TOTAL")
    row = [text.text for text in page if text.y == total.y]
    assert row == ["TOTAL", "3 lines", "6", "1.50 kg"]  # 2 + 1 + 3 units of 250 g
    assert any("1.85 kg" in text.text and "30 x 20 x 10 cm" in text.text for text in page)


def test_the_last_page_has_the_packed_by_and_checked_by_lines() -> None:
    pdf = render_pick_list_pdf(request())
    assert {"Packed by", "Checked by"} <= set(shown(pdf))
    (content,) = content_streams(pdf)
    assert len(re.findall(rb"(?m)^\S+ \S+ \S+ 0\.5 re f$", content)) == 2  # the lines to sign


def test_a_long_list_spills_onto_three_pages() -> None:
    lines = many_lines(75)
    pdf = render_pick_list_pdf(request(lines))
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 3
    assert re.search(rb"/Count 3\b", pdf)
    assert len(re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+595\s+842\s*\]", pdf)) == 3
    pages = [[text.text for text in page] for page in page_texts(pdf)]
    assert len(pages) == 3
    for number, page in enumerate(pages, start=1):
        assert f"page {number} of 3" in page
        assert "#1001" in page  # the header repeats
        assert "Bin" in page  # and so do the column headings
        assert 10 <= sum(text.startswith("SKU-") for text in page) <= 35
    bins = [text for page in pages for text in page if re.fullmatch(r"A-\d\d-\d\d", text)]
    assert bins == [line.bin for line in lines]


def test_ship_to_and_note_are_on_the_first_page_and_totals_on_the_last() -> None:
    pages = [
        [text.text for text in page]
        for page in page_texts(render_pick_list_pdf(request(many_lines(75), note="Fragile")))
    ]
    assert [("Ann Example" in page, "Fragile" in page) for page in pages] == [
        (True, True),
        (False, False),
        (False, False),
    ]
    assert [("TOTAL" in page, "Packed by" in page) for page in pages] == [
        (False, False),
        (False, False),
        (True, True),
    ]


@pytest.mark.parametrize("count", [0, 1, 25, 26, 30, 31, 58, 59, 63, 64, 200])
def test_every_line_is_printed_once_whatever_the_length(count: int) -> None:
    lines = many_lines(count)
    pages = page_texts(render_pick_list_pdf(request(lines)))
    skus = [text.text for page in pages for text in page if text.text.startswith("SKU-")]
    assert skus == [line.sku for line in lines]
    # Every row and the totals stay above the signatures at the foot of the last page.
    signatures = next(text for text in pages[-1] if text.text == "Packed by")
    above = [text for text in pages[-1] if text.y != signatures.y]
    assert len(above) == len(pages[-1]) - 2  # "Packed by" and "Checked by"
    assert all(text.y > signatures.y + 20 for text in above)
    assert all(text.y > 30 for page in pages for text in page)


def test_parentheses_and_backslashes_in_a_name_are_escaped() -> None:
    name = "Mug (blue) \\ 330ml)("
    pdf = render_pick_list_pdf(request((pick_line(1, name=name),)))
    (content,) = content_streams(pdf)
    assert rb"(Mug \(blue\) \\ 330ml\)\() Tj" in content
    assert name.encode() in literal_strings(content)  # raises if parentheses do not balance


def test_non_latin_text_is_printed_as_question_marks() -> None:
    pdf = render_pick_list_pdf(
        request(
            (pick_line(1, name="茶碗 Zoë"),),
            order_name="注文 1001",
            ship_to=Address(name="김민준", city="Seoul", country="KR"),
            note="감사합니다",
        )
    )
    text = shown(pdf)
    assert "?? Zoë" in text
    assert "?? 1001" in text
    assert "???" in text
    assert "Seoul, KR" in text


def test_long_names_are_cut_before_the_quantity_column() -> None:
    name = "Extra long product name that will never fit in its column, size XL " * 3
    (page,) = page_texts(render_pick_list_pdf(request((pick_line(1, name=name, quantity=12),))))
    cut = next(text for text in page if text.text.startswith("Extra long"))
    quantity = next(text for text in page if text.text == "12")
    assert cut.text.endswith("\u2026")
    assert name.startswith(cut.text[:-1])
    assert cut.x + measure(cut.text, size=cut.size) < quantity.x


def test_pypdf_reads_every_page() -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(render_pick_list_pdf(request(many_lines(75)))))
    assert len(reader.pages) == 3
    for number, page in enumerate(reader.pages, start=1):
        assert (float(page.mediabox.width), float(page.mediabox.height)) == (595, 842)
        assert f"page {number} of 3" in page.extract_text()


# ---- the shared PDF pieces -----------------------------------------------------------------


def test_a_document_needs_a_page() -> None:
    with pytest.raises(ValueError, match="page"):
        document([])


@pytest.mark.parametrize("width", [5.0, 20.0, 40.0, 100.0])
def test_text_cut_with_a_mark_stays_within_the_width(width: float) -> None:
    text = "Widget with a name longer than any of these widths"
    cut = fit(text, size=10, max_width=width, mark="\u2026")
    assert cut.endswith("\u2026")
    assert measure(cut, size=10) <= width or cut == "\u2026"
    assert text.startswith(cut[:-1])


def test_text_that_fits_is_left_alone() -> None:
    assert fit("Widget", size=10, max_width=100, mark="\u2026") == "Widget"
