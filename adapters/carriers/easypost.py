"""EasyPost (API v2) as a :class:`~actors.shipping.carriers.Carrier`.

Calls and fields, as EasyPost documents them (docs.easypost.com: Shipment, Rate,
PostageLabel, Tracker, Errors; request bodies as in EasyPost's official examples):

- authentication: HTTP basic auth, the API key as user name and no password;
- ``POST /shipments`` with ``{"shipment": {to_address, from_address, parcel, options,
  reference}}``; addresses as ``name, company, street1, street2, city, state, zip, country,
  phone``; the parcel in inches and ounces (``length, width, height, weight``); the answer's
  ``rates[]`` with ``id, carrier, service, rate`` (a decimal string), ``currency``,
  ``delivery_days``, ``delivery_date``;
- ``GET /shipments/{id}`` and ``POST /shipments/{id}/buy`` with ``{"rate": {"id": ...}}``;
  a bought shipment has ``tracking_code``, ``selected_rate``, ``postage_label`` (``label_url``,
  ``label_file_type``, ``label_pdf_url``, ``label_zpl_url``) and ``tracker.public_url``;
- ``GET /shipments/{id}/label?file_format=PDF|ZPL`` converts a bought label;
- ``POST /shipments/{id}/refund``, answered with the shipment and its ``refund_status``
  (``submitted``, ``refunded``, ``rejected``, ``not_applicable``);
- ``POST /trackers`` with ``{"tracker": {tracking_code, carrier}}``; EasyPost answers an
  existing tracker for a code it already tracks instead of creating another. A Tracker has
  ``status``, ``est_delivery_date`` and ``tracking_details[]`` (``status, message,
  datetime, tracking_location``);
- errors: ``{"error": {"code", "message", "errors": [{"field", "message"} | "text"]}}``.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import quote

import aiohttp
import msgspec
from msgspec import Struct

from actors.order.types import Address
from actors.shipping.carriers import (
    CarrierError,
    LabelFormat,
    Parcel,
    Purchase,
    Rate,
    RateRequest,
    Tracking,
    TrackingEvent,
    TrackingStatus,
)
from adapters.carriers.http import CarrierHttp
from adapters.carriers.scans import ScanLocation, place

GRAMS_PER_OUNCE = 28.349523125
CM_PER_INCH = 2.54

# EasyPost's Tracker statuses, normalized. "cancelled" and "error" mean the carrier will
# not move the parcel as labelled: a person has to look, as for "failure".
_STATUSES: dict[str, TrackingStatus] = {
    "unknown": "unknown",
    "pre_transit": "pre_transit",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "available_for_pickup": "available_for_pickup",
    "delivered": "delivered",
    "return_to_sender": "returned",
    "failure": "failure",
    "cancelled": "failure",
    "error": "failure",
}

_FILE_FORMAT: dict[LabelFormat, str] = {"pdf": "PDF", "zpl": "ZPL"}
_MIME_TYPE: dict[LabelFormat, str] = {"pdf": "application/pdf", "zpl": "application/zpl"}


def easypost_tracking_status(word: str) -> TrackingStatus:
    """orderd's status for an EasyPost Tracker or TrackingDetail ``status``."""
    return _STATUSES.get(word.strip().lower(), "unknown")


class _Rate(Struct, kw_only=True):
    id: str
    carrier: str
    service: str
    rate: Decimal
    currency: str
    delivery_days: int | None = None
    delivery_date: str | None = None


class _PostageLabel(Struct, kw_only=True):
    label_url: str | None = None
    label_file_type: str | None = None
    label_pdf_url: str | None = None
    label_zpl_url: str | None = None


class _TrackerLink(Struct, kw_only=True):
    public_url: str | None = None


class _Shipment(Struct, kw_only=True):
    id: str
    rates: list[_Rate] = []
    selected_rate: _Rate | None = None
    postage_label: _PostageLabel | None = None
    tracking_code: str | None = None
    tracker: _TrackerLink | None = None
    refund_status: str | None = None


