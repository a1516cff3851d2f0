"""The order actor's fulfillment and shipping decisions, as plain function calls."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec

from actors.order.behaviour import (
    Allocated,
    Buy,
    Commit,
    CommittedShipment,
    Decision,
    FulfillmentQueued,
    LabelBought,
    LabelRefused,
    Notify,
    RatesQuoted,
    ReleaseAll,
    ReleasedAll,
    RequestFulfillment,
    Reserve,
    Result,
    Rules,
    ShopRates,
    Snapshot,
    Tell,
    TellPlatform,
    Void,
    WriteOff,
    WrittenOff,
    decide,
    evolve,
)
from actors.order.events import AttentionNeeded, Holding
from actors.order.holds import DeadLetterHold
from actors.order.messages import (
    BackorderFilled,
    BuyLabel,
    CancelRequested,
    HoldRelease,
    Message,
    OrderPaid,
    Packed,
    Picked,
    RetryRequested,
    ShortPicked,
    TrackingCorrected,
    TrackingUpdated,
    WarehouseRefused,
)
from actors.order.outbox import CustomerMessages, MessageSettings
from actors.order.states import OrderState
from actors.order.types import Address, Customer, Line, NormalizedOrder
from actors.shipping.carriers import Parcel, Rate
from actors.shipping.pick_list import PickLine
from actors.shipping.selection import ShippingRules
from actors.storefront import ParcelDelivered, ParcelShipped, ShippedLine, TrackingChanged

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday, before the 15:00 cutoff
RULES = Rules(backorder_policy="wait_all")
ADDRESS = Address(
    name="Ada Lovelace", line1="12 Main St", city="Springfield", region="IL",
    postal_code="62701", country="US",
)  # fmt: skip
PARCEL = Parcel(weight_g=900, length_cm=30, width_cm=20, height_cm=10)


def an_order(
    *, address: Address | None = ADDRESS, service: str | None = None, total: str = "40"
) -> NormalizedOrder:
    return NormalizedOrder(
        id="ord_1",
        platform="shopify",
        external_id="1001",
        paid_at=NOW,
        currency="USD",
        customer=Customer(),
        shipping_address=address,
        shipping_service=service,
        total=Decimal(total),
        lines=(Line(sku="B", quantity=1), Line(sku="A", quantity=2)),
    )


def step(
    snapshot: Snapshot | None, message: Message | Result, rules: Rules = RULES
) -> tuple[Decision, Snapshot]:
    decision = decide(snapshot, message, rules, NOW)
    for event in decision.events:
        snapshot = evolve(snapshot, event, "ord_1")
    assert snapshot is not None  # every case here starts from a received order
    return decision, snapshot


def received(order: NormalizedOrder | None = None) -> Snapshot:
    _, snapshot = step(
        None, OrderPaid(order_id="ord_1", order=order or an_order(), received_at=NOW)
    )
    assert snapshot is not None
    return snapshot


def queued(request: RequestFulfillment) -> FulfillmentQueued:
    pick_list = tuple(
        PickLine(line_no=n, sku=sku, name=sku, quantity=units, bin=f"A-{n}", weight_g=100)
        for n, (sku, units) in enumerate(request.lines, start=1)
    )
    return FulfillmentQueued(request=request, pick_list=pick_list, parcel=PARCEL)


def reserved(snapshot: Snapshot, rules: Rules = RULES) -> tuple[RequestFulfillment, Snapshot]:
    holdings = (Holding("main", "A", 2, 0), Holding("main", "B", 1, 0))
    decision, after = step(
        snapshot, Allocated(status="reserved", holdings=holdings, policy="wait_all"), rules
    )
    [request] = decision.effects
    assert isinstance(request, RequestFulfillment)
    _, after = step(after, queued(request), rules)
    assert after is not None
    return request, after


def rate(service: str, amount: str, days: int) -> Rate:
    return Rate(
        carrier="sandbox", carrier_account="Sandbox Post", service=service,
        amount=Decimal(amount), currency="USD", delivery_days=days,
        rate_id=f"q1:{service}", quote_id="q1",
    )  # fmt: skip


def packed_order() -> Snapshot:
    request, snapshot = reserved(received())
    _, snapshot = step(snapshot, Picked(order_id="ord_1", shipment_id=request.shipment_id))
    items = (("A", 2), ("B", 1))
    packed = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=items, weight_g=950)
    _, snapshot = step(snapshot, packed)
    assert snapshot is not None
    return snapshot


def test_a_reserved_order_asks_the_warehouse_for_one_shipment() -> None:
    request, snapshot = reserved(received())
    assert request.shipment_id == "ord_1-1"
    assert request.lines == (("A", 2), ("B", 1))
    assert request.service_level == "standard"
    # Paid Thursday morning: leaves today, 5 business days later is the next Thursday.
    assert request.promised_by == date(2026, 12, 3)
    assert snapshot.state is OrderState.FULFILLMENT_REQUESTED
    assert [s.status for s in snapshot.shipments] == ["requested"]


def test_the_shipping_line_picks_the_service_level_and_the_promise() -> None:
    request, _ = reserved(received(an_order(service="Express Shipping")))
    assert request.service_level == "express"
    assert request.promised_by == date(2026, 11, 30)  # Thursday + 2 business days


def test_an_order_without_a_usable_address_is_held_before_anything_is_picked() -> None:
    holdings = (Holding("main", "A", 2, 0), Holding("main", "B", 1, 0))
    allocated = Allocated(status="reserved", holdings=holdings, policy="wait_all")
    decision, snapshot = step(received(an_order(address=None)), allocated)
    assert decision.effects == ()
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.reason == "cannot ship: no shipping address"


def test_wait_all_sends_nothing_until_the_backorder_is_filled() -> None:
    holdings = (Holding("main", "A", 1, 1), Holding("main", "B", 1, 0))
    allocated = Allocated(status="partially_reserved", holdings=holdings, policy="wait_all")
    decision, snapshot = step(received(), allocated)
    assert decision.effects == (Notify(kind="backorder_notice"),)
    filled = BackorderFilled(order_id="ord_1", warehouse="main", lines=(("A", 1),))
    decision, snapshot = step(snapshot, filled)
    [request] = decision.effects
    assert isinstance(request, RequestFulfillment)
    assert request.lines == (("A", 2), ("B", 1))


def test_ship_available_sends_what_is_there_and_the_rest_when_it_comes() -> None:
    holdings = (Holding("main", "A", 1, 1), Holding("main", "B", 1, 0))
    allocated = Allocated(status="partially_reserved", holdings=holdings, policy="ship_available")
    decision, snapshot = step(received(), allocated)
    notice, first = decision.effects
    assert notice == Notify(kind="backorder_notice")
    assert isinstance(first, RequestFulfillment)
    assert first.lines == (("A", 1), ("B", 1))
    _, snapshot = step(snapshot, queued(first))
    filled = BackorderFilled(order_id="ord_1", warehouse="main", lines=(("A", 1),))
    decision, snapshot = step(snapshot, filled)
    [second] = decision.effects
    assert isinstance(second, RequestFulfillment)
    assert (second.shipment_id, second.lines) == ("ord_1-2", (("A", 1),))


def test_packed_as_ordered_goes_on_to_rate_shopping_with_the_weighed_parcel() -> None:
    request, snapshot = reserved(received())
    items = (("B", 1), ("A", 1), ("A", 1))  # scanned in any order, a unit at a time
    packed = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=items, weight_g=950)
    decision, snapshot = step(snapshot, packed)
    [shop] = decision.effects
    assert isinstance(shop, ShopRates)
    assert shop.parcel.weight_g == 950
    assert shop.ship_to == ADDRESS
    assert shop.signature is False
    assert snapshot.state is OrderState.PACKED
    assert snapshot.shipments[0].packed_ok is True


def test_orders_above_the_threshold_ship_with_a_signature() -> None:
    rules = Rules(shipping=ShippingRules(signature_above=Decimal("100")))
    request, snapshot = reserved(received(an_order(total="500")), rules)
    packed = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=(("A", 2), ("B", 1)))
    decision, _ = step(snapshot, packed, rules)
    [shop] = decision.effects
    assert isinstance(shop, ShopRates)
    assert shop.signature is True


def test_a_wrongly_packed_shipment_is_held_with_the_difference_and_can_be_packed_again() -> None:
    request, snapshot = reserved(received())
    wrong = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=(("A", 1), ("C", 1)))
    decision, snapshot = step(snapshot, wrong)
    assert decision.effects == ()
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.reason == "shipment ord_1-1 packed wrong: A 1 missing, B 1 missing, C 1 extra"
    assert (snapshot.shipments[0].status, snapshot.shipments[0].packed_ok) == ("mismatch", False)
    right = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=(("A", 2), ("B", 1)))
    decision, snapshot = step(snapshot, right)
    assert [type(e) for e in decision.effects] == [ShopRates]
    assert snapshot.state is OrderState.PACKED
    # Packed right in the end, it still counts as packed wrong the first time.
    assert (snapshot.shipments[0].packed_ok, snapshot.shipments[0].mispacked) == (True, True)


def test_the_chosen_rate_is_recorded_before_the_label_is_bought_in_a_later_turn() -> None:
    snapshot = packed_order()
    rates = (rate("ground", "6.40", 4), rate("express", "11.20", 2), rate("overnight", "24", 1))
    decision, snapshot = step(snapshot, RatesQuoted(shipment_id="ord_1-1", rates=rates))
    assert decision.effects == (Tell(BuyLabel(order_id="ord_1", shipment_id="ord_1-1")),)
    assert snapshot is not None
    chosen = snapshot.shipments[0]
    assert chosen.rate is not None
    assert chosen.rate.service == "ground"
    assert chosen.estimated_delivery == date(2026, 12, 2)  # 4 business days from Thursday
    decision, snapshot = step(snapshot, BuyLabel(order_id="ord_1", shipment_id="ord_1-1"))
    [buy] = decision.effects
    assert isinstance(buy, Buy)
    assert (buy.rate.service, buy.idempotency_key) == ("ground", "ord_1-1:label")


def test_no_carrier_able_to_take_the_parcel_holds_the_order() -> None:
    snapshot = packed_order()
    quoted = RatesQuoted(shipment_id="ord_1-1", rates=(), failures=("easypost: bad address",))
    decision, snapshot = step(snapshot, quoted)
    assert decision.effects == ()
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert "easypost: bad address" in (snapshot.reason or "")


def bought(snapshot: Snapshot) -> LabelBought:
    return LabelBought(
        shipment_id="ord_1-1", carrier="sandbox", carrier_account="Sandbox Post",
        service="ground", tracking_number="SB123", tracking_url=None, label_format="pdf",
        label_path="/labels/ord_1-1.pdf", purchase_id="q1", amount=Decimal("6.40"),
        currency="USD",
    )  # fmt: skip


def labelled() -> Snapshot:
    snapshot = packed_order()
    quoted = RatesQuoted(shipment_id="ord_1-1", rates=(rate("ground", "6.40", 4),))
    _, snapshot = step(snapshot, quoted)
    assert snapshot is not None
    return snapshot


def test_a_bought_label_commits_the_stock_and_the_order_ships() -> None:
    snapshot = labelled()
    decision, snapshot = step(snapshot, bought(snapshot))
    assert decision.effects == (
        Commit(shipment_id="ord_1-1", warehouse="main", lines=(("A", 2), ("B", 1))),
    )
    assert snapshot.state is OrderState.LABEL_CREATED
    shipped = CommittedShipment(shipment_id="ord_1-1", lines=(("A", 2), ("B", 1)))
    _, snapshot = step(snapshot, shipped)
    assert snapshot.state is OrderState.SHIPPED
    assert snapshot.holdings == ()
    assert snapshot.shipments[0].tracking_number == "SB123"
    cancel = CancelRequested(order_id="ord_1", reason="changed mind", requested_by="shopify")
    decision, snapshot = step(snapshot, cancel)
    assert decision.effects == ()
    assert snapshot.state is OrderState.SHIPPED


def test_cancelling_after_the_label_voids_it_then_releases_the_stock() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, bought(snapshot))
    cancel = CancelRequested(order_id="ord_1", reason="changed mind", requested_by="shopify")
    decision, snapshot = step(snapshot, cancel)
    assert decision.effects == (
        Void(shipment_id="ord_1-1", carrier="sandbox", purchase_id="q1"),
        ReleaseAll("cancel"),
    )
    assert decision.pending == ReleasedAll(reason="changed mind", by="shopify")


def test_a_short_pick_writes_off_the_missing_units_and_reserves_them_again() -> None:
    request, snapshot = reserved(received())
    short = ShortPicked(order_id="ord_1", shipment_id=request.shipment_id, missing=(("A", 1),))
    decision, snapshot = step(snapshot, short)
    assert decision.effects == (
        WriteOff(shipment_id="ord_1-1", warehouse="main", lines=(("A", 1),)),
    )
    assert snapshot is not None
    assert snapshot.shipments[0].status == "short_picked"
    assert Holding("main", "A", 1, 0) in snapshot.holdings
    decision, snapshot = step(snapshot, WrittenOff(shipment_id="ord_1-1", lines=(("A", 1),)))
    # Not from the shelf that came up short.
    assert decision.effects == (
        Reserve((("A", 1),), "wait_all", op_id="reserve:ord_1-1", avoid=("main",)),
    )
    # Found in another warehouse: the order goes out from both, a shipment from each.
    elsewhere = Allocated(
        status="reserved", holdings=(Holding("north", "A", 1, 0),), policy="wait_all",
        op_id="reserve:ord_1-1",
    )  # fmt: skip
    decision, snapshot = step(snapshot, elsewhere)
    requests = [e for e in decision.effects if isinstance(e, RequestFulfillment)]
    assert [(r.shipment_id, r.warehouse, r.lines) for r in requests] == [
        ("ord_1-2", "main", (("A", 1), ("B", 1))),
        ("ord_1-3", "north", (("A", 1),)),
    ]


def test_a_short_pick_with_nothing_elsewhere_leaves_the_order_waiting() -> None:
    request, snapshot = reserved(received())
    short = ShortPicked(order_id="ord_1", shipment_id=request.shipment_id, missing=(("A", 2),))
    _, snapshot = step(snapshot, short)
    _, snapshot = step(snapshot, WrittenOff(shipment_id="ord_1-1", lines=(("A", 2),)))
    waiting = Allocated(
        status="backordered", holdings=(Holding("main", "A", 0, 2),), policy="wait_all",
        op_id="reserve:ord_1-1",
    )  # fmt: skip
    decision, snapshot = step(snapshot, waiting)
    assert decision.effects == ()
    assert snapshot.state is OrderState.PARTIALLY_RESERVED


def test_messages_about_unknown_or_finished_shipments_change_nothing() -> None:
    snapshot = labelled()
    for message in (
        Picked(order_id="ord_1", shipment_id="ord_1-9"),
        Packed(order_id="ord_1", shipment_id="ord_1-1", items=(("A", 2), ("B", 1))),
        ShortPicked(order_id="ord_1", shipment_id="ord_1-1", missing=(("A", 1),)),
        WarehouseRefused(order_id="ord_1", shipment_id="ord_1-7", reason="?"),
    ):
        decision, after = step(snapshot, message)
        assert decision == Decision()
        assert after == snapshot


def test_a_refusing_warehouse_holds_the_order() -> None:
    request, snapshot = reserved(received())
    refused = WarehouseRefused(order_id="ord_1", shipment_id=request.shipment_id, reason="400 bad")
    _, snapshot = step(snapshot, refused)
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert snapshot.reason == "the warehouse refused shipment ord_1-1: 400 bad"


def test_a_cancelled_order_takes_no_word_from_the_warehouse_any_more() -> None:
    request, snapshot = reserved(received())
    cancel = CancelRequested(order_id="ord_1", reason="changed mind", requested_by="shopify")
    decision, snapshot = step(snapshot, cancel)
    assert decision.effects == (ReleaseAll("cancel"),)
    _, snapshot = step(snapshot, decision.pending or ReleasedAll(reason="", by=""))
    assert snapshot.state is OrderState.CANCELLED
    assert snapshot.shipments[0].status == "cancelled"
    late = Packed(order_id="ord_1", shipment_id=request.shipment_id, items=(("A", 2), ("B", 1)))
    decision, after = step(snapshot, late)
    assert decision == Decision()
    assert after == snapshot


def two_shipments() -> Snapshot:
    """An order shipping from two warehouses, both requested."""
    holdings = (Holding("main", "B", 1, 0), Holding("north", "A", 2, 0))
    decision, snapshot = step(
        received(), Allocated(status="reserved", holdings=holdings, policy="wait_all")
    )
    for request in decision.effects:
        assert isinstance(request, RequestFulfillment)
        _, snapshot = step(snapshot, queued(request))
    assert [s.id for s in snapshot.shipments] == ["ord_1-1", "ord_1-2"]
    return snapshot


def test_a_held_shipment_keeps_the_order_held_while_another_ships() -> None:
    snapshot = two_shipments()
    wrong = Packed(order_id="ord_1", shipment_id="ord_1-1", items=(("B", 2),))
    _, snapshot = step(snapshot, wrong)
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    right = Packed(order_id="ord_1", shipment_id="ord_1-2", items=(("A", 2),))
    _, snapshot = step(snapshot, right)
    quoted = RatesQuoted(shipment_id="ord_1-2", rates=(rate("ground", "6.40", 4),))
    _, snapshot = step(snapshot, quoted)
    # The other shipment's problem does not strand this parcel: its label is bought.
    decision, snapshot = step(snapshot, BuyLabel(order_id="ord_1", shipment_id="ord_1-2"))
    assert [type(e) for e in decision.effects] == [Buy]
    bought_second = msgspec.structs.replace(bought(snapshot), shipment_id="ord_1-2")
    _, snapshot = step(snapshot, bought_second)
    _, snapshot = step(snapshot, CommittedShipment(shipment_id="ord_1-2", lines=(("A", 2),)))
    # ... and the first one's problem is still there for a person to see.
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    assert "packed wrong" in (snapshot.reason or "")
    assert [s.status for s in snapshot.shipments] == ["mismatch", "shipped"]
    # Packed right at last: the hold is over, and the order goes on.
    again = Packed(order_id="ord_1", shipment_id="ord_1-1", items=(("B", 1),))
    _, snapshot = step(snapshot, again)
    assert snapshot.state is OrderState.PACKED
    assert snapshot.holds == ()
    assert snapshot.reason is None


def test_a_held_shipment_buys_no_label_until_it_is_released() -> None:
    snapshot = labelled()
    refused = LabelRefused(shipment_id="ord_1-1", reason="address not accepted")
    _, snapshot = step(snapshot, refused)
    decision, _ = step(snapshot, BuyLabel(order_id="ord_1", shipment_id="ord_1-1"))
    assert decision.effects == ()


def test_a_late_refusal_does_not_reopen_a_cancelled_order() -> None:
    request, snapshot = reserved(received())
    cancel = CancelRequested(order_id="ord_1", reason="changed mind", requested_by="shopify")
    decision, snapshot = step(snapshot, cancel)
    _, snapshot = step(snapshot, decision.pending or ReleasedAll(reason="", by=""))
    refused = WarehouseRefused(order_id="ord_1", shipment_id=request.shipment_id, reason="409")
    decision, after = step(snapshot, refused)
    assert decision == Decision()
    assert after.state is OrderState.CANCELLED


def test_one_sku_reserved_twice_in_a_warehouse_is_held_as_one() -> None:
    holdings = (Holding("main", "A", 2, 0), Holding("main", "A", 0, 3))
    allocated = Allocated(status="partially_reserved", holdings=holdings, policy="ship_available")
    _, snapshot = step(received(), allocated)
    assert Holding("main", "A", 2, 3) in snapshot.holdings
    filled = BackorderFilled(order_id="ord_1", warehouse="main", lines=(("A", 3),))
    _, snapshot = step(snapshot, filled)
    assert Holding("main", "A", 5, 0) in snapshot.holdings


def test_a_shipment_held_without_a_label_goes_on_when_a_person_retries() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, LabelRefused(shipment_id="ord_1-1", reason="bad address"))
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    decision, snapshot = step(snapshot, RetryRequested(order_id="ord_1", shipment_id="ord_1-1"))
    assert [type(e) for e in decision.effects] == [ShopRates]
    assert snapshot.state is OrderState.PACKED
    assert snapshot.holds == ()
    assert snapshot.reason is None
    # Nothing to retry once the label is bought.
    _, snapshot = step(snapshot, bought(snapshot))
    decision, _ = step(snapshot, RetryRequested(order_id="ord_1", shipment_id="ord_1-1"))
    assert decision == Decision()


def test_a_dead_letter_stops_shipments_until_it_is_dealt_with() -> None:
    held = AttentionNeeded(at=NOW, reason="dead", hold=DeadLetterHold(seq=4))
    snapshot = evolve(received(), held, "ord_1")
    holdings = (Holding("main", "A", 2, 0), Holding("main", "B", 1, 0))
    allocated = Allocated(status="reserved", holdings=holdings, policy="wait_all")
    decision, snapshot = step(snapshot, allocated)
    assert not any(isinstance(e, RequestFulfillment) for e in decision.effects)
    assert snapshot.state is OrderState.NEEDS_ATTENTION
    decision, snapshot = step(snapshot, HoldRelease(order_id="ord_1", hold=DeadLetterHold(seq=4)))
    assert [type(e) for e in decision.effects] == [RequestFulfillment]
    assert snapshot.state is OrderState.RESERVED


def test_no_retry_while_a_dead_letter_waits() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, LabelRefused(shipment_id="ord_1-1", reason="bad address"))
    held = AttentionNeeded(at=NOW, reason="dead", hold=DeadLetterHold(seq=7))
    snapshot = evolve(snapshot, held, "ord_1")
    decision, _ = step(snapshot, RetryRequested(order_id="ord_1", shipment_id="ord_1-1"))
    assert decision == Decision()


def test_a_parcel_that_leaves_is_told_to_its_platform_when_write_back_is_on() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, bought(snapshot))
    shipped = CommittedShipment(shipment_id="ord_1-1", lines=(("A", 2), ("B", 1)))
    writing = msgspec.structs.replace(RULES, write_back=("shopify",))
    decision = decide(snapshot, shipped, writing, NOW)
    [tell] = [e for e in decision.effects if isinstance(e, TellPlatform)]
    assert tell.parcel == ParcelShipped(
        platform="shopify", order_id="ord_1", external_order_id="1001",
        shipment_id="ord_1-1", parcel=1, parcels=1,
        lines=(ShippedLine("B", None, 1), ShippedLine("A", None, 2)),
        carrier="Sandbox Post", tracking_number="SB123", tracking_url=None, all_shipped=True,
    )  # fmt: skip
    # Write-back off (or on for another platform): the platform is told nothing.
    for rules in (RULES, msgspec.structs.replace(RULES, write_back=("woocommerce",))):
        quiet = decide(snapshot, shipped, rules, NOW)
        assert not any(isinstance(e, TellPlatform) for e in quiet.effects)


def test_a_delivered_parcel_is_told_to_a_platform_that_records_deliveries() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, bought(snapshot))
    shipped = CommittedShipment(shipment_id="ord_1-1", lines=(("A", 2), ("B", 1)))
    _, snapshot = step(snapshot, shipped)
    arrived = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)
    news = TrackingUpdated(
        order_id="ord_1", shipment_id="ord_1-1", status="delivered",
        carrier_status="Delivered", at=arrived,
    )  # fmt: skip
    recording = msgspec.structs.replace(
        RULES, write_back=("shopify",), delivery_events=("shopify", "woocommerce")
    )
    decision = decide(snapshot, news, recording, NOW)
    [tell] = [e for e in decision.effects if isinstance(e, TellPlatform)]
    assert tell.parcel == ParcelDelivered(
        platform="shopify", order_id="ord_1", external_order_id="1001",
        shipment_id="ord_1-1", tracking_number="SB123", delivered_at=arrived,
    )  # fmt: skip
    # No write-back, or deliveries not reported: nothing told.
    for rules in (
        msgspec.structs.replace(RULES, delivery_events=("shopify",)),
        msgspec.structs.replace(RULES, write_back=("shopify",)),
    ):
        quiet = decide(snapshot, news, rules, NOW)
        assert not any(isinstance(e, TellPlatform) for e in quiet.effects)


def test_a_corrected_tracking_number_is_watched_confirmed_again_and_told() -> None:
    snapshot = labelled()
    _, snapshot = step(snapshot, bought(snapshot))
    shipped = CommittedShipment(shipment_id="ord_1-1", lines=(("A", 2), ("B", 1)))
    _, snapshot = step(snapshot, shipped)
    fix = TrackingCorrected(order_id="ord_1", shipment_id="ord_1-1", tracking_number="SB999")
    writing = msgspec.structs.replace(RULES, write_back=("shopify",))
    decision = decide(snapshot, fix, writing, NOW)
    assert decision.effects == (
        Notify(kind="shipping_confirmation", shipment_id="ord_1-1", episode=1),
        TellPlatform(
            TrackingChanged(
                platform="shopify", order_id="ord_1", external_order_id="1001",
                shipment_id="ord_1-1", was="SB123", tracking_number="SB999",
                carrier="Sandbox Post",
            )
        ),
    )  # fmt: skip
    _, after = step(snapshot, fix)
    assert after is not None
    [parcel] = after.shipments
    assert (parcel.tracking_number, parcel.tracking_changes) == ("SB999", 1)
    # The same number again, or a parcel not on its way: nothing.
    assert decide(after, fix, writing, NOW) == Decision()
    early = TrackingCorrected(order_id="ord_1", shipment_id="ord_1-1", tracking_number="X1")
    assert decide(labelled(), early, writing, NOW) == Decision()
    # A second correction is a confirmation of its own.
    again = msgspec.structs.replace(fix, tracking_number="SB1000")
    assert decide(after, again, RULES, NOW).effects == (
        Notify(kind="shipping_confirmation", shipment_id="ord_1-1", episode=2),
    )


def test_each_parcel_of_a_split_order_is_told_with_its_number() -> None:
    writing = msgspec.structs.replace(RULES, write_back=("shopify",))
    snapshot = two_shipments()
    told = []
    for shipment_id, items in (("ord_1-1", (("B", 1),)), ("ord_1-2", (("A", 2),))):
        right = Packed(order_id="ord_1", shipment_id=shipment_id, items=items)
        _, snapshot = step(snapshot, right)
        quoted = RatesQuoted(shipment_id=shipment_id, rates=(rate("ground", "6.40", 4),))
        _, snapshot = step(snapshot, quoted)
        _, snapshot = step(snapshot, BuyLabel(order_id="ord_1", shipment_id=shipment_id))
        sold = msgspec.structs.replace(bought(snapshot), shipment_id=shipment_id)
        _, snapshot = step(snapshot, sold)
        shipped = CommittedShipment(shipment_id=shipment_id, lines=items)
        decision = decide(snapshot, shipped, writing, NOW)
        told += [
            e.parcel
            for e in decision.effects
            if isinstance(e, TellPlatform) and isinstance(e.parcel, ParcelShipped)
        ]
        _, snapshot = step(snapshot, shipped)
    assert [(p.parcel, p.parcels, p.all_shipped) for p in told] == [(1, 2, False), (2, 2, True)]
    assert [p.lines for p in told] == [(ShippedLine("B", None, 1),), (ShippedLine("A", None, 2),)]


def test_the_shipping_confirmation_of_a_split_order_names_its_parcel() -> None:
    messages = CustomerMessages(settings=MessageSettings(), feedback_secret=lambda: "k")
    snapshot = two_shipments()
    assert snapshot.order is not None
    order = msgspec.structs.replace(snapshot.order, customer=Customer(email="c@example.com"))
    snapshot = msgspec.structs.replace(snapshot, order=order)
    told = []
    for shipment_id in ("ord_1-1", "ord_1-2"):
        effect = Notify(kind="shipping_confirmation", shipment_id=shipment_id)
        _, [row] = messages.queue("ord_1", snapshot, effect, NOW)
        told.append((row.message.context["parcel_of"], row.message.context["parcel_note"]))
    assert told == [
        (" (parcel 1 of 2)", " This is parcel 1 of 2; the rest comes separately."),
        (" (parcel 2 of 2)", " This is parcel 2 of 2."),
    ]
    # One parcel: nothing said of parcels.
    single = labelled()
    single = msgspec.structs.replace(single, order=order)
    _, [row] = messages.queue("ord_1", single, Notify(kind="shipping_confirmation",
                              shipment_id="ord_1-1"), NOW)  # fmt: skip
    assert (row.message.context["parcel_of"], row.message.context["parcel_note"]) == ("", "")
