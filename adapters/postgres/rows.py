"""Many rows in one statement parameter: a JSON array of arrays.

asyncpg sends a Python list as a PostgreSQL array element by element, at about a
microsecond an element on each side; a batch of order turns has thousands of them. One
JSON text made by msgspec, read back with ``jsonb_array_elements``, costs a fraction of
that on both sides. JSON that is already encoded goes in as it is: a ``jsonb`` column takes
it as ``Raw``, a ``json`` column as text (a ``str``), which it stores as written; read as
JSON, it would be stored as jsonb writes it, with a space after each colon and comma.

    LINES = Rows("order_id text", "line_no int", "lines jsonb")
    await conn.execute(
        f"INSERT INTO t (order_id, line_no, lines) SELECT {LINES.columns} FROM {LINES.source}",
        LINES.encode((order_id, n, Raw(encoded)) for ...),
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from msgspec import Raw

__all__ = ["Raw", "Rows"]

_encoder = msgspec.json.Encoder(decimal_format="string")


class Rows:
    """Columns named and typed as ``"name type"``, read from parameter ``$<param>``."""

    def __init__(self, *columns: str, param: int = 1) -> None:
        parts = []
        for index, column in enumerate(columns):
            name, sql_type = column.split(maxsplit=1)
            if sql_type == "jsonb":
                # JSON null is SQL NULL, as for every other type.
                parts.append(f"nullif(r->{index}, 'null'::jsonb)::jsonb AS {name}")
            else:
                parts.append(f"(r->>{index})::{sql_type} AS {name}")
        self.columns = ", ".join(parts)
        self.source = f"jsonb_array_elements(${param}::jsonb) AS r"
        self.width = len(columns)

    def encode(self, rows: Iterable[Sequence[Any]]) -> str:
        """The parameter: every row has one value per column, in order (None is NULL)."""
        listed = list(rows)
        if any(len(row) != self.width for row in listed):
            raise ValueError(f"every row needs {self.width} values")
        return _encoder.encode(listed).decode()
