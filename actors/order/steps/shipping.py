"""Shipping: a packed parcel's carrier, its label, and its leaving the warehouse.

Holds the decisions on ``RatesQuoted`` (choosing the carrier), ``BuyLabel``,
``LabelBought``, ``LabelRefused``, ``CommittedShipment`` (the parcel has left) and
``RetryRequested`` (shopping rates again for a held parcel), and the evolve cases for
``CarrierChosen``, ``LabelCreated`` and ``Shipped``.
"""

from __future__ import annotations

from datetime import datetime

from msgspec import structs

from actors.order import shipment as shipments
from actors.order.events import (
    AttentionNeeded,
    CarrierChosen,
    HoldReleased,
    LabelCreated,
    Shipped,
)
from actors.order.holds import ShipmentHold
from actors.order.messages import BuyLabel, RetryRequested
from actors.order.shipment import LEFT
from actors.order.states import OrderState
from actors.order.steps.common import dead_letters, find_shipment, less, moved
from actors.order.steps.model import (
    Buy,
    Commit,
    CommittedShipment,
    Decision,
    LabelBought,
    LabelRefused,
    RatesQuoted,
    Rules,
    ShopRates,
    Snapshot,
    Tell,
    TellPlatform,
)
from actors.order.steps.tracking import watch
from actors.shipping.calendar import estimated_delivery
from actors.shipping.selection import NoRate, Quote, choose, needs_signature
from actors.storefront import ParcelShipped, shipped_lines


def rates_quoted(
    snapshot: Snapshot | None, message: RatesQuoted, rules: Rules, now: datetime
) -> Decision:
    """Choose the carrier from the quotes and buy its label, or hold the shipment."""
    shipment_id, failures = message.shipment_id, message.failures
    found = find_shipment(snapshot, shipment_id)
    if snapshot is None or snapshot.order is None or found is None:
        return Decision()
    address = snapshot.order.shipping_address
    assert address is not None  # checked before the shipment was requested
    calendar = rules.calendar(found.warehouse)
    quotes = [
        Quote(
            rate=rate,
            delivery=estimated_delivery(
                calendar, now, transit_days=rate.delivery_days, carrier_date=rate.delivery_date
            ),
            transit_days=rate.delivery_days,
        )
        for rate in message.rates
    ]
    choice = choose(quotes, rules.shipping, promised_by=found.promised_by, country=address.country)
    if isinstance(choice, NoRate):
        why = f"no carrier for shipment {shipment_id}: {choice.reason}"
        if failures:
            why += f" ({'; '.join(failures)})"
        return Decision((AttentionNeeded(at=now, reason=why, hold=ShipmentHold(shipment_id)),))
    reason = choice.reason
    if failures:
        reason += f"; not quoted: {'; '.join(failures)}"
    chosen = CarrierChosen(
        at=now,
        shipment_id=shipment_id,
        rate=choice.rate,
        estimated_delivery=choice.delivery,
        alternatives=choice.alternatives,
        reason=reason,
    )
    buy = Tell(BuyLabel(order_id=snapshot.order_id, shipment_id=shipment_id))
    return Decision((chosen,), (buy,))


def buy_label(snapshot: Snapshot | None, message: BuyLabel, rules: Rules) -> Decision:
    """Buy the chosen rate's label, unless the shipment is held or gone meanwhile."""
    shipment_id = message.shipment_id
    found = find_shipment(snapshot, shipment_id)
    if snapshot is None or found is None or found.status != "packed" or found.rate is None:
        return Decision()  # cancelled or held meanwhile
    if ShipmentHold(shipment_id) in snapshot.holds or dead_letters(snapshot):
        return Decision()  # held for a person: bought once it is released
    buy = Buy(shipment_id=shipment_id, rate=found.rate, label_format=rules.label_format)
    return Decision((), (buy,))


def label_bought(snapshot: Snapshot | None, message: LabelBought, now: datetime) -> Decision:
    """Record the label and commit the shipment's units out of stock."""
    found = find_shipment(snapshot, message.shipment_id)
    assert found is not None  # bought for a shipment of this order, in this turn
    created = LabelCreated(
        at=now,
        shipment_id=message.shipment_id,
        carrier=message.carrier,
        carrier_account=message.carrier_account,
        service=message.service,
        tracking_number=message.tracking_number,
        tracking_url=message.tracking_url,
        label_format=message.label_format,
        label_path=message.label_path,
        purchase_id=message.purchase_id,
        amount=message.amount,
        currency=message.currency,
    )
    commit = Commit(shipment_id=found.id, warehouse=found.warehouse, lines=found.lines)
    return Decision((created,), (commit,))


