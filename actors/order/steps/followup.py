"""Follow-up: a delivered order's messages, the follow-ups after it, and completion.

Holds what a delivery leads to (the delivered message, the review request and repeat
purchase reminders, or completion), the decisions on the follow-up reminders and on the
outbox's answers (``Queued``, ``NotificationSettled``), and the evolve cases for
``FollowUpsScheduled``, ``FollowUpDone`` and ``OrderCompleted``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec import structs

from actors.order.events import (
    Event,
    FollowUpDone,
    FollowUpsScheduled,
    MessageQueued,
    OrderCompleted,
)
from actors.order.messages import NotificationSettled, ReminderDue
from actors.order.reminder import FOLLOW_UPS, ReminderKind
from actors.order.states import OrderState
from actors.order.steps.model import (
    Decision,
    Effect,
    Evolve,
    Notify,
    Queued,
    Remind,
    Rules,
    Snapshot,
)


def then_complete(
    snapshot: Snapshot,
    events: tuple[Event, ...],
    effects: tuple[Effect, ...],
    rules: Rules,
    now: datetime,
    delivered_at: datetime,
    evolve: Evolve,
) -> Decision:
    """After a delivery: when every shipment is delivered and nothing waits, the order is
    delivered: its message goes out and the follow-ups are set, or it is complete."""
    after: Snapshot = snapshot
    for event in events:
        after = evolve(after, event, snapshot.order_id)
    if after.state is not OrderState.DELIVERED:
        return Decision(events, effects)
    # Follow-ups count from the last parcel to arrive, whichever news came last.
    delivered_at = max(
        (s.delivered_at for s in after.shipments if s.delivered_at is not None),
        default=delivered_at,
    )
    more: list[Effect] = list(effects)
    if rules.delivered_message:
        more.append(Notify(kind="delivered"))
    review, repeat = _follow_up_days(after, rules)
    kinds = []
    for kind, days in zip(FOLLOW_UPS, (review, repeat), strict=True):
        if days:
            kinds.append(kind)
            more.append(Remind(kind, delivered_at + timedelta(days=days)))
    if not kinds:
        return Decision((*events, OrderCompleted(at=now)), tuple(more))
    return Decision((*events, FollowUpsScheduled(at=now, kinds=tuple(kinds))), tuple(more))


def _follow_up_days(snapshot: Snapshot, rules: Rules) -> tuple[int, int]:
    """Days after delivery for the review request and the repeat reminder: the store's,
    unless products of the order set their own (0 in the store's setting sends none)."""
    shipped = [s for s in snapshot.shipments if s.status == "delivered"]
    reviews = [s.review_after_days for s in shipped if s.review_after_days]
    repeats = [s.repeat_after_days for s in shipped if s.repeat_after_days]
    review = max(reviews) if reviews and rules.review_after_days else rules.review_after_days
    repeat = min(repeats) if repeats and rules.repeat_after_days else rules.repeat_after_days
    return review, repeat


def _follow_up_done(
    snapshot: Snapshot, kind: ReminderKind, status: str, now: datetime
) -> tuple[Event, ...]:
    done: tuple[Event, ...] = (FollowUpDone(at=now, kind=kind, status=status),)
    if set(snapshot.follow_ups) == {kind}:
        return (*done, OrderCompleted(at=now))
    return done


def follow_up_due(snapshot: Snapshot | None, due: ReminderDue) -> Decision:
    """A follow-up's day has come: its message goes out, unless it is settled already."""
    if snapshot is None or due.kind not in snapshot.follow_ups:
        return Decision()
    return Decision((), (Notify(kind=due.kind),))


def queued(snapshot: Snapshot | None, message: Queued, now: datetime) -> Decision:
    """A message is in the outbox; a follow-up no channel takes is skipped."""
    kind, channels = message.kind, message.channels
    event = MessageQueued(
        at=now, kind=kind, shipment_id=message.shipment_id, episode=message.episode,
        channels=channels,
    )  # fmt: skip
    if not channels and snapshot is not None and kind in snapshot.follow_ups:
        skipped = _follow_up_done(snapshot, ReminderKind(kind), "skipped", now)
        return Decision((event, *skipped))
    return Decision((event,))


def settled(snapshot: Snapshot | None, message: NotificationSettled, now: datetime) -> Decision:
    """A follow-up was sent or given up: the order completes after its last one."""
    kind = message.kind
    if snapshot is None or kind not in snapshot.follow_ups:
        return Decision()
    return Decision(_follow_up_done(snapshot, ReminderKind(kind), message.status, now))


def follow_ups_scheduled(current: Snapshot, event: FollowUpsScheduled) -> Snapshot:
    return structs.replace(current, follow_ups=event.kinds)


def follow_up_done(current: Snapshot, event: FollowUpDone) -> Snapshot:
    left = tuple(k for k in current.follow_ups if k != event.kind)
    return structs.replace(current, follow_ups=left)


def completed(current: Snapshot, event: OrderCompleted) -> Snapshot:
    return structs.replace(current, state=OrderState.COMPLETED, follow_ups=(), holds=())
