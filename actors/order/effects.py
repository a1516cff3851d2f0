"""The shipping side of an order's effects: pick lists, rates, labels and voids.

Each method runs one effect ``decide`` asked for and returns its result for the next
``decide``. Choices stay in ``decide``; here is only what needs the outside world: the
catalog, the carriers, the label store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar, assert_never

from actors.batching import Coalescer
from actors.order.behaviour import (
    Buy,
    FulfillmentQueued,
    LabelBought,
    LabelRefused,
    NothingTracked,
    RatesQuoted,
    RequestFulfillment,
    ShopRates,
    Track,
    Void,
    Voided,
)
from actors.order.messages import TrackingUpdated
from actors.order.types import Address, NormalizedOrder
from actors.ports.catalog import CatalogItem, ProductCatalog
from actors.ports.labels import LabelStore
from actors.ports.observe import UNOBSERVED, Observer, timed
from actors.ports.outboxes import QueuedRequest
from actors.shipping.carriers import Carrier, CarrierError, Rate, RateRequest
from actors.shipping.pick_list import PickLine, estimate_parcel, sort_pick_list
from actors.shipping.warehouse import FulfillmentRequest

T = TypeVar("T")


class Shipping:
    def __init__(
        self,
        *,
        catalog: ProductCatalog,
        carriers: Mapping[str, Carrier],
        ship_from: Mapping[str, Address],
        labels: LabelStore,
        wms_adapter: str,
        wms_delay_s: float = 0.0,
        tare_g: int = 100,
        default_box_cm: tuple[float, float, float] = (30.0, 20.0, 10.0),
        observer: Observer = UNOBSERVED,
    ) -> None:
        self._observer = observer
        self._catalog = catalog
        self._carriers = dict(carriers)
        self._ship_from = dict(ship_from)
        self._labels = labels
        self._wms_adapter = wms_adapter
        self._wms_delay_s = wms_delay_s
        self._tare_g = tare_g
        self._default_box = default_box_cm
        # Pick lists of turns running together look their products up in one query.
        self._products: Coalescer[tuple[str, ...], dict[str, CatalogItem]] = Coalescer(
            self._load_products
        )

    async def request(
        self, order_id: str, order: NormalizedOrder, effect: RequestFulfillment, now: datetime
    ) -> tuple[FulfillmentQueued, QueuedRequest]:
        """The shipment's pick list and request; the request is stored with the turn."""
        names = {line.sku: line.name for line in order.lines}
        numbers: dict[str, int] = {}
        for number, line in enumerate(order.lines, start=1):
            numbers.setdefault(line.sku, number)
        products = await self._products.submit(tuple(sku for sku, _ in effect.lines))
        lines = []
        for sku, units in effect.lines:
            product = products.get(sku)
            grams = next((line.grams for line in order.lines if line.sku == sku), 0)
            lines.append(
                PickLine(
                    line_no=numbers.get(sku, 0),
                    sku=sku,
                    name=product.name if product else names.get(sku, ""),
                    quantity=units,
                    bin=product.bin if product else "",
                    # The catalog's weight, else the platform's grams for the line.
                    weight_g=product.weight_g if product else grams,
                    length_cm=product.length_cm if product else None,
                    width_cm=product.width_cm if product else None,
                    height_cm=product.height_cm if product else None,
                    flags=product.flags if product else (),
                )
            )
        pick_list = sort_pick_list(lines)
        parcel = estimate_parcel(pick_list, default_box=self._default_box, tare_g=self._tare_g)
        assert order.shipping_address is not None  # checked before a shipment is requested
        request = FulfillmentRequest(
            shipment_id=effect.shipment_id,
            order_id=order_id,
            order_name=order.name,
            warehouse=effect.warehouse,
            requested_at=now,
            pick_list=pick_list,
            service_level=effect.service_level,
            promised_by=effect.promised_by,
            parcel=parcel,
            ship_to=order.shipping_address,
            note=order.note,
            flags=tuple(sorted({flag for line in pick_list for flag in line.flags})),
        )
        due = now.timestamp() + self._wms_delay_s
        queued = QueuedRequest(request, self._wms_adapter, datetime.fromtimestamp(due, now.tzinfo))
        # The products' own follow-ups: reviewed once the slowest to judge has had its time,
        # a repeat reminder when the first runs out.
        reviews = [r.review_after_days for r in products.values() if r.review_after_days]
        repeats = [r.repeat_after_days for r in products.values() if r.repeat_after_days]
        queued_result = FulfillmentQueued(
            request=effect,
            pick_list=pick_list,
            parcel=parcel,
            review_after_days=max(reviews) if reviews else None,
            repeat_after_days=min(repeats) if repeats else None,
        )
        return queued_result, queued

    async def quote(self, effect: ShopRates, order: NormalizedOrder) -> RatesQuoted:
        """Ask every enabled carrier; a carrier that fails is noted, unless all of them do."""
        request = RateRequest(
            shipment_id=effect.shipment_id,
            ship_from=self._origin(effect.warehouse),
            ship_to=effect.ship_to,
            parcel=effect.parcel,
            signature=effect.signature,
            declared_value=order.total,
            currency=order.currency,
        )
        names = sorted(self._carriers)
        answers = await asyncio.gather(
            *(self._timed(name, self._carriers[name].rates(request)) for name in names),
            return_exceptions=True,
        )
        rates: list[Rate] = []
        failures: list[str] = []
        temporary: list[CarrierError] = []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, list):
                rates.extend(answer)
            elif isinstance(answer, CarrierError):
                failures.append(f"{name}: {answer}")
                if answer.temporary:
                    temporary.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                assert_never(answer)
        if not rates and temporary:
            raise temporary[0]  # nobody answered yet: the turn is tried again later
        return RatesQuoted(
            shipment_id=effect.shipment_id, rates=tuple(rates), failures=tuple(failures)
        )

    async def buy(self, effect: Buy) -> LabelBought | LabelRefused:
        """Buy the chosen rate's label (once per quote) and keep the file.

        The label is on disk, under its shipment's name, before the purchase is returned
        to be recorded.
        """
        carrier = self._carriers.get(effect.rate.carrier)
        if carrier is None:
            return LabelRefused(
                shipment_id=effect.shipment_id,
                reason=f"carrier {effect.rate.carrier} is no longer enabled",
            )
        try:
            purchase = await self._timed(
                effect.rate.carrier,
                carrier.buy(
                    effect.rate,
                    idempotency_key=effect.idempotency_key,
                    label_format=effect.label_format,
                ),
            )
        except CarrierError as exc:
            if exc.temporary:
                raise
            return LabelRefused(shipment_id=effect.shipment_id, reason=str(exc))
        path = await self._labels.keep(
            f"{effect.shipment_id}.{purchase.label_format}", purchase.label
        )
        return LabelBought(
            shipment_id=effect.shipment_id,
            carrier=purchase.carrier,
            carrier_account=purchase.carrier_account,
            service=purchase.service,
            tracking_number=purchase.tracking_number,
            tracking_url=purchase.tracking_url,
            label_format=purchase.label_format,
            label_path=path,
            purchase_id=purchase.purchase_id,
            amount=purchase.amount,
            currency=purchase.currency,
        )

    async def void(self, effect: Void) -> Voided:
        carrier = self._carriers.get(effect.carrier)
        if carrier is None:
            raise CarrierError(
                f"cannot void the label of {effect.shipment_id}: carrier {effect.carrier} "
                "is not enabled",
                temporary=True,
            )
        await self._timed(effect.carrier, carrier.void(effect.purchase_id))
        return Voided(shipment_id=effect.shipment_id)

    def _timed(self, carrier: str, call: Awaitable[T]) -> Awaitable[T]:
        return timed(self._observer, "carrier", carrier, call)

    async def _load_products(
        self, asked: Sequence[tuple[str, ...]]
    ) -> list[dict[str, CatalogItem]]:
        by_sku = await self._catalog.products({sku for skus in asked for sku in skus})
        return [{sku: by_sku[sku] for sku in skus if sku in by_sku} for skus in asked]

    async def track(self, order_id: str, effect: Track) -> TrackingUpdated | NothingTracked:
        """The carrier's latest scan of the parcel, as the news its webhook would bring."""
        nothing = NothingTracked(shipment_id=effect.shipment_id)
        carrier = self._carriers.get(effect.carrier)
        if carrier is None:
            return nothing
        try:
            tracking = await self._timed(
                effect.carrier,
                carrier.track(effect.tracking_number, carrier_account=effect.carrier_account),
            )
        except CarrierError:
            return nothing  # asked again at the next poll
        if not tracking.events:
            return nothing  # no scan to date it by: nothing to go on yet
        latest = max(tracking.events, key=lambda e: e.at)
        return TrackingUpdated(
            order_id=order_id,
            shipment_id=effect.shipment_id,
            status=tracking.status,
            carrier_status=tracking.carrier_status,
            at=latest.at,
            detail=latest.detail,
            estimated_delivery=tracking.estimated_delivery,
            location=latest.location,
        )

    def _origin(self, warehouse: str) -> Address:
        return self._ship_from[warehouse]

    async def close(self) -> None:
        for carrier in self._carriers.values():
            await carrier.close()
        await self._labels.close()
