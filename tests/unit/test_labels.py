from __future__ import annotations

import io
import re
from datetime import date

import pytest

from actors.order.types import Address
from adapters.carriers.labels import LabelData, code128, render_pdf, render_zpl
from adapters.carriers.tracking_numbers import (
    is_valid_sandbox_tracking_number,
    sandbox_tracking_number,
)

TRACKING = sandbox_tracking_number("shp_0001")

WAREHOUSE = Address(
    name="Orderd Warehouse",
    company="Example Goods Ltd",
    line1="1 Dock Road",
    city="Leeds",
    region="WYK",
    postal_code="LS1 1AA",
    country="GB",
    phone="+44 113 000 0000",
)
CUSTOMER = Address(
    name="Ann Example",
    line1="22 High Street",
    line2="Flat 3",
    city="York",
    postal_code="YO1 7HH",
    country="GB",
)


def label(*, ship_to: Address = CUSTOMER, tracking_number: str = TRACKING) -> LabelData:
    return LabelData(
        ship_from=WAREHOUSE,
        ship_to=ship_to,
        carrier="Sandbox Express",
        service="Next Day",
        tracking_number=tracking_number,
        weight_g=1250,
        reference="shp_0001",
        ship_date=date(2024, 5, 1),
    )


def customer_named(name: str) -> Address:
    return Address(name=name, line1="22 High Street", city="York", country="GB")


# ---- reading the PDF back ------------------------------------------------------------------


def xref_entries(pdf: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, generation, kind) per object number, from the file's only xref section."""
    startxref = re.search(rb"startxref\n(\d+)\n%%EOF\n?\Z", pdf)
    assert startxref is not None
    start = int(startxref.group(1))
    header = re.compile(rb"xref\n0 (\d+)\n").match(pdf, start)
    assert header is not None
    count = int(header.group(1))
    table = pdf[header.end() : header.end() + 20 * count]
    entries = []
    for number in range(count):
        entry = re.fullmatch(rb"(\d{10}) (\d{5}) ([nf]) \n", table[20 * number : 20 * number + 20])
        assert entry is not None, f"entry {number} is not 20 bytes of the right shape"
        entries.append((int(entry.group(1)), int(entry.group(2)), entry.group(3)))
    assert pdf[header.end() + 20 * count :].startswith(b"trailer")
    return entries


def content_stream(pdf: bytes) -> bytes:
    match = re.search(rb"<< /Length (\d+) >>\nstream\n", pdf)
    assert match is not None
    end = match.end() + int(match.group(1))
    assert pdf[end:].startswith(b"\nendstream"), "the stream's /Length is wrong"
    return pdf[match.end() : end]


def literal_strings(content: bytes) -> list[bytes]:
    """Every (...) string in ``content``, unescaped; fails if parentheses do not balance."""
    strings: list[bytes] = []
    current = bytearray()
    depth = 0
    index = 0
    while index < len(content):
        byte = content[index : index + 1]
        if depth == 0:
            assert byte != b")", f"unbalanced ) at {index}"
            if byte == b"(":
                depth = 1
        elif byte == b"\\":
            index += 1
            current += content[index : index + 1]
        elif byte == b"(":
            depth += 1
            current += byte
        elif byte == b")":
            depth -= 1
            if depth == 0:
                strings.append(bytes(current))
                current.clear()
            else:
                current += byte
        else:
            current += byte
        index += 1
    assert depth == 0, "a string is never closed"
    return strings


def shown_text(pdf: bytes) -> list[str]:
    return [raw.decode("cp1252") for raw in literal_strings(content_stream(pdf))]


# ---- PDF -------------------------------------------------------------------------------------


def test_the_pdf_is_framed_as_a_pdf_file() -> None:
    pdf = render_pdf(label())
    assert pdf.startswith(b"%PDF-1.")
    assert pdf.rstrip(b"\r\n").endswith(b"%%EOF")


def test_the_pdf_has_one_4x6_inch_page() -> None:
    pdf = render_pdf(label())
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    assert re.search(rb"/MediaBox\s*\[\s*0\s+0\s+288\s+432\s*\]", pdf)
    assert re.search(rb"/Count 1\b", pdf)


def test_every_xref_offset_points_at_its_object() -> None:
    pdf = render_pdf(label())
    entries = xref_entries(pdf)
    assert entries[0] == (0, 65535, b"f")
    for number, (offset, generation, kind) in enumerate(entries[1:], start=1):
        assert (generation, kind) == (0, b"n")
        assert pdf[offset:].startswith(f"{number} 0 obj\n".encode())
    assert len(re.findall(rb"(?m)^\d+ 0 obj$", pdf)) == len(entries) - 1


def test_startxref_points_at_the_xref_table() -> None:
    pdf = render_pdf(label())
    match = re.search(rb"startxref\s+(\d+)\s+%%EOF", pdf)
    assert match is not None
    assert pdf[int(match.group(1)) :].startswith(b"xref")


def test_the_pdf_uses_the_standard_helvetica_fonts() -> None:
    pdf = render_pdf(label())
    for font in (b"Helvetica", b"Helvetica-Bold"):
        assert b"/Subtype /Type1 /BaseFont /" + font + b" /Encoding /WinAnsiEncoding" in pdf


