"""Shippo as a :class:`~actors.shipping.carriers.Carrier`.

Calls and fields, as Shippo documents them (docs.goshippo.com API reference: Shipments,
Rates, Transactions, Tracking Status, Refunds; "Shipping label sizes"; carrier tokens):

- authentication: ``Authorization: ShippoToken <API key>``;
- ``POST /shipments/`` with ``address_from``, ``address_to`` (``name, company, street1,
  street2, city, state, zip, country, phone``), ``parcels[]`` (``length, width, height,
  distance_unit, weight, mass_unit``; centimetres and grams are accepted units), ``extra``
  (``signature_confirmation``), ``metadata`` and ``async: false``. The answer's
  ``rates[]`` carry ``object_id, amount`` (a decimal string), ``currency, provider,
  servicelevel {name, token}, estimated_days``;
- ``GET /transactions/?rate=<id>`` lists the transactions (labels) of a rate;
  ``POST /transactions/`` with ``rate, label_file_type`` (``PDF_4x6`` or ``ZPLII``),
  ``async: false`` and ``metadata`` buys one. A Transaction has ``status`` (``SUCCESS``,
  ``ERROR``, ...), ``tracking_number, label_url, label_file_type, tracking_url_provider``
  and ``messages[]``;
- ``GET /tracks/{carrier}/{tracking_number}``: ``tracking_status`` and
  ``tracking_history[]`` (``status, status_details, status_date, substatus.code,
  location``) and ``eta``; ``carrier`` is Shippo's carrier token (``usps``, ``ups``, ...);
- ``POST /refunds/`` with ``transaction`` and ``async: false``; a Refund has ``status``
  (``QUEUED``, ``PENDING``, ``SUCCESS``, ``ERROR``);
- errors: ``{"detail": "..."}`` or ``{"error": "..."}``, or field names with messages.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

import msgspec
from msgspec import Struct

from actors.order.types import Address
from actors.shipping.carriers import (
    CarrierError,
    LabelFormat,
    Purchase,
    Rate,
    RateRequest,
    Tracking,
    TrackingEvent,
    TrackingStatus,
)
from adapters.carriers.http import CarrierHttp
from adapters.carriers.scans import ScanLocation, place

# Shippo's label tokens for the two formats orderd prints ("Shipping label sizes").
_LABEL_FILE_TYPE: dict[LabelFormat, str] = {"pdf": "PDF_4x6", "zpl": "ZPLII"}
# Shippo limits metadata to 100 characters.
_METADATA_LENGTH = 100
_UNFINISHED = ("QUEUED", "WAITING")  # a transaction's statuses before SUCCESS or ERROR

_STATUSES: dict[str, TrackingStatus] = {
    "UNKNOWN": "unknown",
    "PRE_TRANSIT": "pre_transit",
    "TRANSIT": "in_transit",
    "DELIVERED": "delivered",
    "RETURNED": "returned",
    "FAILURE": "failure",
}
# Substatus codes (tracking_status.substatus.code) that say more than TRANSIT does.
_TRANSIT_SUBSTATUSES: dict[str, TrackingStatus] = {
    "out_for_delivery": "out_for_delivery",
    "pickup_available": "available_for_pickup",
}
# Carrier names whose Shippo token is not the name in lower case with underscores.
_TOKEN_ALIASES = {
    "evri": "hermes_uk",
    "evri uk": "hermes_uk",
    "jitsu": "axlehire",
    "dpd germany": "dpd_de",
    "bettertrucks": "better_trucks",
    "collectplus": "collect_plus",
    "correiosbr": "correios_br",
    "epost global": "rr_donnelley",
    "royal mail storefeeder": "royal_mail_sf",
}


def shippo_tracking_status(status: str, substatus: str | None = None) -> TrackingStatus:
    """orderd's status for a Shippo tracking ``status`` and its ``substatus.code``."""
    word = status.strip().upper()
    if word == "TRANSIT" and substatus:
        refined = _TRANSIT_SUBSTATUSES.get(substatus.strip().lower())
        if refined is not None:
            return refined
    return _STATUSES.get(word, "unknown")


def shippo_carrier_token(carrier: str) -> str:
    """Shippo's carrier token (``usps``, ``dhl_express``) for a provider name or token."""
    name = " ".join(carrier.strip().lower().split())
    return _TOKEN_ALIASES.get(name) or re.sub(r"[\s-]+", "_", name)


