"""The order actor's delivery monitoring, delays and completion, as plain function calls."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import msgspec

from actors.order.behaviour import (
    Allocated,
    CommittedShipment,
    Decision,
    FulfillmentQueued,
    LabelBought,
    Notify,
    Queued,
    RatesQuoted,
    Remind,
    RequestFulfillment,
    Result,
    Rules,
    Snapshot,
    decide,
    evolve,
)
from actors.order.events import AttentionNeeded, Holding
from actors.order.holds import DeadLetterHold
from actors.order.messages import (
    BuyLabel,
    HoldRelease,
    Message,
    NotificationSettled,
    OrderPaid,
    Packed,
    ReminderDue,
    TrackingUpdated,
)
from actors.order.reminder import ReminderKey, ReminderKind, ReminderScope
from actors.order.states import OrderState
from actors.order.types import Address, Customer, Line, NormalizedOrder
from actors.shipping.carriers import Parcel, Rate, TrackingStatus
from actors.shipping.pick_list import PickLine
from actors.shipping.tracking import DelayCause

PAID = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # Thursday morning; promised by Dec 3
RULES = Rules(review_after_days=7, repeat_after_days=30)
ADDRESS = Address(
    name="Ada Lovelace", line1="12 Main St", city="Springfield", region="IL",
    postal_code="62701", country="US",
)  # fmt: skip


def step(
    snapshot: Snapshot | None, message: Message | Result, now: datetime, rules: Rules = RULES
) -> tuple[Decision, Snapshot]:
    decision = decide(snapshot, message, rules, now)
    for event in decision.events:
        snapshot = evolve(snapshot, event, "ord_1")
    assert snapshot is not None
    return decision, snapshot


def shipped(rules: Rules = RULES, **product_follow_ups: int) -> tuple[Decision, Snapshot]:
    """An order paid, packed and shipped by ground (4 days) on Thursday morning."""
    order = NormalizedOrder(
        id="ord_1", platform="shopify", external_id="1001", paid_at=PAID, currency="USD",
        customer=Customer(email="ada@example.com"), shipping_address=ADDRESS,
        lines=(Line(sku="A", quantity=1),), total=Decimal(20),
    )  # fmt: skip
    _, snapshot = step(None, OrderPaid(order_id="ord_1", order=order, received_at=PAID), PAID)
    allocated = Allocated(
        status="reserved", holdings=(Holding("main", "A", 1, 0),), policy="wait_all"
    )
    decision, snapshot = step(snapshot, allocated, PAID)
    [request] = decision.effects
    assert isinstance(request, RequestFulfillment)
    line = PickLine(line_no=1, sku="A", name="A", quantity=1, bin="A-1", weight_g=100)
    parcel = Parcel(weight_g=200, length_cm=10, width_cm=10, height_cm=10)
    queued = FulfillmentQueued(
        request=request, pick_list=(line,), parcel=parcel, **product_follow_ups
    )
    _, snapshot = step(snapshot, queued, PAID)
    _, snapshot = step(
        snapshot, Packed(order_id="ord_1", shipment_id="ord_1-1", items=(("A", 1),)), PAID
    )
    rate = Rate(
        carrier="sandbox", carrier_account="Sandbox Post", service="ground",
        amount=Decimal("5.40"), currency="USD", delivery_days=4, rate_id="q:ground", quote_id="q",
    )  # fmt: skip
    _, snapshot = step(snapshot, RatesQuoted(shipment_id="ord_1-1", rates=(rate,)), PAID)
    _, snapshot = step(snapshot, BuyLabel(order_id="ord_1", shipment_id="ord_1-1"), PAID)
    bought = LabelBought(
        shipment_id="ord_1-1", carrier="sandbox", carrier_account="Sandbox Post",
        service="ground", tracking_number="SB1", tracking_url=None, label_format="pdf",
        label_path="/l.pdf", purchase_id="q", amount=Decimal("5.40"), currency="USD",
    )  # fmt: skip
    _, snapshot = step(snapshot, bought, PAID)
    return step(snapshot, CommittedShipment(shipment_id="ord_1-1", lines=(("A", 1),)), PAID)


def news(status: TrackingStatus, at: datetime, estimate: date | None = None) -> TrackingUpdated:
    return TrackingUpdated(
        order_id="ord_1", shipment_id="ord_1-1", status=status, carrier_status=status,
        at=at, estimated_delivery=estimate,
    )  # fmt: skip


# What the shipment's reminders are about: the parcel, and the check after its first scan.
PARCEL = ReminderScope("ord_1-1")
FIRST_SCAN = ReminderScope("ord_1-1", 1)


def due(kind: ReminderKind, scope: ReminderScope | None, at: datetime) -> ReminderDue:
    key = ReminderKey("ord_1", kind, scope).text()
    return ReminderDue(order_id="ord_1", kind=kind, key=key, due_at=at, scope=scope)


def test_shipping_sends_the_confirmation_and_sets_the_delay_checks() -> None:
    decision, snapshot = shipped()
    assert snapshot.state is OrderState.SHIPPED
    assert decision.effects == (
        Notify(kind="shipping_confirmation", shipment_id="ord_1-1"),
        # Collected at the 15:00 cutoff; a day's grace after that.
        Remind(ReminderKind.PICKUP_CHECK, PAID.replace(hour=15) + timedelta(hours=24), PARCEL),
        # The promised day (Thursday Dec 3) is over at midnight where the parcel left.
        Remind(ReminderKind.PROMISE_CHECK, datetime(2026, 12, 4, tzinfo=UTC), PARCEL),
    )


def test_news_moves_the_order_on_and_older_or_repeated_news_changes_nothing() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    decision, snapshot = step(snapshot, news("in_transit", scan), scan)
    assert snapshot.state is OrderState.IN_TRANSIT
    # Each scan sets a check for the next one: 48 working hours on (the weekend is off).
    monday = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert decision.effects == (Remind(ReminderKind.NO_SCAN, monday, FIRST_SCAN),)
    for stale in (news("in_transit", scan), news("pre_transit", scan + timedelta(hours=1)),
                  news("unknown", scan + timedelta(hours=2))):  # fmt: skip
        decision, after = step(snapshot, stale, scan)
        assert decision == Decision()
        assert after == snapshot


def test_a_late_carrier_estimate_opens_one_delay_episode_with_one_alert() -> None:
    _, snapshot = shipped()
    first = PAID + timedelta(hours=3)
    decision, snapshot = step(snapshot, news("in_transit", first, date(2026, 12, 7)), first)
    assert Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1) in decision.effects
    assert snapshot.shipments[0].delayed
    # More scans while the estimate stays late: the same episode, no second alert.
    later = first + timedelta(hours=20)
    decision, snapshot = step(snapshot, news("in_transit", later), later)
    assert not any(isinstance(e, Notify) for e in decision.effects)
    assert snapshot.shipments[0].delay_episode == 1
    # Delivered: the episode is over.
    done = later + timedelta(days=3)
    decision, snapshot = step(snapshot, news("delivered", done), done)
    assert not snapshot.shipments[0].delayed
    assert snapshot.state is OrderState.DELIVERED


def test_no_scan_for_too_long_is_a_delay_and_a_scan_ends_it() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    _, snapshot = step(snapshot, news("in_transit", scan), scan)
    saturday = scan + timedelta(hours=48)
    decision, _ = step(snapshot, due(ReminderKind.NO_SCAN, FIRST_SCAN, saturday), saturday)
    assert decision == Decision()  # no scans over a weekend is no delay
    check = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 48 working hours after the scan
    decision, snapshot = step(snapshot, due(ReminderKind.NO_SCAN, FIRST_SCAN, check), check)
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)
    assert snapshot.shipments[0].delay_reason == "no scan for 96 hours"
    assert snapshot.shipments[0].delay_cause is DelayCause.NO_SCAN
    moved = check + timedelta(hours=1)
    _, snapshot = step(snapshot, news("in_transit", moved), moved)
    assert not snapshot.shipments[0].delayed
    # A check set before the last scan is stale.
    decision, _ = step(snapshot, due(ReminderKind.NO_SCAN, FIRST_SCAN, moved), moved)
    assert decision == Decision()


def test_a_parcel_not_picked_up_in_time_is_a_delay() -> None:
    _, snapshot = shipped()
    check = PAID.replace(hour=15) + timedelta(hours=24)
    decision, snapshot = step(snapshot, due(ReminderKind.PICKUP_CHECK, PARCEL, check), check)
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)
    assert snapshot.shipments[0].delay_reason == "not picked up 24 hours after it shipped"
    assert snapshot.shipments[0].delay_cause is DelayCause.NOT_PICKED_UP


def test_the_promised_date_passing_without_delivery_is_a_delay_until_delivery() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    _, snapshot = step(snapshot, news("in_transit", scan), scan)
    over = datetime(2026, 12, 4, tzinfo=UTC)
    decision, snapshot = step(snapshot, due(ReminderKind.PROMISE_CHECK, PARCEL, over), over)
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)
    # A scan does not undo a broken promise: still one episode, no new alert.
    later = over + timedelta(hours=5)
    decision, snapshot = step(snapshot, news("out_for_delivery", later), later)
    assert snapshot.shipments[0].delayed
    assert not any(isinstance(e, Notify) for e in decision.effects)


def test_delivery_schedules_the_follow_ups_and_the_order_completes_when_they_are_done() -> None:
    _, snapshot = shipped()
    arrived = PAID + timedelta(days=4)
    decision, snapshot = step(snapshot, news("delivered", arrived), arrived)
    assert snapshot.state is OrderState.DELIVERED
    assert snapshot.shipments[0].delivered_at == arrived
    assert decision.effects == (
        Notify(kind="delivered"),
        Remind(ReminderKind.REVIEW_REQUEST, arrived + timedelta(days=7)),
        Remind(ReminderKind.REPEAT_PURCHASE, arrived + timedelta(days=30)),
    )
    review = due(ReminderKind.REVIEW_REQUEST, None, arrived + timedelta(days=7))
    decision, snapshot = step(snapshot, review, review.due_at)
    assert decision.effects == (Notify(kind=ReminderKind.REVIEW_REQUEST),)
    settled = NotificationSettled(order_id="ord_1", kind=ReminderKind.REVIEW_REQUEST, status="sent")
    _, snapshot = step(snapshot, settled, review.due_at)
    assert snapshot.state is OrderState.DELIVERED
    # Nobody to send the reminder to: skipped, and that completes the order.
    queued = Queued(kind=ReminderKind.REPEAT_PURCHASE, shipment_id=None, episode=0, channels=())
    _, snapshot = step(snapshot, queued, review.due_at)
    assert snapshot.state is OrderState.COMPLETED


def test_without_follow_ups_a_delivered_order_is_complete_at_once() -> None:
    rules = Rules(review_after_days=0, repeat_after_days=0, delivered_message=False)
    _, snapshot = shipped(rules)
    arrived = PAID + timedelta(days=4)
    decision, snapshot = step(snapshot, news("delivered", arrived), arrived, rules)
    assert decision.effects == ()
    assert snapshot.state is OrderState.COMPLETED


def test_a_failed_delivery_holds_the_order_and_tells_the_customer() -> None:
    _, snapshot = shipped()
    attempt = PAID + timedelta(days=4)
    decision, snapshot = step(snapshot, news("failure", attempt), attempt)
    assert decision.effects == (Notify(kind="delivery_exception", shipment_id="ord_1-1"),)
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.shipments[0].status == "failure"
    # Later news of a failed parcel changes nothing.
    decision, _ = step(snapshot, news("delivered", attempt + timedelta(days=1)), attempt)
    assert decision == Decision()


def test_a_parcel_labelled_after_fridays_cutoff_is_not_late_over_the_weekend() -> None:
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    _, snapshot = shipped()
    shipment = msgspec.structs.replace(snapshot.shipments[0], shipped_at=friday)
    snapshot = msgspec.structs.replace(snapshot, shipments=(shipment,))
    saturday = friday + timedelta(hours=24)
    decision, _ = step(snapshot, due(ReminderKind.PICKUP_CHECK, PARCEL, saturday), saturday)
    assert decision == Decision()
    # Collected Monday at the cutoff: a day later without a scan, it is late.
    tuesday = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    decision, _ = step(snapshot, due(ReminderKind.PICKUP_CHECK, PARCEL, tuesday), tuesday)
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)


def test_a_parcel_waiting_at_a_pickup_point_is_not_late() -> None:
    _, snapshot = shipped()
    waiting = PAID + timedelta(days=2)
    _, snapshot = step(snapshot, news("available_for_pickup", waiting), waiting)
    over = datetime(2026, 12, 4, tzinfo=UTC)
    decision, _ = step(snapshot, due(ReminderKind.PROMISE_CHECK, PARCEL, over), over)
    assert decision == Decision()


def test_a_check_handled_before_its_time_looks_at_its_due_time() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    _, snapshot = step(snapshot, news("in_transit", scan), scan)
    over = datetime(2026, 12, 4, tzinfo=UTC)
    early = over - timedelta(hours=2)  # a process whose clock is behind
    decision, _ = step(snapshot, due(ReminderKind.PROMISE_CHECK, PARCEL, over), early)
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)


def test_a_scan_after_the_promise_broke_does_not_end_the_episode() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    _, snapshot = step(snapshot, news("in_transit", scan), scan)
    check = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    _, snapshot = step(snapshot, due(ReminderKind.NO_SCAN, FIRST_SCAN, check), check)
    assert snapshot.shipments[0].delayed
    after_promise = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    decision, snapshot = step(snapshot, news("in_transit", after_promise), after_promise)
    assert snapshot.shipments[0].delayed
    assert not any(isinstance(e, Notify) for e in decision.effects)


def test_products_may_set_their_own_follow_ups() -> None:
    _, snapshot = shipped(review_after_days=30, repeat_after_days=21)
    arrived = PAID + timedelta(days=4)
    decision, _ = step(snapshot, news("delivered", arrived), arrived)
    assert Remind(ReminderKind.REVIEW_REQUEST, arrived + timedelta(days=30)) in decision.effects
    assert Remind(ReminderKind.REPEAT_PURCHASE, arrived + timedelta(days=21)) in decision.effects


def test_a_moved_estimate_without_a_scan_can_start_a_delay() -> None:
    _, snapshot = shipped()
    scan = PAID + timedelta(hours=3)
    _, snapshot = step(snapshot, news("in_transit", scan, date(2026, 12, 2)), scan)
    assert not snapshot.shipments[0].delayed
    moved = news("in_transit", scan, date(2026, 12, 8))  # the same scan, a later estimate
    decision, snapshot = step(snapshot, moved, scan + timedelta(hours=1))
    assert decision.effects == (Notify(kind="delay_alert", shipment_id="ord_1-1", episode=1),)
    assert snapshot.shipments[0].carrier_estimate == date(2026, 12, 8)
    assert snapshot.shipments[0].delay_cause is DelayCause.LATE_ESTIMATE
    assert snapshot.shipments[0].scans == 1
    decision, _ = step(snapshot, moved, scan + timedelta(hours=2))
    assert decision == Decision()


def held_by_a_dead_letter(snapshot: Snapshot, at: datetime) -> Snapshot:
    held = AttentionNeeded(at=at, reason="dead letter", hold=DeadLetterHold(seq=9))
    return evolve(snapshot, held, "ord_1")


def test_a_released_dead_letter_lets_a_delivered_order_go_on_to_its_follow_ups() -> None:
    _, snapshot = shipped()
    arrived = PAID + timedelta(days=4)
    snapshot = held_by_a_dead_letter(snapshot, arrived)
    decision, snapshot = step(snapshot, news("delivered", arrived), arrived)
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert not any(isinstance(e, Notify) for e in decision.effects)
    release = HoldRelease(order_id="ord_1", hold=DeadLetterHold(seq=9))
    decision, snapshot = step(snapshot, release, arrived + timedelta(hours=1))
    assert snapshot.state is OrderState.DELIVERED
    assert snapshot.follow_ups == (ReminderKind.REVIEW_REQUEST, ReminderKind.REPEAT_PURCHASE)
    assert Notify(kind="delivered") in decision.effects


def test_a_finished_order_is_not_reopened_by_a_release() -> None:
    rules = Rules(review_after_days=0, repeat_after_days=0, delivered_message=False)
    _, snapshot = shipped(rules)
    arrived = PAID + timedelta(days=4)
    _, snapshot = step(snapshot, news("delivered", arrived), arrived, rules)
    assert snapshot.state is OrderState.COMPLETED
    decision, after = step(
        snapshot, HoldRelease(order_id="ord_1", hold=DeadLetterHold(seq=9)), arrived, rules
    )
    assert decision == Decision()
    assert after.state is OrderState.COMPLETED
