"""What the allocation core takes and gives: warehouses, policy, and results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from msgspec import Struct

Policy = Literal["wait_all", "ship_available", "cancel_after_days"]
Status = Literal["reserved", "partially_reserved", "backordered"]


class WarehouseConfig(Struct, frozen=True):
    code: str
    priority: int = 1


class AllocationPolicy(Struct, frozen=True, kw_only=True):
    backorder_policy: Policy = "wait_all"
    cancel_after_days: int = 14
    split_across_warehouses: bool = False
    idempotency_days: int = 30
    batch_max: int = 512
    batch_linger_ms: float = 0.0
    batches_in_flight: int = 4
    fill_limit: int = 500


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


class Released(Struct, frozen=True):
    warehouse: str
    released: tuple[tuple[str, int], ...]
    dropped: tuple[tuple[str, int], ...]
    replay: bool


class Committed(Struct, frozen=True):
    warehouse: str
    committed: tuple[tuple[str, int], ...]
    replay: bool


class Filled(Struct, frozen=True):
    """A waiting order whose every waiting line was reserved when stock arrived."""

    order_id: str
    lines: tuple[tuple[str, int], ...]


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


class StockLevel(Struct, frozen=True):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    available: int
    backordered: int


class Drift(Struct, frozen=True):
    warehouse: str
    what: str
    redis: int
    ledger: int


class Rebuilt(Struct, frozen=True):
    warehouse: str
    skus: int
    reservations: int
    backorders: int


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
