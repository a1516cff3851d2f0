"""What the durable record says happened, checked against what must always hold.

The checker reads PostgreSQL (orders, order_lines, order_events, mailbox, stock_ledger,
shipments, sandbox_shipments, notifications, dead_letters, webhook_inbox) and asks the
operator's commands (``orderd stock show --json``, ``orderd stock reconcile``) what stock
looks like; it never reads a daemon's logs or counters. It returns a :class:`History`
with figures a test asserts, and whose text tells the whole story when one fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.order.states import TERMINAL, OrderState

Run = Callable[..., subprocess.CompletedProcess[str]]

# With the sandbox warehouse holding every pick list for an hour (ORDERD_WMS__SANDBOX_DELAY_S
# = 3600, as the daemon harness sets it), an order reserved whole rests with the warehouse,
# one short of stock waits for it, one a person must look at waits for that person.
WAITING: frozenset[str] = frozenset(
    {
        OrderState.FULFILLMENT_REQUESTED,
        OrderState.BACKORDERED,
        OrderState.PARTIALLY_RESERVED,
        OrderState.NEEDS_ATTENTION,
    }
)
FINAL: frozenset[str] = frozenset(TERMINAL)
RESTING: frozenset[str] = FINAL | WAITING
# States an order only passes through within a turn or between two of them.
PASSING: frozenset[str] = frozenset({OrderState.RECEIVED, OrderState.RESERVED})
# With a warehouse that packs at once, an order served goes on to its label and ships; it
# then waits for the parcel's news, and only the steps before shipping are passing.
SHIPPED: frozenset[str] = frozenset(
    {
        OrderState.SHIPPED,
        OrderState.IN_TRANSIT,
        OrderState.OUT_FOR_DELIVERY,
        OrderState.DELIVERED,
    }
)
RESTING_SHIPPED: frozenset[str] = (RESTING - {OrderState.FULFILLMENT_REQUESTED}) | SHIPPED
PASSING_SHIPPED: frozenset[str] = PASSING | {
    OrderState.FULFILLMENT_REQUESTED,
    OrderState.PICKED,
    OrderState.PACKED,
    OrderState.LABEL_CREATED,
}

_SAMPLE = 5


@dataclass(frozen=True)
class SkuFigures:
    """One SKU in the main warehouse: as stock shows it, as orders hold it, as the ledger
    implies it."""

    sku: str
    on_hand: int  # orderd stock show (Redis)
    reserved: int
    available: int
    backordered: int
    held_by_orders: int  # sum of order_lines.reserved
    shipped_by_orders: int  # sum of order_lines.shipped
    ledger_on_hand: int  # the ledger's deltas added up
    ledger_reserved: int
    ledger_backordered: int
    stocked: int  # units put in stock: every on-hand delta but shipments' commits

    @property
    def oversold(self) -> int:
        """Units promised beyond what there was: held or shipped over what was stocked,
        or reserved over what is on hand."""
        return max(
            0,
            self.held_by_orders + self.shipped_by_orders - self.stocked,
            self.reserved - self.on_hand,
            self.ledger_reserved - self.ledger_on_hand,
        )

    @property
    def consistent(self) -> bool:
        """Orders, Redis and the ledger agree, and on hand = available + reserved >= 0."""
        return (
            self.reserved == self.held_by_orders == self.ledger_reserved
            and self.on_hand == self.ledger_on_hand
            and self.backordered == self.ledger_backordered
            and self.on_hand == self.available + self.reserved
            and min(self.on_hand, self.available, self.reserved, self.backordered) >= 0
        )


@dataclass
class History:
    """The figures of one run, from the durable record."""

    orders: int = 0  # rows in orders
    states: dict[str, int] = field(default_factory=dict)
    expected: int = 0  # orders the platform was told were taken (202 or 200)
    accepted: int = 0  # of which answered 202 at least once
    lost: list[str] = field(default_factory=list)  # taken, but no order
    stored_twice: list[str] = field(default_factory=list)  # one platform id, several orders
    unexpected: list[str] = field(default_factory=list)  # orders nobody was told about
    received_not_once: dict[str, int] = field(default_factory=dict)  # order -> received events
    stranded: dict[str, list[int]] = field(default_factory=dict)  # order -> unapplied seqs
    unsettled: dict[str, list[str]] = field(default_factory=dict)  # state -> orders not resting
    allocated_twice: list[str] = field(default_factory=list)
    skus: dict[str, SkuFigures] = field(default_factory=dict)
    reconciled: bool = False
    reconcile_output: str = ""
    labels: int = 0  # labels bought (the carrier's own record)
    labels_twice: list[str] = field(default_factory=list)  # shipments with two or more
    messages_twice: int = 0  # customer messages queued twice for one kind and shipment
    dead_letters: int = 0
    dead_letter_errors: list[str] = field(default_factory=list)
    inbox: dict[str, int] = field(default_factory=dict)  # webhook_inbox rows by status

    @property
    def oversold(self) -> int:
        return sum(figures.oversold for figures in self.skus.values())

    @property
    def inconsistent_skus(self) -> list[str]:
        return sorted(sku for sku, figures in self.skus.items() if not figures.consistent)

    @property
    def unsettled_count(self) -> int:
        return sum(len(orders) for orders in self.unsettled.values())

    def problems(self) -> list[str]:
        """Every invariant broken, one line each; empty when the record is sound."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} order(s) taken but not stored: {self.lost[:_SAMPLE]}")
        if self.stored_twice:
            found.append(f"{len(self.stored_twice)} stored twice: {self.stored_twice[:_SAMPLE]}")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} unexpected: {self.unexpected[:_SAMPLE]}")
        if self.received_not_once:
            found.append(
                f"{len(self.received_not_once)} without exactly one received event: "
                f"{_first(self.received_not_once)}"
            )
        if self.stranded:
            seqs = sum(len(s) for s in self.stranded.values())
            found.append(
                f"{len(self.stranded)} order(s) stranded with {seqs} unapplied message(s): "
                f"{_first(self.stranded)}"
            )
        if self.unsettled:
            found.append(
                f"{self.unsettled_count} order(s) not final or waiting: "
                f"{ {state: len(o) for state, o in self.unsettled.items()} }"
                f", e.g. {_first(self.unsettled)}"
            )
        if self.allocated_twice:
            found.append(
                f"{len(self.allocated_twice)} allocated twice: {self.allocated_twice[:_SAMPLE]}"
            )
        if self.oversold:
            found.append(f"{self.oversold} unit(s) oversold")
        if self.inconsistent_skus:
            found.append(f"stock, orders and ledger disagree on {self.inconsistent_skus}")
        if not self.reconciled:
            found.append(f"orderd stock reconcile: {self.reconcile_output.strip()[:300]}")
        if self.labels_twice:
            found.append(f"labels bought twice for {self.labels_twice[:_SAMPLE]}")
        if self.messages_twice:
            found.append(f"{self.messages_twice} customer message(s) queued twice")
        if self.dead_letters:
            found.append(f"{self.dead_letters} dead letter(s): {self.dead_letter_errors[:_SAMPLE]}")
        return found

    def __str__(self) -> str:
        lines = [
            f"orders {self.orders} (expected {self.expected}, answered 202: {self.accepted}), "
            f"states {dict(sorted(self.states.items()))}",
            f"webhook inbox {dict(sorted(self.inbox.items()))}, labels bought {self.labels}, "
            f"dead letters {self.dead_letters}",
        ]
        for figures in self.skus.values():
            lines.append(
                f"  {figures.sku}: on_hand {figures.on_hand} reserved {figures.reserved} "
                f"available {figures.available} backordered {figures.backordered} | orders "
                f"hold {figures.held_by_orders} shipped {figures.shipped_by_orders} | ledger "
                f"on_hand {figures.ledger_on_hand} reserved {figures.ledger_reserved} "
                f"backordered {figures.ledger_backordered} stocked {figures.stocked} | "
                f"oversold {figures.oversold}"
            )
        problems = self.problems()
        lines += [f"PROBLEM: {p}" for p in problems] or ["no problem found"]
        return "\n".join(lines)