class _ServiceLevel(Struct, kw_only=True):
    name: str | None = None
    token: str | None = None


class _Rate(Struct, kw_only=True):
    object_id: str
    amount: Decimal
    currency: str
    provider: str
    servicelevel: _ServiceLevel
    estimated_days: int | None = None


class _Message(Struct, kw_only=True):
    # The example answers say "text", the field list of the reference says "message".
    text: str | None = None
    message: str | None = None


class _Shipment(Struct, kw_only=True):
    object_id: str
    status: str | None = None
    rates: list[_Rate] = []
    messages: list[_Message] = []


class _Transaction(Struct, kw_only=True):
    object_id: str
    status: str
    tracking_number: str | None = None
    label_url: str | None = None
    label_file_type: str | None = None
    tracking_url_provider: str | None = None
    messages: list[_Message] = []


class _Transactions(Struct, kw_only=True):
    results: list[_Transaction]


class _Substatus(Struct, kw_only=True):
    code: str | None = None


class _TrackingStatus(Struct, kw_only=True):
    status: str
    status_details: str | None = None
    status_date: datetime | None = None
    substatus: _Substatus | None = None
    location: ScanLocation | None = None


class _Track(Struct, kw_only=True):
    tracking_number: str
    eta: datetime | None = None
    tracking_status: _TrackingStatus | None = None
    tracking_history: list[_TrackingStatus] = []


class _Refund(Struct, kw_only=True):
    object_id: str
    status: str


def shippo_error_text(body: bytes) -> str | None:
    """The message of a Shippo error body; None if there is none."""
    try:
        error = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(error, dict):
        return None
    for key in ("detail", "error"):
        if isinstance(error.get(key), str):
            return str(error[key])
    parts = []
    for field, problems in error.items():
        if isinstance(problems, str):
            parts.append(f"{field}: {problems}")
        elif isinstance(problems, list):
            texts = [problem for problem in problems if isinstance(problem, str)]
            if texts:
                parts.append(f"{field}: {' '.join(texts)}")
    return "; ".join(parts) or None


def _messages(messages: list[_Message]) -> str:
    texts = (message.text or message.message for message in messages)
    return "; ".join(text for text in texts if text)


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


def _number(value: float) -> str:
    # Shippo takes dimensions as decimal strings.
    return f"{round(value, 2):g}"


