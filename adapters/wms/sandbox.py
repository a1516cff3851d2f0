"""The sandbox warehouse: picks and packs every request by itself after a delay.

It packs exactly what was asked, except for an optional share of shipments (the mis-pick
rate) where one unit goes missing or a unit too many goes in, so the pack check and the
shipping accuracy figure have something to catch. Which shipments are mis-picked follows
from their ids, so a retried delivery packs the same way.
"""

from __future__ import annotations

import random

from actors.order.messages import Message, Packed, Picked
from actors.shipping.warehouse import FulfillmentRequest


class SandboxWarehouse:
    name = "sandbox"

    def __init__(self, *, delay_s: float = 1.0, mispick_rate: float = 0.0) -> None:
        self.delay_s = delay_s
        self._mispick_rate = mispick_rate

    async def send(self, request: FulfillmentRequest) -> list[Message]:
        items = [(line.sku, line.quantity) for line in request.pick_list]
        # A simulation, not a secret: seeded by the shipment, so a request sent again is
        # picked the same way. Without mispicks there is nothing to draw.
        rate = self._mispick_rate
        mispicked = rate > 0 and random.Random(request.shipment_id).random() < rate  # noqa: S311
        if items and mispicked:
            sku, units = items[0]
            items[0] = (sku, units - 1) if units > 1 else (sku, units + 1)
        parcel = request.parcel
        return [
            Picked(order_id=request.order_id, shipment_id=request.shipment_id),
            Packed(
                order_id=request.order_id,
                shipment_id=request.shipment_id,
                items=tuple(items),
                weight_g=parcel.weight_g,
                dimensions_cm=(parcel.length_cm, parcel.width_cm, parcel.height_cm),
                by="sandbox",
            ),
        ]

    async def cancel(self, request: FulfillmentRequest) -> None:
        return None  # it packs at once: there is nothing left to stop

    async def close(self) -> None:
        return None
