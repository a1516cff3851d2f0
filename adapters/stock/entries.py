"""Ledger entries for what the scripts did: pure functions from results to rows.

Each entry's movement key is derived from (warehouse, owner, operation), so writing the
entry of a repeated call again is a no-op in the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from actors.stock import AllocatedLine, Delta, LedgerEntry, Movement, MovementKind, QueuePlace
from adapters.postgres.stock import LedgerRow
from adapters.redis.scripts import CommitResult, Fill, ReleaseResult, ReserveLine

_encode_json = msgspec.json.Encoder().encode


def movement_key(warehouse: str, owner: str, op_id: str) -> str:
    """The ledger's idempotency key: one movement per warehouse, owner and operation.

    ``owner`` is ``order:<id>`` for an order's operations and ``sku:<sku>`` for stock
    movements, so an order and a sku of the same name never share a key.
    """
    return f"{warehouse}/{owner}/{op_id}"


def stock_movement_key(warehouse: str, sku: str, movement_id: str) -> str:
    return movement_key(warehouse, f"sku:{sku}", movement_id)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def reservation(
    order_id: str,
    op_id: str,
    lines: Sequence[AllocatedLine],
    priority: int,
    now: float,
    cancel_at: float | None = None,
    epochs: dict[str, str] | None = None,
) -> LedgerEntry:
    """Units reserved and queued by one reservation, and the order's place in each queue."""
    when = at(now)
    by_warehouse: dict[str, list[Delta]] = {}
    waits_in: list[str] = []
    for line in lines:
        if line.reserved or line.backordered:
            deltas = by_warehouse.get(line.warehouse)
            if deltas is None:
                deltas = by_warehouse[line.warehouse] = []
            deltas.append(Delta(line.sku, 0, line.reserved, line.backordered))
        if line.backordered and line.warehouse not in waits_in:
            waits_in.append(line.warehouse)
    movements = tuple(
        _movement(code, order_id, op_id, "reserve", deltas, when, order_id=order_id)
        for code, deltas in by_warehouse.items()
    )
    used = tuple(sorted((epochs or {}).items()))
    if not waits_in:
        return LedgerEntry(movements=movements, epochs=used)
    cancel = at(cancel_at) if cancel_at is not None else None
    return LedgerEntry(
        movements=movements,
        epochs=used,
        queued=tuple(
            QueuePlace(
                warehouse=code,
                order_id=order_id,
                priority=priority,
                enqueued_at=when,
                cancel_at=cancel,
            )
            for code in waits_in
        ),
    )


def reservation_row(
    code: str,
    order_id: str,
    op_id: str,
    lines: Sequence[ReserveLine],
    priority: int,
    when: datetime,
    cancel_at: float | None = None,
) -> tuple[LedgerRow | None, QueuePlace | None]:
    """:func:`reservation` of one warehouse's result, as the ledger row COPY takes and the
    order's queue place (None where there is nothing to write): the same row, without an
    entry's objects, for the batches that write their own ledger."""
    deltas = [
        (line.sku, 0, line.reserved, line.backordered)
        for line in lines
        if line.reserved or line.backordered
    ]
    if not deltas:
        return None, None
    key = movement_key(code, f"order:{order_id}", op_id)
    row = (key, code, "reserve", order_id, op_id, None, when, _encode_json(deltas).decode())
    if not any(delta[3] for delta in deltas):
        return row, None
    cancel = at(cancel_at) if cancel_at is not None else None
    place = QueuePlace(
        warehouse=code, order_id=order_id, priority=priority, enqueued_at=when, cancel_at=cancel
    )
    return row, place


def release(
    code: str, order_id: str, op_id: str, result: ReleaseResult, now: float, epoch: str
) -> LedgerEntry:
    """Units given back to available stock, and units no longer waited for."""
    released = {q.sku: q.quantity for q in result.released}
    dropped = {q.sku: q.quantity for q in result.dropped}
    deltas = [
        Delta(sku, 0, -released.get(sku, 0), -dropped.get(sku, 0))
        for sku in dict.fromkeys([*released, *dropped])
    ]
    return _entry(code, order_id, op_id, "release", deltas, at(now), epoch, order_id=order_id)


def commit(
    code: str,
    order_id: str,
    op_id: str,
    result: CommitResult,
    now: float,
    epoch: str,
    *,
    write_off: str | None = None,
) -> LedgerEntry:
    """Shipped units leaving on hand and the order's reservation.

    With ``write_off`` (the reason) the units did not ship but were not there: the same
    movement, recorded as an adjustment so that it never counts as goods shipped.
    """
    deltas = [Delta(q.sku, -q.quantity, -q.quantity, 0) for q in result.committed]
    if write_off is None:
        return _entry(code, order_id, op_id, "commit", deltas, at(now), epoch, order_id=order_id)
    movement = _movement(
        code, order_id, op_id, "adjust", deltas, at(now), order_id=order_id, reason=write_off
    )
    return LedgerEntry(movements=(movement,), epochs=((code, epoch),)) if deltas else LedgerEntry()


def adjustment(
    code: str,
    sku: str,
    movement_id: str,
    kind: MovementKind,
    on_hand_delta: int,
    reason: str | None,
    fills: Sequence[Fill],
    now: float,
    epoch: str,
) -> LedgerEntry:
    """A receipt, count or write-off, and the backorders it filled."""
    own = _movement(
        code, sku, movement_id, kind, [Delta(sku, on_hand_delta)], at(now), reason=reason
    )
    fill_movements = filled(code, movement_id, fills, now, epoch).movements
    return LedgerEntry(movements=(own, *fill_movements), epochs=((code, epoch),))


def filled(
    code: str, movement_id: str, fills: Sequence[Fill], now: float, epoch: str
) -> LedgerEntry:
    """Waiting orders whose lines were reserved when stock arrived."""
    op_id = f"fill:{movement_id}"
    return LedgerEntry(
        movements=tuple(
            _movement(
                code,
                fill.order_id,
                op_id,
                "fill",
                [Delta(q.sku, 0, q.quantity, -q.quantity) for q in fill.lines],
                at(now),
                order_id=fill.order_id,
            )
            for fill in fills
        ),
        epochs=((code, epoch),),
    )


def _movement(
    code: str,
    owner: str,
    op_id: str,
    kind: MovementKind,
    deltas: Sequence[Delta],
    when: datetime,
    *,
    order_id: str | None = None,
    reason: str | None = None,
) -> Movement:
    key_owner = f"order:{order_id}" if order_id is not None else f"sku:{owner}"
    return Movement(
        movement_key=movement_key(code, key_owner, op_id),
        warehouse=code,
        kind=kind,
        order_id=order_id,
        op_id=op_id,
        reason=reason,
        at=when,
        lines=tuple(deltas),
    )


def _entry(
    code: str,
    owner: str,
    op_id: str,
    kind: MovementKind,
    deltas: Sequence[Delta],
    when: datetime,
    epoch: str,
    *,
    order_id: str | None = None,
) -> LedgerEntry:
    if not deltas:
        return LedgerEntry()
    return LedgerEntry(
        movements=(_movement(code, owner, op_id, kind, deltas, when, order_id=order_id),),
        epochs=((code, epoch),),
    )