def test_the_label_shows_carrier_addresses_weight_date_reference_and_tracking_number() -> None:
    text = shown_text(render_pdf(label()))
    for expected in (
        "Sandbox Express",
        "Next Day",
        "Orderd Warehouse",
        "Ann Example",
        "22 High Street",
        "York, YO1 7HH",
        "WEIGHT 1.25 kg",
        "SHIP DATE 2024-05-01",
        "REF shp_0001",
        TRACKING,
    ):
        assert expected in text


def test_the_tracking_number_is_drawn_as_filled_bars() -> None:
    content = content_stream(render_pdf(label()))
    [(module, x, drawn)] = re.findall(
        rb"(?m)^q (\S+) 0 0 72 (\S+) 44 cm ((?:\d+ 0 \d+ 1 re )+)f Q$", content
    )
    # Read back as bar and space widths, the bars are the tracking number's symbol.
    widths: list[int] = []
    at = 0
    for start, width in re.findall(rb"(\d+) 0 (\d+) 1 re", drawn):
        if widths:
            widths.append(int(start) - at)  # the space before the bar
        widths.append(int(width))
        at = int(start) + int(width)
    assert widths == code128(TRACKING)
    # Centred across the page (to the thousandth of a point each number is written in).
    assert float(x) * 2 + at * float(module) == pytest.approx(288, abs=0.25)
    assert b"(" + TRACKING.encode() + b") Tj" in content


def test_parentheses_and_backslashes_in_a_name_are_escaped() -> None:
    name = "Ann (Shop) \\ Ltd)("
    pdf = render_pdf(label(ship_to=customer_named(name)))
    content = content_stream(pdf)
    assert rb"(Ann \(Shop\) \\ Ltd\)\() Tj" in content
    assert name in shown_text(pdf)  # the parser raises if the parentheses do not balance


def test_text_outside_winansi_becomes_question_marks() -> None:
    pdf = render_pdf(label(ship_to=customer_named("김민준 王 Zoë")))
    assert "??? ? Zoë" in shown_text(pdf)
    assert b"Zo\xeb" in content_stream(pdf)  # Latin-1 letters stay as they are


def test_control_characters_do_not_break_a_line() -> None:
    pdf = render_pdf(label(ship_to=customer_named("Ann\nExample\x00")))
    assert "Ann Example?" in shown_text(pdf)


def test_long_lines_are_cut_to_the_label_width() -> None:
    long_street = "Long Street " * 30
    pdf = render_pdf(label(ship_to=Address(name="Ann", line1=long_street, country="GB")))
    shown = next(text for text in shown_text(pdf) if text.startswith("Long Street"))
    assert long_street.startswith(shown)
    # Helvetica widths (1/1000 em) of these letters; the line is 12 pt, 264 pt wide at most.
    widths = {"L": 556, "o": 556, "n": 556, "g": 556, " ": 278, "S": 667, "t": 278, "r": 333}
    widths["e"] = 556

    def points(text: str) -> float:
        return sum(widths[char] for char in text) * 12 / 1000

    assert points(shown) <= 264 < points(long_street[: len(shown) + 1])


def test_a_tracking_number_code_128_cannot_encode_is_refused() -> None:
    with pytest.raises(ValueError, match="Code 128"):
        render_pdf(label(tracking_number="SB№1"))


def test_pypdf_reads_the_label_as_one_page() -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(render_pdf(label())))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == (288, 432)
    assert TRACKING in page.extract_text()


# ---- Code 128 --------------------------------------------------------------------------------


def symbols(widths: list[int]) -> list[list[int]]:
    """The widths split into 6-element symbols, the 7-element stop pattern last."""
    body, stop = widths[:-7], widths[-7:]
    return [body[index : index + 6] for index in range(0, len(body), 6)] + [stop]


def test_code_128_matches_a_hand_computed_symbol() -> None:
    # "PJJ123C" in code set B: value = ASCII - 32.
    values = [48, 42, 42, 17, 18, 19, 35]
    assert values == [ord(char) - 32 for char in "PJJ123C"]
    checksum = (104 + sum(position * value for position, value in enumerate(values, 1))) % 103
    assert checksum == 55  # 879 mod 103

    parts = symbols(code128("PJJ123C"))
    assert len(parts) == 1 + 7 + 1 + 1
    assert parts[0] == [2, 1, 1, 2, 1, 4]  # start B (104)
    assert parts[1] == [3, 1, 3, 1, 2, 1]  # "P" (48)
    assert parts[4] == [1, 2, 3, 2, 2, 1]  # "1" (17)
    assert parts[-2] == [3, 1, 1, 3, 2, 1]  # checksum 55
    assert parts[-1] == [2, 3, 3, 1, 1, 1, 2]  # stop


@pytest.mark.parametrize("text", ["A", "SB123", TRACKING, "Hello, World! ~{}|"])
def test_code_128_has_the_documented_module_count(text: str) -> None:
    widths = code128(text)
    assert sum(widths) == 11 * (len(text) + 2) + 13
    assert len(widths) == 6 * (len(text) + 2) + 7


