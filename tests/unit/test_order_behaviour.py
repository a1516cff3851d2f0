"""The order actor's decisions, as plain function calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from actors.order.behaviour import (
    Allocated,
    AllocationRefused,
    Decision,
    Notify,
    ReleaseAll,
    ReleasedAll,
    Remind,
    RequestFulfillment,
    Reserve,
    Result,
    Rules,
    Snapshot,
    decide,
    evolve,
)
from actors.order.events import (
    AddressChanged,
    AttentionNeeded,
    BackorderFilled,
    CancelRefused,
    Event,
    FulfillmentRequested,
    Holding,
    HoldReleased,
    LinesChanged,
    NothingToShip,
    OrderCancelled,
    OrderReceived,
    StockAllocated,
    decode_event,
    encode_event,
)
from actors.order.holds import ORDER_HOLD
from actors.order.messages import (
    AddressCorrected,
    CancelRequested,
    HoldRelease,
    Message,
    OrderChanged,
    OrderPaid,
    ReminderDue,
)
from actors.order.messages import BackorderFilled as Filled
from actors.order.reminder import ReminderKind
from actors.order.states import OrderState
from actors.order.types import Address, Customer, Line, NormalizedOrder
from actors.shipping.carriers import Parcel

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
RULES = Rules(backorder_policy="wait_all", cancel_after_days=10)
ADDRESS = Address(
    name="Ada Lovelace", line1="12 Main St", city="Springfield", region="IL",
    postal_code="62701", country="US",
)  # fmt: skip


def an_order(*lines: Line, policy: str | None = None) -> NormalizedOrder:
    return NormalizedOrder(
        id="ord_1",
        platform="shopify",
        external_id="1001",
        currency="EUR",
        customer=Customer(),
        shipping_address=ADDRESS,
        lines=lines or (Line(sku="A", quantity=2), Line(sku="B", quantity=1)),
        backorder_policy=policy,  # type: ignore[arg-type]
    )


def run(snapshot: Snapshot | None, message: Message | Result) -> tuple[Decision, Snapshot | None]:
    decision = decide(snapshot, message, RULES, NOW)
    for event in decision.events:
        snapshot = evolve(snapshot, event, "ord_1")
    return decision, snapshot


def paid(order: NormalizedOrder | None = None) -> OrderPaid:
    return OrderPaid(order_id="ord_1", order=order or an_order(), received_at=NOW)


def test_a_paid_order_is_received_and_asks_for_a_reservation() -> None:
    decision, snapshot = run(None, paid())
    assert [type(e) for e in decision.events] == [OrderReceived]
    assert decision.effects == (Reserve((("A", 2), ("B", 1)), "wait_all"),)
    assert snapshot is not None
    assert snapshot.state is OrderState.RECEIVED


def test_lines_of_one_sku_are_summed_and_digital_lines_left_out() -> None:
    order = an_order(
        Line(sku="A", quantity=1),
        Line(sku="GIFT", quantity=1, requires_shipping=False),
        Line(sku="A", quantity=2),
    )
    decision, _ = run(None, paid(order))
    assert decision.effects == (Reserve((("A", 3),), "wait_all"),)


def test_an_order_with_nothing_to_ship_is_completed() -> None:
    order = an_order(Line(sku="GIFT", quantity=1, requires_shipping=False))
    decision, snapshot = run(None, paid(order))
    assert [type(e) for e in decision.events] == [OrderReceived, NothingToShip]
    assert decision.effects == ()
    assert snapshot is not None
    assert snapshot.state is OrderState.COMPLETED


def test_the_orders_own_policy_wins_over_the_store_setting() -> None:
    decision, _ = run(None, paid(an_order(Line(sku="A", quantity=1), policy="ship_available")))
    assert decision.effects == (Reserve((("A", 1),), "ship_available"),)


def test_a_second_paid_message_changes_nothing() -> None:
    _, snapshot = run(None, paid())
    assert decide(snapshot, paid(), RULES, NOW) == Decision()


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("reserved", OrderState.RESERVED),
        ("partially_reserved", OrderState.PARTIALLY_RESERVED),
        ("backordered", OrderState.BACKORDERED),
    ],
)
def test_the_allocation_sets_the_state(status: str, state: OrderState) -> None:
    _, snapshot = run(None, paid())
    waiting = {"reserved": 0, "partially_reserved": 1, "backordered": 2}[status]
    holdings = (Holding("main", "A", 2 - waiting, waiting),)
    allocated = Allocated(status=status, holdings=holdings, policy="wait_all")  # type: ignore[arg-type]
    decision, snapshot = run(snapshot, allocated)
    assert snapshot is not None
    assert snapshot.state is state
    assert snapshot.holdings == holdings
    # Only a whole reservation goes to the warehouse under wait_all; the customer hears of
    # a wait.
    asked = [type(effect) for effect in decision.effects]
    assert asked == ([RequestFulfillment] if status == "reserved" else [Notify])


def test_a_refused_reservation_holds_the_order_for_a_person() -> None:
    _, snapshot = run(None, paid())
    _, snapshot = run(snapshot, AllocationRefused(reason="unknown sku 'NOSKU-1'"))
    assert snapshot is not None
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.reason == "unknown sku 'NOSKU-1'"


def test_a_paid_order_held_before_reserving_tries_again_when_sent_again() -> None:
    _, snapshot = run(None, paid())
    _, snapshot = run(snapshot, AllocationRefused(reason="unknown sku"))
    decision, _ = run(snapshot, paid())
    assert decision.events == ()
    assert decision.effects == (Reserve((("A", 2), ("B", 1)), "wait_all"),)


def test_releasing_an_order_held_before_reserving_asks_for_its_reservation_again() -> None:
    _, snapshot = run(None, paid())
    _, snapshot = run(snapshot, AllocationRefused(reason="unknown sku 'B'"))
    decision, snapshot = run(snapshot, HoldRelease(order_id="ord_1", hold=ORDER_HOLD))
    assert [type(e) for e in decision.events] == [HoldReleased]
    assert decision.effects == (Reserve((("A", 2), ("B", 1)), "wait_all"),)
    assert snapshot is not None
    assert snapshot.holds == ()
    assert snapshot.state is OrderState.RECEIVED
    # Still unknown: held again, with the reason.
    _, again = run(snapshot, AllocationRefused(reason="unknown sku 'B'"))
    assert again is not None
    assert again.state is OrderState.NEEDS_ATTENTION
    assert again.holds == (ORDER_HOLD,)
    # Known and stocked now: reserved, and on to the warehouse.
    reserved = Allocated(
        status="reserved",
        holdings=(Holding("main", "A", 2, 0), Holding("main", "B", 1, 0)),
        policy="wait_all",
    )
    decision, after = run(snapshot, reserved)
    assert after is not None
    assert after.state is OrderState.RESERVED
    assert [type(effect) for effect in decision.effects] == [RequestFulfillment]


def test_releasing_an_order_that_holds_stock_asks_for_no_reservation() -> None:
    _, snapshot = run(None, paid())
    reserved = Allocated(
        status="backordered", holdings=(Holding("main", "A", 0, 2),), policy="wait_all"
    )
    _, snapshot = run(snapshot, reserved)
    held = AttentionNeeded(at=NOW, reason="a person looks", hold=ORDER_HOLD)
    snapshot = evolve(snapshot, held, "ord_1")
    decision, _ = run(snapshot, HoldRelease(order_id="ord_1", hold=ORDER_HOLD))
    assert [type(e) for e in decision.events] == [HoldReleased]
    assert not any(isinstance(effect, Reserve) for effect in decision.effects)


def test_a_cancel_after_days_backorder_sets_a_reminder() -> None:
    _, snapshot = run(None, paid())
    allocated = Allocated(
        status="backordered", holdings=(Holding("main", "A", 0, 2),), policy="cancel_after_days"
    )
    decision, _ = run(snapshot, allocated)
    assert decision.effects == (
        Notify(kind="backorder_notice"),
        Remind(ReminderKind.CANCEL_BACKORDER, NOW + timedelta(days=10)),
    )


def backordered() -> Snapshot:
    _, snapshot = run(None, paid())
    holdings = (Holding("main", "A", 0, 2), Holding("main", "B", 0, 1))
    _, snapshot = run(
        snapshot, Allocated(status="backordered", holdings=holdings, policy="wait_all")
    )
    assert snapshot is not None
    return snapshot


def test_a_filled_backorder_reserves_the_order() -> None:
    filled = Filled(order_id="ord_1", warehouse="main", lines=(("A", 2), ("B", 1)))
    decision, snapshot = run(backordered(), filled)
    assert [type(e) for e in decision.events] == [BackorderFilled]
    assert snapshot is not None
    assert snapshot.state is OrderState.RESERVED
    assert snapshot.holdings == (Holding("main", "A", 2, 0), Holding("main", "B", 1, 0))


def test_a_partly_filled_backorder_leaves_the_order_partly_reserved() -> None:
    filled = Filled(order_id="ord_1", warehouse="main", lines=(("A", 2),))
    _, snapshot = run(backordered(), filled)
    assert snapshot is not None
    assert snapshot.state is OrderState.PARTIALLY_RESERVED


def test_cancelling_a_held_order_releases_then_cancels() -> None:
    cancel = CancelRequested(order_id="ord_1", reason="customer asked", requested_by="shopify")
    decision, snapshot = run(backordered(), cancel)
    assert decision.events == ()
    assert decision.effects == (ReleaseAll("cancel"),)
    assert decision.pending == ReleasedAll(reason="customer asked", by="shopify")
    decision, snapshot = run(snapshot, decision.pending)
    assert decision.events == (OrderCancelled(at=NOW, reason="customer asked", by="shopify"),)
    assert snapshot is not None
    assert snapshot.state is OrderState.CANCELLED
    assert snapshot.holdings == ()


def test_a_cancel_before_the_paid_message_is_remembered() -> None:
    cancel = CancelRequested(order_id="ord_1", reason="fraud", requested_by="operator")
    _, snapshot = run(None, cancel)
    assert snapshot is not None
    assert snapshot.state is OrderState.CANCELLED
    assert decide(snapshot, paid(), RULES, NOW) == Decision()


def test_a_cancel_after_the_label_is_refused() -> None:
    shipped = Snapshot(order_id="ord_1", state=OrderState.SHIPPED)
    decision, snapshot = run(
        shipped, CancelRequested(order_id="ord_1", reason="x", requested_by="y")
    )
    assert [type(e) for e in decision.events] == [CancelRefused]
    assert snapshot is not None
    assert snapshot.state is OrderState.SHIPPED


def test_the_backorder_reminder_cancels_only_what_still_waits() -> None:
    due = ReminderDue(order_id="ord_1", kind=ReminderKind.CANCEL_BACKORDER, key="k", due_at=NOW)
    decision, _ = run(backordered(), due)
    assert decision.effects == (ReleaseAll("cancel"),)
    assert decision.pending is not None
    assert decision.pending.reason == "backorder waited 10 days"
    reserved = msgspec.structs.replace(
        backordered(), state=OrderState.RESERVED, holdings=(Holding("main", "A", 2, 0),)
    )
    assert decide(reserved, due, RULES, NOW) == Decision()


def test_events_round_trip_as_json() -> None:
    events: list[Event] = [
        OrderReceived(at=NOW, order=an_order(Line(sku="A", quantity=1, unit_price=Decimal("2.5")))),
        StockAllocated(
            at=NOW, status="backordered", holdings=(Holding("main", "A", 0, 1),), policy="wait_all"
        ),
        BackorderFilled(at=NOW, warehouse="main", lines=(("A", 1),)),
        OrderCancelled(at=NOW, reason="r", by="b"),
    ]
    for event in events:
        assert decode_event(encode_event(event)) == event


def held_for_its_address() -> Snapshot:
    bad = msgspec.structs.replace(ADDRESS, country="XX")
    order = msgspec.structs.replace(an_order(Line(sku="A", quantity=2)), shipping_address=bad)
    _, snapshot = run(None, paid(order))
    reserved = Allocated(
        status="reserved", holdings=(Holding("main", "A", 2, 0),), policy="wait_all"
    )
    decision, snapshot = run(snapshot, reserved)
    assert decision.effects == ()
    assert snapshot is not None
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.reason == "cannot ship: address: XX is not an ISO 3166-1 country code"
    return snapshot


def test_a_corrected_address_releases_the_order_it_held_and_it_goes_to_the_warehouse() -> None:
    snapshot = held_for_its_address()
    decision, after = run(snapshot, AddressCorrected(order_id="ord_1", address=ADDRESS))
    assert [type(e) for e in decision.events] == [AddressChanged, HoldReleased]
    assert [type(effect) for effect in decision.effects] == [RequestFulfillment]
    assert after is not None
    assert after.order is not None
    assert after.order.shipping_address == ADDRESS
    assert after.holds == ()
    assert after.state is OrderState.RESERVED


def test_a_corrected_address_that_still_will_not_do_holds_the_order_again() -> None:
    snapshot = held_for_its_address()
    no_city = msgspec.structs.replace(ADDRESS, city="")
    decision, after = run(snapshot, AddressCorrected(order_id="ord_1", address=no_city))
    assert [type(e) for e in decision.events] == [AddressChanged, HoldReleased, AttentionNeeded]
    assert decision.effects == ()
    assert after is not None
    assert after.state is OrderState.NEEDS_ATTENTION
    assert after.reason == "cannot ship: address: city is missing"


def with_pick_list() -> tuple[RequestFulfillment, Snapshot]:
    """Paid for 2 A, reserved, and its pick list at the warehouse."""
    _, snapshot = run(None, paid(an_order(Line(sku="A", quantity=2))))
    reserved = Allocated(
        status="reserved", holdings=(Holding("main", "A", 2, 0),), policy="wait_all"
    )
    decision, snapshot = run(snapshot, reserved)
    [request] = decision.effects
    assert isinstance(request, RequestFulfillment)
    requested = FulfillmentRequested(
        at=NOW, shipment_id=request.shipment_id, warehouse="main", lines=request.lines,
        service_level=request.service_level, promised_by=request.promised_by, pick_list=(),
        parcel=Parcel(weight_g=100, length_cm=10, width_cm=10, height_cm=10),
    )  # fmt: skip
    after = evolve(snapshot, requested, "ord_1")
    assert after is not None
    return request, after


def test_an_address_corrected_after_the_pick_list_was_sent_holds_the_order_instead() -> None:
    request, snapshot = with_pick_list()
    moved = msgspec.structs.replace(ADDRESS, line1="1 Other St")
    decision, after = run(snapshot, AddressCorrected(order_id="ord_1", address=moved))
    assert [type(e) for e in decision.events] == [AttentionNeeded]
    assert after is not None
    assert after.order is not None
    assert after.order.shipping_address == ADDRESS
    assert (
        after.reason
        == f"the shipping address changed after the pick list was sent ({request.shipment_id})"
    )


def test_a_corrected_address_leaves_a_hold_for_another_reason() -> None:
    _, snapshot = run(None, paid())
    _, snapshot = run(snapshot, AllocationRefused(reason="unknown sku 'B'"))
    moved = msgspec.structs.replace(ADDRESS, line1="1 Other St")
    decision, after = run(snapshot, AddressCorrected(order_id="ord_1", address=moved))
    assert [type(e) for e in decision.events] == [AddressChanged]
    assert after is not None
    assert after.order is not None
    assert after.order.shipping_address == moved
    assert after.holds == (ORDER_HOLD,)


def changed(order: NormalizedOrder) -> OrderChanged:
    return OrderChanged(order_id="ord_1", order=order, by="shopify")


def partly_waiting() -> Snapshot:
    """Paid for 2 A and 1 B; A reserved, B waited for: nothing picked yet."""
    _, snapshot = run(None, paid())
    waiting = Allocated(
        status="partially_reserved",
        holdings=(Holding("main", "A", 2, 0), Holding("main", "B", 0, 1)),
        policy="wait_all",
    )
    decision, snapshot = run(snapshot, waiting)
    assert not any(isinstance(e, RequestFulfillment) for e in decision.effects)
    assert snapshot is not None
    return snapshot


def test_a_platform_change_that_leaves_address_and_lines_as_they_are_changes_nothing() -> None:
    snapshot = partly_waiting()
    assert snapshot.order is not None
    same = msgspec.structs.replace(snapshot.order, note="gift wrap, please")
    decision, after = run(snapshot, changed(same))
    assert decision == Decision()
    assert after == snapshot


def test_lines_changed_before_the_pick_list_give_back_what_was_held_and_reserve_the_new() -> None:
    snapshot = partly_waiting()
    new_lines = an_order(Line(sku="A", quantity=3)).lines
    order = msgspec.structs.replace(an_order(), lines=new_lines)
    decision, after = run(snapshot, changed(order))
    assert [type(e) for e in decision.events] == [LinesChanged]
    assert decision.effects == (
        ReleaseAll(op_id="change1:release"),
        Reserve((("A", 3),), "wait_all", op_id="change1"),
    )
    assert after is not None
    assert after.order is not None
    assert after.order.lines == new_lines
    assert after.holdings == ()
    assert after.line_changes == 1
    # The new reservation is the order's whole holding: ready, it goes to the warehouse.
    reserved = Allocated(
        status="reserved", holdings=(Holding("main", "A", 3, 0),), policy="wait_all",
        op_id="change1",
    )  # fmt: skip
    decision, after = run(after, reserved)
    [request] = decision.effects
    assert isinstance(request, RequestFulfillment)
    assert request.lines == (("A", 3),)
    assert after is not None
    assert after.state is OrderState.RESERVED
    # A second change is numbered apart: its stock calls are new ones.
    decision, _ = run(
        msgspec.structs.replace(after, shipments=()),
        changed(msgspec.structs.replace(order, lines=an_order(Line(sku="A", quantity=1)).lines)),
    )
    assert decision.effects[0] == ReleaseAll(op_id="change2:release")


def test_a_new_address_from_the_platform_releases_an_address_hold_and_ships() -> None:
    snapshot = held_for_its_address()
    assert snapshot.order is not None
    fixed = msgspec.structs.replace(snapshot.order, shipping_address=ADDRESS)
    decision, after = run(snapshot, changed(fixed))
    assert [type(e) for e in decision.events] == [AddressChanged, HoldReleased]
    assert [type(effect) for effect in decision.effects] == [RequestFulfillment]
    assert after is not None
    assert after.state is OrderState.RESERVED


def test_a_platform_change_after_the_pick_list_holds_the_order_saying_what_changed() -> None:
    request, snapshot = with_pick_list()
    assert snapshot is not None
    assert snapshot.order is not None
    moved = msgspec.structs.replace(
        snapshot.order,
        shipping_address=msgspec.structs.replace(ADDRESS, line1="1 Other St"),
        lines=(Line(sku="A", quantity=1),),
    )
    decision, after = run(snapshot, changed(moved))
    assert [type(e) for e in decision.events] == [AttentionNeeded]
    assert decision.effects == ()
    assert after is not None
    assert after.state is OrderState.NEEDS_ATTENTION
    assert after.reason == (
        "the shipping address and lines changed on shopify after the pick list was sent "
        f"({request.shipment_id})"
    )
    assert after.order == snapshot.order  # what is on the pick list stays
    # The same change delivered again holds nothing more.
    assert run(after, changed(moved))[0] == Decision()


def test_lines_changed_to_nothing_shippable_leave_nothing_to_ship() -> None:
    snapshot = partly_waiting()
    gift_card = Line(sku="GIFT", quantity=1, requires_shipping=False)
    order = msgspec.structs.replace(an_order(), lines=(gift_card,))
    decision, after = run(snapshot, changed(order))
    assert [type(e) for e in decision.events] == [LinesChanged, NothingToShip]
    assert decision.effects == (ReleaseAll(op_id="change1:release"),)
    assert after is not None
    assert after.holdings == ()
