"""Rows sent as one JSON parameter: what the SQL reads back is what was given."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec
import pytest

from adapters.postgres.rows import Raw, Rows


def test_each_column_is_read_by_its_place_and_cast_to_its_type() -> None:
    rows = Rows("id text", "n int", "doc jsonb", param=2)
    assert rows.columns == (
        "(r->>0)::text AS id, (r->>1)::int AS n, nullif(r->2, 'null'::jsonb)::jsonb AS doc"
    )
    assert rows.source == "jsonb_array_elements($2::jsonb) AS r"


def test_values_are_encoded_as_postgresql_reads_them() -> None:
    rows = Rows("a text", "b numeric", "c timestamptz", "d date", "e jsonb", "f bool")
    at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    encoded = rows.encode(
        [("x", Decimal("12.50"), at, date(2026, 11, 27), Raw(b'{"k": [1]}'), None)]
    )
    assert msgspec.json.decode(encoded) == [
        ["x", "12.50", "2026-11-26T09:30:00Z", "2026-11-27", {"k": [1]}, None]
    ]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="2 values"):
        Rows("a text", "b int").encode([("x",)])


def test_a_json_column_takes_json_text_and_keeps_it_as_written() -> None:
    rows = Rows("id text", "doc json")
    assert rows.columns == "(r->>0)::text AS id, (r->>1)::json AS doc"
    encoded = rows.encode([("a", '{"k":[1]}'), ("b", None)])
    assert msgspec.json.decode(encoded) == [["a", '{"k":[1]}'], ["b", None]]
