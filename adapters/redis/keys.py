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

import zlib
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
    ``P stream:layout``             STRING  the stream's partitions and whether tagged
                                            (``3 tagged``), as the last process started
                                            laid it out
    ``P processes``                 ZSET    ``<process> <layout>`` -> when it was last
                                            seen running (ms)
    ==============================  ======  ============================================

    The stream may be cut into partitions (``[redis] stream_partitions``): an order's
    messages all go to one, chosen by a hash of its id, so each order is still read in its
    order, and the partitions spread over a cluster's shards. Tagged (on a Redis Cluster, or
    with more than one partition), each partition's stream, dead letters and its orders'
    leases carry the partition's hash tag: ``P{part.<k>}:stream:orders``,
    ``P{part.<k>}:stream:dead``, ``P{part.<k>}:lease:<order>``, so that a dead letter moves
    in one transaction and a batch of leases goes to one script per partition. (A warehouse
    code holds no ``.``: the tag is never a warehouse's.)
    """

    prefix: str
    tagged: bool = False
    partitions: int = 1

    def __post_init__(self) -> None:
        if self.partitions < 1 or (self.partitions > 1 and not self.tagged):
            raise ValueError("more than one stream partition needs tagged keys")

    def partition(self, order_id: str) -> int:
        """The partition of an order's messages: the same in every process and every run."""
        if self.partitions == 1:
            return 0
        return zlib.crc32(order_id.encode()) % self.partitions

    def _runtime(self, partition: int = 0) -> str:
        return f"{self.prefix}{{part.{partition}}}:" if self.tagged else self.prefix

    def orders_stream_of(self, partition: int) -> str:
        return f"{self._runtime(partition)}stream:orders"

    def dead_stream_of(self, partition: int) -> str:
        return f"{self._runtime(partition)}stream:dead"

    @property
    def layout(self) -> str:
        """How the stream is laid out, as kept in ``P stream:layout``."""
        return f"{self.partitions} {'tagged' if self.tagged else 'plain'}"

    @property
    def stream_layout(self) -> str:
        return f"{self.prefix}stream:layout"

    @property
    def processes(self) -> str:
        return f"{self.prefix}processes"

    @property
    def orders_stream(self) -> str:
        """The first partition's stream (the only one, unless partitioned)."""
        return self.orders_stream_of(0)

    @property
    def dead_stream(self) -> str:
        return self.dead_stream_of(0)

    def lease(self, order_id: str) -> str:
        return f"{self._runtime(self.partition(order_id))}lease:{order_id}"

    @property
    def reminders(self) -> str:
        return f"{self.prefix}reminders"

    @property
    def stock_push(self) -> str:
        return f"{self.prefix}stock_push"
