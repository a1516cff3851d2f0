"""Writes joined into one statement: each part keeps its own parameters."""

from __future__ import annotations

from adapters.postgres.writes import Writes


def test_each_part_s_parameters_are_numbered_after_the_earlier_parts() -> None:
    writes = Writes()
    first = writes.add("INSERT INTO a (x, y) VALUES ($1, $2)", 1, 2)
    second = writes.add("UPDATE b SET x = $1 WHERE id = $2 AND $1 > 0 RETURNING id", 3, 4)
    query, args = writes.statement(f"SELECT id FROM {second}")
    assert (first, second) == ("w0", "w1")
    assert args == [1, 2, 3, 4]
    assert "w0 AS (\nINSERT INTO a (x, y) VALUES ($1, $2)\n)" in query
    assert "w1 AS (\nUPDATE b SET x = $3 WHERE id = $4 AND $3 > 0 RETURNING id\n)" in query
    assert query.startswith("WITH w0 AS (")
    assert query.endswith("\nSELECT id FROM w1")


def test_ten_and_more_parameters_are_renumbered_whole() -> None:
    writes = Writes()
    writes.add(", ".join(f"${n}" for n in range(1, 12)), *range(11))
    writes.add("$1, $11", "a", *range(10))
    query, args = writes.statement()
    assert "$12, $22" in query
    assert len(args) == 22
