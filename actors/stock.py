"""Stock as the order actors see it: what the allocation core answers, the ledger entry
each operation leaves, the errors an operation can end in, and :class:`Stock`, the
operations an order's turn asks for.

The allocation core itself (the Lua scripts in Redis, the ledger in PostgreSQL) lives in
``adapters/stock``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from msgspec import Struct

from actors.errors import OrderdError
from actors.order.types import BackorderPolicy

Status = Literal["reserved", "partially_reserved", "backordered"]
MovementKind = Literal["set", "adjust", "reserve", "fill", "release", "commit"]


class AllocatedLine(Struct, frozen=True):
    warehouse: str
    sku: str
    wanted: int
    reserved: int
    backordered: int


class Reservation(Struct, frozen=True):
    order_id: str
    op_id: str
    status: Status
    lines: tuple[AllocatedLine, ...]
    replay: bool


class Filled(Struct, frozen=True):
    """A waiting order whose every waiting line was reserved when stock arrived or was
    given back."""

    order_id: str
    lines: tuple[tuple[str, int], ...]


class Released(Struct, frozen=True):
    warehouse: str
    released: tuple[tuple[str, int], ...]
    dropped: tuple[tuple[str, int], ...]
    replay: bool
    fills: tuple[Filled, ...] = ()  # waiting orders that took what was given back


class Committed(Struct, frozen=True):
    warehouse: str
    committed: tuple[tuple[str, int], ...]
    replay: bool


class Adjusted(Struct, frozen=True):
    warehouse: str
    sku: str
    movement_id: str
    on_hand_delta: int
    on_hand: int
    reserved: int
    backordered: int
    fills: tuple[Filled, ...]

    @property
    def filled_orders(self) -> tuple[str, ...]:
        return tuple(fill.order_id for fill in self.fills)


def status_of(lines: Sequence[AllocatedLine]) -> Status:
    """The order's state after a reservation, from its lines (summed across warehouses)."""
    per_sku: dict[str, list[int]] = {}
    for line in lines:
        totals = per_sku.setdefault(line.sku, [0, 0])
        totals[0] += line.reserved
        totals[1] = max(totals[1], line.wanted)
    if all(reserved >= wanted for reserved, wanted in per_sku.values()):
        return "reserved"
    if any(reserved for reserved, _ in per_sku.values()):
        return "partially_reserved"
    return "backordered"


class Delta(Struct, frozen=True, array_like=True):
    """One sku's change within a movement."""

    sku: str
    on_hand: int = 0
    reserved: int = 0
    backordered: int = 0


class Movement(Struct, frozen=True, kw_only=True):
    movement_key: str
    warehouse: str
    kind: MovementKind
    order_id: str | None = None
    op_id: str
    reason: str | None = None
    at: datetime
    lines: tuple[Delta, ...]


class QueuePlace(Struct, frozen=True, kw_only=True):
    """Where an order waits: set on its first wait in a warehouse, never moved."""

    warehouse: str
    order_id: str
    priority: int
    enqueued_at: datetime
    cancel_at: datetime | None = None


class LedgerEntry(Struct, frozen=True, kw_only=True):
    """What one stock operation changed, written in one transaction with others.

    ``epochs`` names, per warehouse, the Redis epoch the change was made under; the entry
    is only written while Redis still holds that epoch.
    """

    movements: tuple[Movement, ...] = ()
    queued: tuple[QueuePlace, ...] = ()
    epochs: tuple[tuple[str, str], ...] = ()


class LedgerSink(Protocol):
    """Where ledger entries go: written before ``record`` returns."""

    async def record(self, entry: LedgerEntry) -> None: ...


class Stock(Protocol):
    """Stock operations of an order, each once per ``op_id``: a repeated call returns the
    first result and moves nothing. Each hands its ledger entry to ``sink``, which the
    turn saves with itself."""

    async def reserve(
        self,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        policy: BackorderPolicy,
        op_id: str,
        sink: LedgerSink,
        avoid: Sequence[str] = (),
    ) -> Reservation:
        """Reserve the order's (sku, quantity) lines, or queue them as ``policy`` says;
        not from the ``avoid`` warehouses' stock (they wait there instead, when no other
        warehouse has them all)."""
        ...

    async def release(self, order_id: str, op_id: str, *, sink: LedgerSink) -> list[Released]:
        """Give back everything the order holds, take it out of every queue, and fill the
        orders waiting for what it gave back (their actors are to be told)."""
        ...

    async def commit(
        self,
        order_id: str,
        op_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        warehouse: str,
        sink: LedgerSink,
    ) -> Committed:
        """A shipment left: its quantities leave on hand and the order's reservation."""
        ...

    async def write_off(
        self,
        order_id: str,
        op_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        reason: str,
        warehouse: str,
        sink: LedgerSink,
    ) -> Committed:
        """Reserved units not on the shelf (a short pick) leave on hand and the order's
        reservation in one step."""
        ...


class AllocationError(OrderdError):
    """A stock operation was refused; nothing was written."""


class UnknownSku(AllocationError):
    pass


class StaleEpoch(Exception):
    """Redis was rebuilt after an operation changed it and before its ledger write: the
    change is gone from Redis, so the write is refused and the operation must run again."""