def label_refused(message: LabelRefused, now: datetime) -> Decision:
    """No label: the shipment is held for a person."""
    shipment_id = message.shipment_id
    why = f"no label for shipment {shipment_id}: {message.reason}"
    return Decision((AttentionNeeded(at=now, reason=why, hold=ShipmentHold(shipment_id)),))


def committed(
    snapshot: Snapshot | None, message: CommittedShipment, rules: Rules, now: datetime
) -> Decision:
    """The parcel has left: it is shipped, and watched from now on; the order's platform
    is told, when its write-back is on."""
    shipment_id = message.shipment_id
    left = Shipped(at=now, shipment_id=shipment_id, lines=message.lines)
    tell = _tell_platform(snapshot, shipment_id, message.lines, rules)
    return Decision((left,), (*watch(snapshot, shipment_id, rules, now), *tell))


def _tell_platform(
    snapshot: Snapshot | None, shipment_id: str, lines: tuple[tuple[str, int], ...], rules: Rules
) -> tuple[TellPlatform, ...]:
    order = snapshot.order if snapshot is not None else None
    found = find_shipment(snapshot, shipment_id)
    if snapshot is None or order is None or found is None or not order.external_id:
        return ()
    if order.platform not in rules.write_back:
        return ()
    others_left = all(s.status in LEFT for s in snapshot.shipments if s.id != shipment_id)
    waiting = any(h.backordered for h in snapshot.holdings)
    parcel = ParcelShipped(
        platform=order.platform,
        order_id=snapshot.order_id,
        external_order_id=order.external_id,
        shipment_id=shipment_id,
        parcel=found.seq,
        parcels=len(snapshot.shipments),
        lines=shipped_lines(order, lines),
        carrier=found.rate.carrier_account if found.rate is not None else None,
        tracking_number=found.tracking_number,
        tracking_url=found.tracking_url,
        all_shipped=others_left and not waiting,
    )
    return (TellPlatform(parcel),)


def retry(
    snapshot: Snapshot | None, message: RetryRequested, rules: Rules, now: datetime
) -> Decision:
    """Release a packed shipment held without a label, and shop its rates again."""
    found = find_shipment(snapshot, message.shipment_id)
    if snapshot is None or found is None or snapshot.order is None:
        return Decision()
    hold = ShipmentHold(found.id)
    if hold not in snapshot.holds or dead_letters(snapshot):
        # Only a shipment held for want of a rate or a label; a dead-lettered message
        # (perhaps its purchase) is replayed instead, so no second label is bought.
        return Decision()
    if found.status != "packed" or found.purchase_id is not None or found.parcel is None:
        return Decision()  # only a packed parcel still waiting for its label
    address = snapshot.order.shipping_address
    if address is None:
        return Decision()
    shop = ShopRates(
        shipment_id=found.id,
        warehouse=found.warehouse,
        parcel=found.parcel,
        ship_to=address,
        signature=needs_signature(rules.shipping, snapshot.order.total),
    )
    return Decision((HoldReleased(at=now, hold=hold, by=message.requested_by),), (shop,))


def carrier_chosen(current: Snapshot, event: CarrierChosen) -> Snapshot:
    return moved(
        current, event.shipment_id, current.state, rate=event.rate,
        estimated_delivery=event.estimated_delivery,
    )  # fmt: skip


def label_created(current: Snapshot, event: LabelCreated) -> Snapshot:
    return moved(
        current, event.shipment_id, OrderState.LABEL_CREATED, status="label_created",
        tracking_number=event.tracking_number, tracking_url=event.tracking_url,
        label_format=event.label_format, label_path=event.label_path,
        purchase_id=event.purchase_id,
    )  # fmt: skip


def shipped(current: Snapshot, event: Shipped) -> Snapshot:
    """The shipment's units leave the order's holdings."""
    shipment_id = event.shipment_id
    found = shipments.find(current.shipments, shipment_id)
    warehouse = found.warehouse if found else ""
    after = moved(current, shipment_id, OrderState.SHIPPED, status="shipped", shipped_at=event.at)
    return structs.replace(after, holdings=less(current.holdings, warehouse, event.lines))
