"""Customer messages an order decided to send, made into outbox rows.

Which channels a message goes by is the store's setting narrowed by what the customer
gave and allows (a repeat-purchase reminder is marketing: by email only with the
customer's consent to marketing email, and it carries a link to unsubscribe); what it
says comes from the order and its shipment. Nothing is sent here: the rows are saved with
the turn and the notifier sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from msgspec import Struct

from actors.notify.feedback import issue_token
from actors.notify.model import MARKETING, Kind, Outgoing
from actors.notify.rules import Channels, channels_for, to_e164
from actors.order.behaviour import Notify, Queued, Snapshot
from actors.order.shipment import Shipment, find
from actors.ports.outboxes import QueuedNotification

# An unsubscribe link works this long (a year: reminders come months after an order).
_UNSUBSCRIBE_DAYS = 366


class MessageSettings(Struct, frozen=True, kw_only=True):
    channels: Channels = "email"
    email_enabled: bool = True
    sms_enabled: bool = False
    sms_require_consent: bool = True
    store_name: str = "Our store"
    shop_url: str = "https://shop.example.com"
    public_url: str = "http://127.0.0.1:8080"
    feedback_window_days: int = 60


class CustomerMessages:
    def __init__(self, *, settings: MessageSettings, feedback_secret: Callable[[], str]) -> None:
        self._settings = settings
        self._feedback_secret = feedback_secret

    def queue(
        self, order_id: str, snapshot: Snapshot | None, effect: Notify, now: datetime
    ) -> tuple[Queued, list[QueuedNotification]]:
        """The outbox rows of ``effect``, one per channel, and what the order learns of it."""
        nothing = Queued(
            kind=effect.kind, shipment_id=effect.shipment_id, episode=effect.episode, channels=()
        )
        order = snapshot.order if snapshot is not None else None
        if snapshot is None or order is None:
            return nothing, []
        settings = self._settings
        customer = order.customer
        address = order.shipping_address
        country = address.country if address else None
        phone = to_e164(customer.phone or (address.phone if address else None), country)
        marketing = effect.kind in MARKETING
        may_email = settings.email_enabled and (customer.accepts_marketing or not marketing)
        channels = channels_for(
            settings.channels,
            email=customer.email if may_email else None,
            phone=phone,
            sms_consent=customer.accepts_sms or not settings.sms_require_consent,
            sms_enabled=settings.sms_enabled,
        )
        shipment = find(snapshot.shipments, effect.shipment_id) if effect.shipment_id else None
        context = self._context(snapshot, shipment, effect.kind)
        if marketing:
            context["unsubscribe_url"] = self._unsubscribe_url(order_id, now)
        items = self._items(snapshot, shipment)
        links = self._links(order_id, effect.kind, now)
        rows = []
        for channel in channels:
            to = customer.email if channel == "email" else phone
            assert to is not None  # channels_for only names channels the customer can take
            key = f"{order_id}:{effect.kind}:{effect.shipment_id or '-'}:{effect.episode}:{channel}"
            message = Outgoing(
                idempotency_key=key,
                kind=_kind(effect.kind),
                channel="email" if channel == "email" else "sms",
                to=to,
                context=context,
                items=items,
                links=links,
                locale=customer.locale,
            )
            rows.append(
                QueuedNotification(
                    order_id=order_id,
                    shipment_id=effect.shipment_id,
                    episode=effect.episode,
                    message=message,
                    due_at=now,
                )
            )
        queued = Queued(
            kind=effect.kind,
            shipment_id=effect.shipment_id,
            episode=effect.episode,
            channels=tuple(channels),
        )
        return queued, rows

    def _context(self, snapshot: Snapshot, shipment: Shipment | None, kind: str) -> dict[str, str]:
        order = snapshot.order
        assert order is not None
        customer = order.customer
        name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
        if not name and order.shipping_address is not None:
            name = order.shipping_address.name
        rate = shipment.rate if shipment else None
        estimate = shipment.carrier_estimate or shipment.estimated_delivery if shipment else None
        context = {
            "store_name": self._settings.store_name,
            "shop_url": self._settings.shop_url,
            "customer_name": name or "there",
            "order_name": order.name or order.external_id,
            "carrier": rate.carrier_account if rate else "",
            "service": rate.service if rate else "",
            "tracking_number": (shipment.tracking_number or "") if shipment else "",
            "tracking_url": (shipment.tracking_url or "") if shipment else "",
            "estimated_delivery": estimate.isoformat() if estimate else "",
            "new_estimate": "",
            "new_estimate_line": "",
            "expected_line": "",
            "reason": "",
            "delivered_at": "",
            "parcel_of": "",
            "parcel_note": "",
            # Not shown: the customer's country, for quiet hours of text messages.
            "country": order.shipping_address.country if order.shipping_address else "",
        }
        parcels = len(snapshot.shipments)
        if shipment is not None and parcels > 1:
            context["parcel_of"] = f" (parcel {shipment.seq} of {parcels})"
            rest = "; the rest comes separately" if shipment.seq < parcels else ""
            context["parcel_note"] = f" This is parcel {shipment.seq} of {parcels}{rest}."
        if shipment is not None:
            # A delay alert says why it is late; an exception, what the carrier said.
            why = shipment.delay_reason if kind == "delay_alert" else shipment.tracking_detail
            context["reason"] = why or ""
        arrivals = [s.delivered_at for s in snapshot.shipments if s.delivered_at is not None]
        if arrivals:
            context["delivered_at"] = max(arrivals).date().isoformat()
        late = shipment.carrier_estimate if shipment else None
        if late is not None:
            context["new_estimate"] = late.isoformat()
            context["new_estimate_line"] = f"The carrier now expects it on {late.isoformat()}."
        return context

    @staticmethod
    def _items(snapshot: Snapshot, shipment: Shipment | None) -> tuple[tuple[str, str, int], ...]:
        order = snapshot.order
        assert order is not None
        names = {line.sku: line.name for line in order.lines}
        if shipment is not None:
            return tuple((sku, names.get(sku, sku), units) for sku, units in shipment.lines)
        return tuple(
            (line.sku, line.name or line.sku, line.quantity) for line in order.shippable_lines()
        )

    def _unsubscribe_url(self, order_id: str, now: datetime) -> str:
        expires = now + timedelta(days=_UNSUBSCRIBE_DAYS)
        token = issue_token(
            order_id, self._feedback_secret(), expires_at=expires, purpose="unsubscribe"
        )
        return f"{self._settings.public_url.rstrip('/')}/unsubscribe/{token}"

    def _links(self, order_id: str, kind: str, now: datetime) -> tuple[tuple[str, str], ...]:
        if kind != "review_request":
            return ()
        expires = now + timedelta(days=self._settings.feedback_window_days)
        token = issue_token(order_id, self._feedback_secret(), expires_at=expires)
        base = self._settings.public_url.rstrip("/")
        return tuple((str(n), f"{base}/feedback/{token}?score={n}") for n in range(1, 6))


def _kind(kind: str) -> Kind:
    known: dict[str, Kind] = {
        "shipping_confirmation": "shipping_confirmation",
        "backorder_notice": "backorder_notice",
        "delay_alert": "delay_alert",
        "delivered": "delivered",
        "delivery_exception": "delivery_exception",
        "review_request": "review_request",
        "repeat_purchase": "repeat_purchase",
    }
    return known[kind]