class Shippo:
    """A Shippo account: quotes, labels, tracking and refunds over Shippo's API."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.goshippo.com",
        timeout_s: float = 15.0,
        name: str = "shippo",
    ) -> None:
        self.name = name
        self._http = CarrierHttp(
            carrier=name,
            base_url=base_url,
            authorization=f"ShippoToken {api_key}",
            secret=api_key,
            timeout_s=timeout_s,
            error_text=shippo_error_text,
        )

    async def rates(self, request: RateRequest) -> list[Rate]:
        """Create a Shippo shipment for the parcel, rated synchronously."""
        parcel = request.parcel
        body: dict[str, object] = {
            "address_from": _address(request.ship_from),
            "address_to": _address(request.ship_to),
            "parcels": [
                {
                    "length": _number(parcel.length_cm),
                    "width": _number(parcel.width_cm),
                    "height": _number(parcel.height_cm),
                    "distance_unit": "cm",
                    "weight": str(parcel.weight_g),
                    "mass_unit": "g",
                }
            ],
            "metadata": request.shipment_id[:_METADATA_LENGTH],
            "async": False,
        }
        if request.signature:
            body["extra"] = {"signature_confirmation": "STANDARD"}
        shipment = await self._http.call("POST", "/shipments/", _Shipment, body=body)
        if shipment.status == "ERROR":
            raise CarrierError(
                f"{self.name} could not rate the parcel: {_messages(shipment.messages)}",
                temporary=False,
            )
        if shipment.status in ("QUEUED", "WAITING"):
            # Rated in the background despite async=false: the rates are not all there yet.
            raise CarrierError(f"{self.name} is still rating the parcel", temporary=True)
        return [
            Rate(
                carrier=self.name,
                carrier_account=rate.provider,
                service=rate.servicelevel.name or rate.servicelevel.token or "",
                amount=rate.amount,
                currency=rate.currency,
                delivery_days=rate.estimated_days,
                rate_id=rate.object_id,
                quote_id=shipment.object_id,
            )
            for rate in shipment.rates
        ]

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        """Buy ``rate``'s label unless one was bought for it already, then fetch the file.

        Shippo takes no idempotency key on transactions. The documented filter of the
        transaction list by rate finds a label that was bought but not recorded (a crash in
        between), so it is returned instead of buying a second one, and one still being
        made, which is waited for. The key goes into the
        transaction's metadata, where an operator can find it.
        """
        # Every transaction of the rate, not only the successful ones: one still QUEUED or
        # WAITING (a purchase whose answer never came back) becomes a label by itself, and
        # buying again meanwhile would pay for a second one.
        query = {"rate": rate.rate_id}
        bought = await self._http.call("GET", "/transactions/", _Transactions, params=query)
        transaction = next((t for t in bought.results if t.status == "SUCCESS"), None)
        unfinished = next((t for t in bought.results if t.status in _UNFINISHED), None)
        if transaction is None and unfinished is not None:
            raise CarrierError(
                f"{self.name} label {unfinished.object_id} is still {unfinished.status}",
                temporary=True,
            )
        if transaction is None:
            body = {
                "rate": rate.rate_id,
                "label_file_type": _LABEL_FILE_TYPE[label_format],
                "async": False,
                "metadata": idempotency_key[:_METADATA_LENGTH],
            }
            transaction = await self._http.call("POST", "/transactions/", _Transaction, body=body)
        if transaction.status == "ERROR":
            raise CarrierError(
                f"{self.name} could not buy the label: {_messages(transaction.messages)}",
                temporary=False,
            )
        if transaction.status != "SUCCESS":
            # Still queued despite async=false; the next try finds it in the list above and
            # waits for it rather than buying another.
            raise CarrierError(
                f"{self.name} label {transaction.object_id} is {transaction.status}",
                temporary=True,
            )
        if not transaction.tracking_number or not transaction.label_url:
            raise self._http.malformed()
        bought_format = self._label_format(transaction.label_file_type, label_format)
        label = await self._http.fetch_label(transaction.label_url, bought_format)
        return Purchase(
            carrier=self.name,
            carrier_account=rate.carrier_account,
            service=rate.service,
            tracking_number=transaction.tracking_number,
            label_format=bought_format,
            label=label,
            purchase_id=transaction.object_id,
            amount=rate.amount,
            currency=rate.currency,
            tracking_url=transaction.tracking_url_provider,
        )

    async def track(self, tracking_number: str, *, carrier_account: str | None = None) -> Tracking:
        """The parcel's tracking; Shippo needs the carrier (``carrier_account``, e.g. "USPS")."""
        if not carrier_account:
            raise CarrierError(
                f"{self.name} needs the carrier to track {tracking_number}", temporary=False
            )
        token = quote(shippo_carrier_token(carrier_account), safe="")
        path = f"/tracks/{token}/{quote(tracking_number, safe='')}"
        track = await self._http.call("GET", path, _Track)
        events = tuple(
            TrackingEvent(
                status=shippo_tracking_status(entry.status, _code(entry)),
                carrier_status=entry.status,
                detail=entry.status_details or "",
                at=entry.status_date,
                location=place(entry.location),
            )
            for entry in track.tracking_history
            if entry.status_date is not None  # an event without a time cannot be placed
        )
        current = track.tracking_status
        carrier_status = current.status if current else "UNKNOWN"
        return Tracking(
            tracking_number=track.tracking_number,
            status=shippo_tracking_status(carrier_status, _code(current)),
            carrier_status=carrier_status,
            estimated_delivery=track.eta.date() if track.eta else None,
            events=events,
        )

    async def void(self, purchase_id: str) -> None:
        """Ask Shippo to refund the unused label of transaction ``purchase_id``."""
        body = {"transaction": purchase_id, "async": False}
        refund = await self._http.call("POST", "/refunds/", _Refund, body=body)
        if refund.status == "ERROR":
            raise CarrierError(f"{self.name} refused to refund {purchase_id}", temporary=False)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    def _label_format(self, label_file_type: str | None, requested: LabelFormat) -> LabelFormat:
        """The format of a bought label; a label bought earlier may differ from the request."""
        if label_file_type is None:
            return requested
        if label_file_type == "ZPLII":
            return "zpl"
        if label_file_type.startswith("PDF"):
            return "pdf"
        raise CarrierError(
            f"{self.name} label is {label_file_type}, not PDF or ZPL", temporary=False
        )


def _code(entry: _TrackingStatus | None) -> str | None:
    if entry is None or entry.substatus is None:
        return None
    return entry.substatus.code
