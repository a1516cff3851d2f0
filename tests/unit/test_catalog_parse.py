from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.catalog import Product, parse_catalog
from adapters.errors import CatalogError

HEADER = "sku,name,weight_g,bin,unit_cost"


def parse(text: str) -> list[Product]:
    return parse_catalog(text.splitlines(keepends=True))


def problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        parse(text)
    return caught.value.problems


def test_a_good_file_gives_every_product() -> None:
    products = parse(f'{HEADER}\nMUG-1,Mug,340,A-01-01,3.20\nTEE/M,"Tee, medium",190,A-02-02,4\n')
    assert products == [
        Product(sku="MUG-1", name="Mug", weight_g=340, bin="A-01-01", unit_cost=Decimal("3.20")),
        Product(sku="TEE/M", name="Tee, medium", weight_g=190, bin="A-02-02", unit_cost=Decimal(4)),
    ]


def test_dimensions_are_read_when_the_columns_are_there() -> None:
    text = (
        f"{HEADER},length_cm,width_cm,height_cm\nA,Box,100,B-1,1.5,30,20.5,10\nB,Bag,50,B-2,1,,,\n"
    )
    box, bag = parse(text)
    assert (box.length_cm, box.width_cm, box.height_cm) == (
        Decimal(30),
        Decimal("20.5"),
        Decimal(10),
    )
    assert (bag.length_cm, bag.width_cm, bag.height_cm) == (None, None, None)


def test_columns_may_come_in_any_order_with_a_byte_order_mark_and_blank_lines() -> None:
    products = parse("\ufeffUnit_Cost,bin,weight_g,name,sku\n\n2.5,C-1,10,Pen,PEN-1\n\n")
    assert products == [
        Product(sku="PEN-1", name="Pen", weight_g=10, bin="C-1", unit_cost=Decimal("2.5"))
    ]


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    text = (
        f"{HEADER}\n"
        "OK-1,Fine,10,A-1,1\n"  # line 2
        "bad sku,Spaces,10,A-1,1\n"  # line 3
        "OK-2,,10,A-1,1\n"  # line 4
        "OK-3,Heavy,12.5,A-1,1\n"  # line 5
        "OK-4,Free,0,A-1,1\n"  # line 6
        "OK-5,Cost,10,A-1,cheap\n"  # line 7
        "OK-6,Neg,10,A-1,-1\n"  # line 8
        "OK-7,Short,10\n"  # line 9
        "OK-1,Again,10,A-1,1\n"  # line 10
        "OK-8,NoBin,10,,1\n"  # line 11
        "OK-9,Precise,10,A-1,0.00001\n"  # line 12
    )
    found = problems(text)
    assert [p.split(":", 1)[0] for p in found] == [
        f"line {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    ]
    assert "sku 'bad sku' is not valid" in found[0]
    assert "name must be" in found[1]
    assert "weight_g must be whole grams" in found[2]
    assert "weight_g" in found[3]
    assert "unit_cost must be a number" in found[4]
    assert "unit_cost must be from 0" in found[5]
    assert "3 fields, the header has 5" in found[6]
    assert "repeats line 2" in found[7]
    assert "bin must be" in found[8]
    assert "at most 4 decimals" in found[9]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty file"),
        ("sku,name,weight_g\nA,B,1\n", "header lacks bin, unit_cost"),
        (f"{HEADER},colour\n", "unknown column 'colour'"),
        (f"{HEADER},sku\n", "named twice"),
        (f"{HEADER},length_cm\n", "dimensions need all"),
        (f"{HEADER}\n", "no products after the header"),
    ],
)
def test_a_bad_header_or_empty_file_is_rejected(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text))


def test_partial_dimensions_on_a_row_are_rejected() -> None:
    text = f"{HEADER},length_cm,width_cm,height_cm\nA,Box,100,B-1,1.5,30,,10\n"
    assert problems(text) == ["line 2: give all three dimensions or none"]


def test_an_unterminated_quote_is_reported() -> None:
    found = problems(f'{HEADER}\nA,"Box,100,B-1,1.5\n')
    assert "not readable as CSV" in found[0]


def test_non_finite_numbers_are_rejected() -> None:
    found = problems(f"{HEADER}\nA,Box,100,B-1,NaN\nB,Box,100,B-1,Infinity\n")
    assert len(found) == 2
    assert all("unit_cost must be from 0" in p for p in found)


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Z][A-Z0-9-]{0,10}", fullmatch=True),
            st.integers(min_value=1, max_value=1_000_000),
            st.decimals(min_value=0, max_value=10_000, places=2),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda row: row[0],
    )
)
def test_any_valid_catalog_round_trips(rows: list[tuple[str, int, Decimal]]) -> None:
    text = HEADER + "\n" + "".join(f"{sku},Item {sku},{g},Z-{g},{cost}\n" for sku, g, cost in rows)
    products = parse(text)
    assert [(p.sku, p.weight_g, p.unit_cost) for p in products] == rows


def test_handling_flags_are_read_lower_cased_and_once_each() -> None:
    text = (
        "sku,name,weight_g,bin,unit_cost,flags\n"
        "LAMP,Desk lamp,1450,C-01,18.90,Fragile;keep_upright;fragile\n"
        "TEE,Tee,180,A-02,4.75,\n"
    )
    lamp, tee = parse_catalog(text.splitlines(keepends=True))
    assert lamp.flags == ("fragile", "keep_upright")
    assert tee.flags == ()


def test_a_flag_that_is_not_a_plain_word_is_rejected() -> None:
    text = "sku,name,weight_g,bin,unit_cost,flags\nLAMP,Desk lamp,1450,C-01,18.90,fragile!\n"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text.splitlines(keepends=True))
    assert caught.value.problems == [
        "line 2: flags: up to 8 words of a-z, 0-9 and _, separated by ';'"
    ]


def test_a_product_may_set_its_own_follow_ups() -> None:
    text = (
        "sku,name,weight_g,bin,unit_cost,review_after_days,repeat_after_days\n"
        "BEAN,Coffee beans,500,B-1,6.00,,21\n"
        "BED,Mattress,9000,Z-1,300,60,\n"
        "MUG,Mug,340,A-1,3.20,0,x\n"
    )
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text.splitlines(keepends=True))
    assert caught.value.problems == [
        "line 4: review_after_days: whole days from 1 to 3650, or empty",
        "line 4: repeat_after_days: whole days from 1 to 3650, or empty",
    ]
    beans, bed = parse_catalog(text.splitlines(keepends=True)[:3])
    assert (beans.review_after_days, beans.repeat_after_days) == (None, 21)
    assert (bed.review_after_days, bed.repeat_after_days) == (60, None)
