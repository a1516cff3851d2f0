"""What the allocation core is configured with, and what it tells an operator."""

from __future__ import annotations

from msgspec import Struct

from actors.order.types import BackorderPolicy


class WarehouseConfig(Struct, frozen=True):
    code: str
    priority: int = 1


class AllocationPolicy(Struct, frozen=True, kw_only=True):
    backorder_policy: BackorderPolicy = "wait_all"
    cancel_after_days: int = 14
    split_across_warehouses: bool = False
    idempotency_days: int = 30
    batch_max: int = 512
    batch_linger_ms: float = 0.0
    batches_in_flight: int = 4
    fill_limit: int = 500


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
