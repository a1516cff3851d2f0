"""Every Redis key orderd uses, in one place.

All keys start with the configured prefix (default ``orderd:``). Keys that belong to a
warehouse carry its code in a Redis Cluster hash tag, ``orderd:{main}:...``, so one
warehouse lives on one shard and a Lua script may touch all of its keys.

Warehouse keys (``W`` = ``orderd:{main}:``):

=============================  =====  ===================================================
``W meta``                     HASH   ``instance`` (the PostgreSQL database it mirrors),
                                      ``layout`` (of these keys), ``epoch``,
                                      ``rebuilt_at``; scripts refuse to run without it
``W on_hand``                  HASH   sku -> units on hand; a sku without a field here
                                      is unknown to the warehouse
``W reserved``                 HASH   sku -> units reserved for orders;
                                      available = on_hand - reserved
``W backordered``              HASH   sku -> units orders wait for
``W orders``                   HASH   order -> what it holds here, as JSON:
                                      ``{"r": {sku: reserved}, "w": {sku: waiting}}``
``W backorders:<sku>``         ZSET   orders waiting for the sku; lowest score is served
                                      first (priority, then age; see :func:`queue_score`)
``W done:<window>``            HASH   ``<order> <op_id>`` -> the packed result of an order's
                                      stock operation, so a repeated call returns the
                                      first result; one hash per window of time (window =
                                      ms since the epoch // the window's length), the
                                      current and the last one looked up (expires)
``W move:<sku>:<movement>``    STRING the packed result of a stock movement (expires)
=============================  =====  ===================================================

Nothing is kept per order or per sku in keys of their own: a reservation costs one field
in ``orders`` and one in the window's ``done`` hash, and a batch reads and writes each of
its skus' figures in one call per stock hash.

The Lua scripts receive the warehouse base (``orderd:{main}:``) and append these same
suffixes; this module is the reference for their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Scores put higher priorities first, then older entries; both fit a double exactly.
_PRIORITY_STEP = 10**13
MAX_PRIORITY = 9


def done_field(order_id: str, op_id: str) -> str:
    """An operation's field in a ``done`` hash."""
    return f"{order_id} {op_id}"


def queue_score(priority: int, enqueued_ms: int) -> int:
    """Backorder queue score: priority 9 before 0, then first come first served."""
    return (MAX_PRIORITY - priority) * _PRIORITY_STEP + enqueued_ms


@dataclass(frozen=True, slots=True)
class WarehouseKeys:
    """Key names of one warehouse under one prefix."""

    prefix: str
    warehouse: str

    @property
    def base(self) -> str:
        return f"{self.prefix}{{{self.warehouse}}}:"

    @property
    def meta(self) -> str:
        return f"{self.base}meta"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of the warehouse (braces escaped)."""
        return f"{self.prefix}\\{{{self.warehouse}\\}}:*"

    @property
    def on_hand(self) -> str:
        return f"{self.base}on_hand"

    @property
    def reserved(self) -> str:
        return f"{self.base}reserved"

    @property
    def backordered(self) -> str:
        return f"{self.base}backordered"

    @property
    def stock(self) -> tuple[str, str, str]:
        """The three stock hashes, each sku -> units: on hand, reserved, backordered."""
        return (self.on_hand, self.reserved, self.backordered)

    @property
    def orders(self) -> str:
        return f"{self.base}orders"

    def backorder_queue(self, sku: str) -> str:
        return f"{self.base}backorders:{sku}"

    def done(self, window: int) -> str:
        return f"{self.base}done:{window}"

    def move(self, sku: str, movement_id: str) -> str:
        return f"{self.base}move:{sku}:{movement_id}"


GROUP = "orderd"  # the consumer group every orderd process joins


@dataclass(frozen=True, slots=True)
class RuntimeKeys:
    """Key names of the actor runtime under one prefix (not warehouse-scoped).

    ==============================  ======  ============================================
    ``P stream:orders``             STREAM  every message for an order actor; fields
                                            ``order``, ``seq``, ``msg`` (JSON), ``mid``
    ``P stream:dead``               STREAM  messages given up on after N deliveries
    ``P lease:<order>``             STRING  which process runs the order's turn (expires)
    ``P reminders``                 ZSET    reminder key -> due time (ms); PostgreSQL
                                            holds the reminder itself
    ``P stock_push``                STRING  which process pushes stock to the platforms
                                            (expires)
    ==============================  ======  ============================================

    On a Redis Cluster the stream, its dead letters and the leases carry one hash tag,
    ``P{part.0}:stream:orders``, ``P{part.0}:stream:dead``, ``P{part.0}:lease:<order>``, so
    that a dead letter moves in one transaction and a batch of leases goes to one script.
    (A warehouse code holds no ``.``: the tag is never a warehouse's.)
    """

    prefix: str
    tagged: bool = False

    @property
    def _runtime(self) -> str:
        return f"{self.prefix}{{part.0}}:" if self.tagged else self.prefix

    @property
    def orders_stream(self) -> str:
        return f"{self._runtime}stream:orders"

    @property
    def dead_stream(self) -> str:
        return f"{self._runtime}stream:dead"

    def lease(self, order_id: str) -> str:
        return f"{self._runtime}lease:{order_id}"

    @property
    def reminders(self) -> str:
        return f"{self.prefix}reminders"

    @property
    def stock_push(self) -> str:
        return f"{self.prefix}stock_push"