def test_every_code_128_symbol_is_eleven_modules_of_alternating_bars_and_spaces() -> None:
    printable = "".join(chr(code) for code in range(32, 127))
    parts = symbols(code128(printable))
    assert all(sum(part) == 11 for part in parts[:-1])
    assert sum(parts[-1]) == 13
    assert all(1 <= width <= 4 for part in parts for width in part)
    # In every Code 128 symbol the bars add up to an even number of modules.
    assert all(sum(part[0::2]) % 2 == 0 for part in parts)
    data = [tuple(part) for part in parts[1:-2]]
    assert len(set(data)) == len(data) == 95


def test_code_128_starts_and_ends_with_a_bar() -> None:
    widths = code128("SB1")
    assert len(widths) % 2 == 1  # odd count: bar, space, ..., bar


@pytest.mark.parametrize("text", ["", "é", "tab\there", "\x7f", "王"])
def test_code_128_refuses_what_set_b_cannot_encode(text: str) -> None:
    with pytest.raises(ValueError, match="Code 128"):
        code128(text)


# ---- ZPL -------------------------------------------------------------------------------------


def test_the_zpl_is_one_4x6_label_format() -> None:
    zpl = render_zpl(label())
    assert zpl.startswith(b"^XA")
    assert zpl.endswith(b"^XZ")
    assert zpl.count(b"^XA") == zpl.count(b"^XZ") == 1
    for command in (b"^PW812", b"^LL1218", b"^CI28"):
        assert command in zpl


def test_the_zpl_barcode_carries_the_tracking_number() -> None:
    zpl = render_zpl(label())
    assert re.search(rb"\^BCN[^\^]*\^FD" + TRACKING.encode() + rb"\^FS", zpl)


def test_the_zpl_shows_the_label_text() -> None:
    zpl = render_zpl(label()).decode()
    for expected in ("Sandbox Express", "Ann Example", "York, YO1 7HH", "SHIP DATE 2024-05-01"):
        assert f"^FD{expected}^FS" in zpl
    assert "^FDREF shp_5F0001^FS" in zpl  # "_" is ^FH's escape character


def test_carets_and_tildes_in_a_name_are_hex_escaped() -> None:
    zpl = render_zpl(label(ship_to=customer_named("Ann ^XZ~JA_x"))).decode()
    assert "^XZ~JA" not in zpl
    assert "~" not in zpl
    assert "^FH^FDAnn _5EXZ_7EJA_5Fx^FS" in zpl


def test_zpl_keeps_non_latin_text_as_utf8() -> None:
    zpl = render_zpl(label(ship_to=customer_named("김민준 王")))
    assert "^FD김민준 王^FS".encode() in zpl


def test_zpl_lines_are_cut_and_stay_on_one_line() -> None:
    zpl = render_zpl(label(ship_to=customer_named("Ann\nExample " + "x" * 200))).decode()
    name = re.search(r"\^FD(Ann Example x+)\^FS", zpl)
    assert name is not None
    assert len(name.group(1)) < 50


@pytest.mark.parametrize("tracking_number", ["SB^1", "SB~1", "SB>1", "SB№1", "1" * 80])
def test_zpl_refuses_a_tracking_number_it_cannot_print_as_a_barcode(
    tracking_number: str,
) -> None:
    with pytest.raises(ValueError, match=r"tracking number|Code 128"):
        render_zpl(label(tracking_number=tracking_number))


# ---- tracking numbers ------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn rule as published: double every second digit from the right, sum, mod 10."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def test_the_luhn_reference_accepts_the_textbook_number() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize("seed", ["shp_0001", "shp_0002", "", "quote-ß-王"])
def test_sandbox_tracking_numbers_are_sb_14_digits_and_a_luhn_digit(seed: str) -> None:
    number = sandbox_tracking_number(seed)
    assert re.fullmatch(r"SB[0-9]{15}", number)
    assert len(number) == 17
    assert luhn_valid(number[2:])
    assert is_valid_sandbox_tracking_number(number)


def test_sandbox_tracking_numbers_are_deterministic() -> None:
    assert sandbox_tracking_number("shp_0001") == sandbox_tracking_number("shp_0001")


def test_different_seeds_give_different_numbers() -> None:
    numbers = {sandbox_tracking_number(f"shp_{index}") for index in range(200)}
    assert len(numbers) == 200


def test_the_validator_rejects_any_changed_digit() -> None:
    number = sandbox_tracking_number("shp_0001")
    for position in range(2, len(number)):
        for digit in "0123456789":
            if digit != number[position]:
                changed = number[:position] + digit + number[position + 1 :]
                assert not is_valid_sandbox_tracking_number(changed)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SB",
        "XX" + "0" * 15,
        "sb" + "0" * 15,
        "SB" + "0" * 14,
        "SB" + "0" * 16,
        "SB" + "\u0661" * 15,
    ],
)
def test_the_validator_rejects_other_shapes(value: str) -> None:
    assert not is_valid_sandbox_tracking_number(value)