class _TrackingDetail(Struct, kw_only=True):
    at: datetime = msgspec.field(name="datetime")
    status: str | None = None
    message: str | None = None
    tracking_location: ScanLocation | None = None


class _Tracker(Struct, kw_only=True):
    tracking_code: str
    status: str
    est_delivery_date: datetime | None = None
    tracking_details: list[_TrackingDetail] = []


class _FieldError(Struct, kw_only=True):
    field: str | None = None
    message: str | None = None


class _Error(Struct, kw_only=True):
    code: str | None = None
    # Documented as a string; EasyPost's own client libraries also accept a list.
    message: str | list[str] | None = None
    errors: list[_FieldError | str] = []


class _ErrorBody(Struct, kw_only=True):
    error: _Error


def easypost_error_text(body: bytes) -> str | None:
    """The message of an EasyPost error body, with its field errors; None if there is none."""
    try:
        error = msgspec.json.decode(body, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    message = "; ".join(error.message) if isinstance(error.message, list) else error.message
    parts = [message] if message else []
    for item in error.errors:
        if isinstance(item, str):
            parts.append(item)
        elif item.message:
            parts.append(f"{item.field}: {item.message}" if item.field else item.message)
    return "; ".join(parts) or error.code


def _round_up(value: float) -> float:
    # Tenths, rounded up: declaring a parcel lighter or smaller than it is costs an
    # adjustment charge later.
    return math.ceil(round(value * 10, 6)) / 10


def _parcel(parcel: Parcel) -> dict[str, float]:
    return {
        "length": _round_up(parcel.length_cm / CM_PER_INCH),
        "width": _round_up(parcel.width_cm / CM_PER_INCH),
        "height": _round_up(parcel.height_cm / CM_PER_INCH),
        "weight": _round_up(parcel.weight_g / GRAMS_PER_OUNCE),
    }


def _address(address: Address) -> dict[str, str]:
    fields = {
        "name": address.name,
        "company": address.company,
        "street1": address.line1,
        "street2": address.line2,
        "city": address.city,
        "state": address.region,
        "zip": address.postal_code,
        "country": address.country,
        "phone": address.phone or "",
    }
    return {key: value for key, value in fields.items() if value}


def _label_url(label: _PostageLabel | None, label_format: LabelFormat) -> str | None:
    """The URL of the label file in ``label_format``, when the shipment has one."""
    if label is None:
        return None
    specific = label.label_pdf_url if label_format == "pdf" else label.label_zpl_url
    if specific:
        return specific
    if label.label_file_type == _MIME_TYPE[label_format]:
        return label.label_url
    return None


class EasyPost:
    """An EasyPost account: quotes, labels, tracking and refunds over EasyPost's API v2."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.easypost.com/v2",
        timeout_s: float = 15.0,
        name: str = "easypost",
    ) -> None:
        self.name = name
        self._http = CarrierHttp(
            carrier=name,
            base_url=base_url,
            authorization=aiohttp.encode_basic_auth(api_key),
            secret=api_key,
            timeout_s=timeout_s,
            error_text=easypost_error_text,
        )

    async def rates(self, request: RateRequest) -> list[Rate]:
        """Create an EasyPost shipment for the parcel; its rates are the quotes."""
        # EasyPost fixes the label format in the options of a shipment when it is created,
        # before anyone has chosen a rate, let alone a printer. Shipments are created for
        # PDF; a ZPL label is made from the bought one with the documented conversion
        # (GET /shipments/{id}/label?file_format=ZPL), see buy().
        options: dict[str, str] = {"label_format": _FILE_FORMAT["pdf"]}
        if request.signature:
            options["delivery_confirmation"] = "SIGNATURE"
        body = {
            "shipment": {
                "to_address": _address(request.ship_to),
                "from_address": _address(request.ship_from),
                "parcel": _parcel(request.parcel),
                "options": options,
                "reference": request.shipment_id,
            }
        }
        shipment = await self._http.call("POST", "/shipments", _Shipment, body=body)
        return [
            Rate(
                carrier=self.name,
                carrier_account=rate.carrier,
                service=rate.service,
                amount=rate.rate,
                currency=rate.currency,
                delivery_days=rate.delivery_days,
                delivery_date=self._day(rate.delivery_date),
                rate_id=rate.id,
                quote_id=shipment.id,
            )
            for rate in shipment.rates
        ]

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        """Buy ``rate`` unless its shipment already has a label, then fetch the label file.

        EasyPost takes no idempotency key; the shipment is the unit instead: it holds at
        most one label, and is looked at before buying, so a purchase that was made but not
        recorded (a crash in between) is found and returned rather than bought again.
        """
        path = f"/shipments/{quote(rate.quote_id, safe='')}"
        shipment = await self._http.call("GET", path, _Shipment)
        if shipment.postage_label is None or not shipment.tracking_code:
            body = {"rate": {"id": rate.rate_id}}
            shipment = await self._http.call("POST", f"{path}/buy", _Shipment, body=body)
        url = _label_url(shipment.postage_label, label_format)
        if url is None:
            params = {"file_format": _FILE_FORMAT[label_format]}
            shipment = await self._http.call("GET", f"{path}/label", _Shipment, params=params)
            url = _label_url(shipment.postage_label, label_format)
        bought = shipment.selected_rate
        if url is None or not shipment.tracking_code or bought is None:
            raise self._http.malformed()
        label = await self._http.fetch_label(url, label_format)
        return Purchase(
            carrier=self.name,
            carrier_account=bought.carrier,
            service=bought.service,
            tracking_number=shipment.tracking_code,
            label_format=label_format,
            label=label,
            purchase_id=shipment.id,
            amount=bought.rate,
            currency=bought.currency,
            tracking_url=shipment.tracker.public_url if shipment.tracker else None,
        )

    async def track(self, tracking_number: str, *, carrier_account: str | None = None) -> Tracking:
        """The parcel's tracker; ``carrier_account`` (e.g. "USPS") spares EasyPost guessing."""
        tracker: dict[str, str] = {"tracking_code": tracking_number}
        if carrier_account:
            tracker["carrier"] = carrier_account
        answer = await self._http.call("POST", "/trackers", _Tracker, body={"tracker": tracker})
        events = tuple(
            TrackingEvent(
                status=easypost_tracking_status(detail.status or ""),
                carrier_status=detail.status or "",
                detail=detail.message or "",
                at=detail.at,
                location=place(detail.tracking_location),
            )
            for detail in answer.tracking_details
        )
        eta = answer.est_delivery_date
        return Tracking(
            tracking_number=answer.tracking_code,
            status=easypost_tracking_status(answer.status),
            carrier_status=answer.status,
            estimated_delivery=eta.date() if eta else None,
            events=events,
        )

    async def void(self, purchase_id: str) -> None:
        """Ask for a refund of the shipment's unused label."""
        path = f"/shipments/{quote(purchase_id, safe='')}/refund"
        shipment = await self._http.call("POST", path, _Shipment)
        status = shipment.refund_status
        if status in ("submitted", "refunded"):
            return
        if status == "rejected":
            # EasyPost: a refund asked for just after buying may be rejected; asking again works.
            raise CarrierError(f"{self.name} rejected the refund of {purchase_id}", temporary=True)
        raise CarrierError(
            f"{self.name} cannot refund {purchase_id} (refund status {status})", temporary=False
        )

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    def _day(self, text: str | None) -> date | None:
        """A delivery date, sent by EasyPost as a date or a date and time."""
        if not text:
            return None
        try:
            return datetime.fromisoformat(text).date()
        except ValueError:
            raise self._http.malformed() from None
