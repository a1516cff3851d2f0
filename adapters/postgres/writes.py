"""Several writes sent as one statement: each becomes a data-modifying CTE.

A batch of order turns writes to a dozen tables. Sent one statement each, every write
costs a round trip, and PostgreSQL starts an executor for each; sent as one, the batch
costs one of each. Each part is written as a statement of its own, with its parameters
numbered from ``$1``; they are renumbered here.

PostgreSQL runs all parts on one snapshot, before any of them has written: no part may
read what another writes, and no two parts may write the same row. A part may name
the rows another inserts through that part's ``RETURNING`` (a foreign key to a row
inserted by another part holds, as the constraints are checked after the statement).

    writes = Writes()
    writes.add("INSERT INTO t (a) SELECT * FROM unnest($1::int[])", [1, 2])
    saved = writes.add("UPDATE u SET b = $1 WHERE id = $2 RETURNING id", "x", 7)
    rows = await writes.fetch(conn, f"SELECT id FROM {saved}")
"""

from __future__ import annotations

import re
from typing import Any

_PARAM = re.compile(r"\$(\d+)")


class Writes:
    def __init__(self) -> None:
        self._parts: list[tuple[str, str]] = []
        self._args: list[Any] = []

    def add(self, sql: str, *args: Any) -> str:
        """Add one write (parameters ``$1``... are ``args``); return the name its
        ``RETURNING`` rows go by in the final select."""
        offset = len(self._args)
        if offset:
            sql = _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", sql)
        name = f"w{len(self._parts)}"
        self._parts.append((name, sql))
        self._args.extend(args)
        return name

    def statement(self, select: str = "SELECT") -> tuple[str, list[Any]]:
        """The single statement (ending with ``select``) and its parameters."""
        parts = ",\n".join(f"{name} AS (\n{sql}\n)" for name, sql in self._parts)
        return f"WITH {parts}\n{select}", self._args

    async def execute(self, conn: Any) -> None:
        """Run every write, in one round trip."""
        if len(self._parts) == 1:
            await conn.execute(self._parts[0][1], *self._args)
        elif self._parts:
            query, args = self.statement()
            await conn.execute(query, *args)

    async def fetch(self, conn: Any, select: str) -> list[Any]:
        """Run every write; return the rows of ``select``, which may read the parts'
        ``RETURNING`` by their names."""
        query, args = self.statement(select)
        rows: list[Any] = await conn.fetch(query, *args)
        return rows