def _first(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return dict(list(mapping.items())[:_SAMPLE])


async def _unapplied(conn: Any) -> dict[str, set[int]]:
    rows = await conn.fetch(
        """
        SELECT m.order_id, array_agg(m.seq) AS seqs
        FROM mailbox m LEFT JOIN orders o ON o.id = m.order_id
        WHERE m.seq > coalesce(o.last_seq, 0)
        GROUP BY m.order_id
        """
    )
    return {r["order_id"]: set(r["seqs"]) for r in rows}


async def _stranded(
    conn: Any, within_s: float = 10.0, every_s: float = 0.25
) -> dict[str, list[int]]:
    """Messages left unapplied: seen unapplied and still unapplied ``within_s`` later.
    A running daemon keeps storing messages for resting orders (a shipped order's tracking
    reminders), so one stored an instant ago and applied the next is not stranded."""
    left = await _unapplied(conn)
    deadline = time.monotonic() + within_s
    while left and time.monotonic() < deadline:
        await asyncio.sleep(every_s)  # the next look at the record
        now = await _unapplied(conn)
        left = {o: kept for o, seqs in left.items() if (kept := seqs & now.get(o, set()))}
    return {o: sorted(seqs) for o, seqs in sorted(left.items())}


async def check_history(
    conn: Any,
    run: Run,
    *,
    taken: Collection[str],
    accepted: Collection[str] = (),
    skus: Iterable[str],
    source: str = "generic",
    resting: frozenset[str] = RESTING,
) -> History:
    """Check the record against the orders a platform was told were taken (``taken``:
    answered 202 or 200 duplicate; ``accepted``: of those, answered 202).

    ``run`` runs the ``orderd`` command line against the same database and Redis.
    """
    history = History(expected=len(taken), accepted=len(accepted))
    rows = await conn.fetch("SELECT id, external_id, source, state FROM orders")
    history.orders = len(rows)
    by_ref: dict[str, list[str]] = {}
    for row in rows:
        if row["source"] == source and row["external_id"] is not None:
            by_ref.setdefault(row["external_id"], []).append(row["id"])
        state = row["state"]
        history.states[state] = history.states.get(state, 0) + 1
        if state not in resting:
            history.unsettled.setdefault(state, []).append(row["id"])
    history.lost = sorted(ref for ref in taken if ref not in by_ref)
    history.stored_twice = sorted(ref for ref, ids in by_ref.items() if len(ids) > 1)
    history.unexpected = sorted(set(by_ref) - set(taken))
    known_ids = {row["id"] for row in rows}

    received = dict(
        await conn.fetch(
            "SELECT order_id, count(*) FROM order_events WHERE type = 'received' GROUP BY 1"
        )
    )
    history.received_not_once = {
        order_id: received.get(order_id, 0)
        for order_id in sorted(known_ids | set(received))
        if received.get(order_id, 0) != 1
    }
    history.stranded = await _stranded(conn)
    history.allocated_twice = [
        r["order_id"]
        for r in await conn.fetch(
            """
            SELECT order_id FROM order_events
            WHERE type = 'stock_allocated' AND coalesce(data->>'op_id', 'reserve') = 'reserve'
            GROUP BY order_id HAVING count(*) > 1 ORDER BY order_id
            """
        )
    ]
    history.labels = await conn.fetchval(
        "SELECT count(*) FROM sandbox_shipments WHERE bought_at IS NOT NULL"
    )
    history.labels_twice = [
        r["shipment"]
        for r in await conn.fetch(
            """
            SELECT shipment FROM (
                SELECT idempotency_key AS shipment FROM sandbox_shipments
                WHERE bought_at IS NOT NULL AND voided_at IS NULL
                GROUP BY idempotency_key HAVING count(*) > 1
                UNION
                SELECT data->>'shipment_id' FROM order_events WHERE type = 'label_created'
                GROUP BY data->>'shipment_id' HAVING count(*) > 1
            ) twice ORDER BY shipment
            """
        )
    ]
    history.messages_twice = await conn.fetchval(
        """
        SELECT count(*) FROM (
            SELECT 1 FROM notifications
            GROUP BY order_id, kind, shipment_id, episode, channel HAVING count(*) > 1) t
        """
    )
    history.dead_letters = await conn.fetchval("SELECT count(*) FROM dead_letters")
    history.dead_letter_errors = [
        f"{r['order_id']} #{r['seq']}: {r['error'][:120]}"
        for r in await conn.fetch(
            "SELECT order_id, seq, error FROM dead_letters ORDER BY id LIMIT $1", _SAMPLE
        )
    ]
    history.inbox = dict(
        await conn.fetch("SELECT status, count(*) FROM webhook_inbox GROUP BY status")
    )
    # The operator's commands are processes of their own: they run side by side.
    history.skus, reconcile = await asyncio.gather(
        _sku_figures(conn, run, sorted(set(skus))), asyncio.to_thread(run, "stock", "reconcile")
    )
    history.reconciled = reconcile.returncode == 0
    history.reconcile_output = reconcile.stdout + reconcile.stderr
    return history


async def _sku_figures(conn: Any, run: Run, skus: list[str]) -> dict[str, SkuFigures]:
    held = {
        r["sku"]: (r["reserved"], r["shipped"])
        for r in await conn.fetch(
            """
            SELECT sku, sum(reserved)::int AS reserved, sum(shipped)::int AS shipped
            FROM order_lines WHERE sku = ANY($1::text[]) GROUP BY sku
            """,
            skus,
        )
    }
    # Each ledger row's lines are [sku, on_hand, reserved, backordered] deltas.
    ledger = {
        r["sku"]: r
        for r in await conn.fetch(
            """
            SELECT l->>0 AS sku,
                   coalesce(sum((l->>1)::int), 0)::int AS on_hand,
                   coalesce(sum((l->>2)::int), 0)::int AS reserved,
                   coalesce(sum((l->>3)::int), 0)::int AS backordered,
                   coalesce(sum((l->>1)::int) FILTER (WHERE s.kind <> 'commit'), 0)::int
                       AS stocked
            FROM stock_ledger s, jsonb_array_elements(s.lines) l
            WHERE s.warehouse = 'main' AND l->>0 = ANY($1::text[])
            GROUP BY 1
            """,
            skus,
        )
    }
    shown = await asyncio.gather(*(asyncio.to_thread(_show, run, sku) for sku in skus))
    figures = {}
    for sku, stock in zip(skus, shown, strict=True):
        row = ledger.get(sku)
        reserved, shipped = held.get(sku, (0, 0))
        figures[sku] = SkuFigures(
            sku=sku,
            on_hand=stock["on_hand"],
            reserved=stock["reserved"],
            available=stock["available"],
            backordered=stock["backordered"],
            held_by_orders=reserved or 0,
            shipped_by_orders=shipped or 0,
            ledger_on_hand=row["on_hand"] if row else 0,
            ledger_reserved=row["reserved"] if row else 0,
            ledger_backordered=row["backordered"] if row else 0,
            stocked=row["stocked"] if row else 0,
        )
    return figures


def _show(run: Run, sku: str) -> dict[str, int]:
    shown = run("stock", "show", sku, "--json")
    if shown.returncode != 0:
        raise AssertionError(f"orderd stock show {sku}: {shown.stdout}{shown.stderr}")
    data = json.loads(shown.stdout)
    return {key: int(data[key]) for key in ("on_hand", "reserved", "available", "backordered")}


@dataclass(frozen=True)
class Settling:
    """How the orders came to rest (or did not) while the record was watched."""

    settled: bool
    waited_s: float
    orders: int
    unapplied: int  # mailbox messages above their order's last_seq
    passing: int  # orders in a state they only pass through


async def settle(
    connect: Callable[[], Any],
    expected: int,
    within_s: float,
    every_s: float = 0.25,
    passing: frozenset[str] = PASSING,
) -> Settling:
    """Watch the record until ``expected`` orders exist, every stored message is applied
    and no order is between states, or ``within_s`` passes. ``connect()`` opens a fresh
    connection each look, so a database that restarts meanwhile is simply looked at again.
    """
    started = time.monotonic()
    deadline = started + within_s
    last = Settling(False, 0.0, 0, -1, -1)
    while True:
        try:
            async with connect() as conn:
                row = await conn.fetchrow(
                    """
                    SELECT (SELECT count(*) FROM orders) AS orders,
                           (SELECT count(*) FROM mailbox m
                            LEFT JOIN orders o ON o.id = m.order_id
                            WHERE m.seq > coalesce(o.last_seq, 0)) AS unapplied,
                           (SELECT count(*) FROM orders WHERE state = ANY($1::text[]))
                               AS passing
                    """,
                    sorted(passing),
                )
            waited = time.monotonic() - started
            last = Settling(
                row["orders"] >= expected and row["unapplied"] == 0 and row["passing"] == 0,
                waited,
                row["orders"],
                row["unapplied"],
                row["passing"],
            )
            if last.settled:
                return last
        except Exception as exc:  # the database is away: look again
            last = Settling(False, time.monotonic() - started, last.orders, -1, -1)
            if time.monotonic() >= deadline:
                raise AssertionError(f"the record could not be read: {exc}") from exc
        if time.monotonic() >= deadline:
            return last
        await asyncio.sleep(every_s)  # the next look at the record
