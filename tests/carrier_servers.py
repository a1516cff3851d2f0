"""Local stand-ins for the EasyPost and Shippo APIs, speaking their documented JSON.

Each server runs in the test's own event loop on 127.0.0.1 and a free port::

    async with EasyPostServer() as server:
        carrier = EasyPost(api_key=server.api_key, base_url=server.base_url)

They check the API key, validate request bodies (answering with the vendor's error shape),
quote two or three rates, sell labels (``purchases`` records each one), serve label files
(fixed PDF and ZPL bytes), tracking and refunds. ``fail_next`` injects a fault into the
next call: an HTTP 500, an answer that never comes (until the server stops), a body that
is not JSON or JSON of the wrong shape. ``on_buy`` runs after a purchase is recorded and
before it is answered.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from aiohttp.typedefs import Handler

Fault = Literal["500", "hang", "not_json", "wrong_shape"]

PDF_LABEL = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ZPL_LABEL = b"^XA^FO50,50^A0N,40,40^FDTEST LABEL^FS^XZ\n"


@dataclass
class Sale:
    """One label sold by a server."""

    purchase_id: str  # EasyPost shipment id, Shippo transaction id
    rate_id: str
    tracking_number: str
    label_format: Literal["pdf", "zpl"]
    metadata: str = ""


@dataclass
class TrackingScript:
    """What a server answers for a tracking number: events, oldest first."""

    events: list[tuple[str, str | None]] = field(default_factory=list)  # (status, substatus)
    eta: str | None = None


def _number(value: object) -> float | None:
    """A positive number given as JSON number or decimal string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(Decimal(value))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number > 0 else None


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, or None when it has none or it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class _CarrierServer:
    """Common machinery: lifecycle, fault injection, label files, purchase records."""

    api_prefix = ""

    def __init__(self, *, api_key: str) -> None:
        self.api_key = api_key
        self.port = 0
        self.faults: deque[Fault] = deque()
        self.on_buy: Callable[[], None] | None = None
        self.sales: list[Sale] = []
        self.requests: list[tuple[str, str, Any]] = []  # method, path with query, JSON body
        self.tracking: dict[str, TrackingScript] = {}
        self._labels: dict[str, bytes] = {}
        self._numbers = itertools.count(1)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

        @web.middleware
        async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append((request.method, request.path_qs, await _json_body(request)))
            if self.faults:
                fault = self.faults.popleft()
                if fault == "500":
                    return web.json_response({"message": "internal error"}, status=500)
                if fault == "hang":
                    await self._stopping.wait()
                    return web.Response(status=503)
                if fault == "wrong_shape":
                    return web.json_response({"object": "Unexpected", "items": [1, 2]})
                return web.Response(text="<html>upstream down</html>", content_type="text/html")
            return await handler(request)

        self.app = web.Application(middlewares=[inject_faults])
        self.app.router.add_get("/labels/{name}", self._label_file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the adapter takes as ``base_url``."""
        return f"{self.url}{self.api_prefix}"

    @property
    def purchases(self) -> int:
        """How many labels were sold."""
        return len(self.sales)

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` calls with ``fault`` instead of serving them."""
        self.faults.extend([fault] * times)

    def _record_sale(self, sale: Sale) -> None:
        self.sales.append(sale)
        if self.on_buy is not None:
            self.on_buy()

    def _new_label(self, label_format: Literal["pdf", "zpl"]) -> str:
        name = f"{uuid.uuid4().hex}.{label_format}"
        self._labels[name] = PDF_LABEL if label_format == "pdf" else ZPL_LABEL
        return f"{self.url}/labels/{name}"

    def _tracking_number(self, prefix: str) -> str:
        return f"{prefix}{next(self._numbers):012d}"

    async def _label_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if "Authorization" in request.headers:
            # Label files live in storage that must never see an API key.
            return web.Response(status=400, text="unexpected Authorization header")
        label = self._labels.get(name)
        if label is None:
            return web.Response(status=404)
        content_type = "application/pdf" if name.endswith(".pdf") else "application/zpl"
        return web.Response(body=label, content_type=content_type)

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()


# ---- EasyPost ----------------------------------------------------------------------------

_EP_ADDRESS_REQUIRED = ("street1", "city", "zip", "country")


def _ep_error(
    status: int, code: str, message: str, errors: list[Any] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "errors": errors or []}}
    return web.json_response(body, status=status)


class EasyPostServer(_CarrierServer):
    """EasyPost API v2: shipments (create, retrieve, buy, label, refund) and trackers."""

    api_prefix = "/v2"

    def __init__(self, *, api_key: str = "EZTK_test_key_1234567890") -> None:
        super().__init__(api_key=api_key)
        self.shipments: dict[str, dict[str, Any]] = {}
        router = self.app.router
        router.add_post("/v2/shipments", self._create_shipment)
        router.add_get("/v2/shipments/{id}", self._retrieve_shipment)
        router.add_post("/v2/shipments/{id}/buy", self._buy)
        router.add_get("/v2/shipments/{id}/label", self._convert_label)
        router.add_post("/v2/shipments/{id}/refund", self._refund)
        router.add_post("/v2/trackers", self._create_tracker)

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return _ep_error(401, "APIKEY.REQUIRED", "This resource requires an API key.")
        scheme, _, encoded = header.partition(" ")
        try:
            login = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
        except ValueError:
            return _ep_error(401, "APIKEY.INVALID", "The API key could not be read.")
        if scheme != "Basic" or login != self.api_key:
            return _ep_error(401, "APIKEY.INACTIVE", "The API key provided is not valid.")
        return None

    def _shipment(self, request: web.Request) -> dict[str, Any] | web.Response:
        shipment = self.shipments.get(request.match_info["id"])
        if shipment is None:
            return _ep_error(404, "NOT_FOUND", "The requested resource could not be found.")
        return shipment

    async def _create_shipment(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        body = await _json_body(request)
        shipment = body.get("shipment") if isinstance(body, dict) else None
        if not isinstance(shipment, dict):
            return _ep_error(422, "PARAMETER.REQUIRED", "Missing required parameter: shipment.")
        errors: list[dict[str, str]] = []
        for which in ("to_address", "from_address"):
            address = shipment.get(which)
            if not isinstance(address, dict):
                errors.append({"field": which, "message": "cannot be blank"})
                continue
            errors.extend(
                {"field": f"{which}.{key}", "message": "cannot be blank"}
                for key in _EP_ADDRESS_REQUIRED
                if not isinstance(address.get(key), str) or not address[key]
            )
        parcel = shipment.get("parcel")
        weight = _number(parcel.get("weight")) if isinstance(parcel, dict) else None
        if not isinstance(parcel, dict) or weight is None:
            errors.append({"field": "parcel.weight", "message": "must be greater than 0"})
        else:
            errors.extend(
                {"field": f"parcel.{key}", "message": "must be greater than 0"}
                for key in ("length", "width", "height")
                if key in parcel and _number(parcel[key]) is None
            )
        options = shipment.get("options", {})
        label_format = options.get("label_format", "PNG") if isinstance(options, dict) else None
        if label_format not in ("PNG", "PDF", "ZPL", "EPL2"):
            errors.append({"field": "options.label_format", "message": "is not supported"})
        if errors or weight is None:
            return _ep_error(422, "SHIPMENT.INVALID_PARAMS", "Unable to create shipment.", errors)
        shipment_id = f"shp_{uuid.uuid4().hex}"
        rates = [
            self._rate(shipment_id, "USPS", "Priority", Decimal("7.90") + Decimal(weight) / 100, 2),
            self._rate(shipment_id, "USPS", "Express", Decimal("29.50"), 1, "2030-06-03T23:59:00Z"),
            self._rate(shipment_id, "UPS", "Ground", Decimal("11.25"), None),
        ]
        stored = {
            "id": shipment_id,
            "object": "Shipment",
            "mode": "test",
            "reference": shipment.get("reference"),
            "to_address": shipment["to_address"],
            "from_address": shipment["from_address"],
            "parcel": parcel,
            "options": options,
            "rates": rates,
            "selected_rate": None,
            "postage_label": None,
            "tracking_code": None,
            "tracker": None,
            "refund_status": None,
            "messages": [],
            "status": "unknown",
        }
        self.shipments[shipment_id] = stored
        return web.json_response(stored, status=201)

    def _rate(
        self,
        shipment_id: str,
        carrier: str,
        service: str,
        amount: Decimal,
        days: int | None,
        delivery_date: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": f"rate_{uuid.uuid4().hex}",
            "object": "Rate",
            "mode": "test",
            "service": service,
            "carrier": carrier,
            "rate": f"{amount.quantize(Decimal('0.01'))}",
            "currency": "USD",
            "delivery_days": days,
            "delivery_date": delivery_date,
            "delivery_date_guaranteed": False,
            "shipment_id": shipment_id,
            "carrier_account_id": f"ca_{carrier.lower()}",
        }

    async def _retrieve_shipment(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        shipment = self._shipment(request)
        return shipment if isinstance(shipment, web.Response) else web.json_response(shipment)

    async def _buy(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        shipment = self._shipment(request)
        if isinstance(shipment, web.Response):
            return shipment
        body = await _json_body(request)
        rate = body.get("rate") if isinstance(body, dict) else None
        rate_id = rate.get("id") if isinstance(rate, dict) else None
        if not isinstance(rate_id, str):
            return _ep_error(422, "PARAMETER.REQUIRED", "Missing required parameter: rate.")
        if shipment["postage_label"] is not None:
            return _ep_error(422, "SHIPMENT.POSTAGE.EXISTS", "Shipment already has postage.")
        chosen = next((r for r in shipment["rates"] if r["id"] == rate_id), None)
        if chosen is None:
            return _ep_error(422, "SHIPMENT.RATE.INVALID", "The rate is not for this shipment.")
        tracking_code = self._tracking_number("EZ")
        label_format = shipment["options"].get("label_format", "PNG")
        label: dict[str, Any] = {
            "object": "PostageLabel",
            "id": f"pl_{uuid.uuid4().hex}",
            "label_size": "4x6",
            "label_file_type": "image/png",
            "label_url": f"{self.url}/labels/{uuid.uuid4().hex}.png",
            "label_pdf_url": None,
            "label_zpl_url": None,
            "label_epl2_url": None,
        }
        if label_format == "PDF":
            label["label_file_type"] = "application/pdf"
            label["label_url"] = self._new_label("pdf")
        elif label_format == "ZPL":
            label["label_file_type"] = "application/zpl"
            label["label_url"] = self._new_label("zpl")
        tracker = {
            "id": f"trk_{uuid.uuid4().hex}",
            "object": "Tracker",
            "tracking_code": tracking_code,
            "status": "unknown",
            "carrier": chosen["carrier"],
            "shipment_id": shipment["id"],
            "public_url": f"https://track.easypost.test/{tracking_code}",
        }
        shipment.update(
            selected_rate=chosen, postage_label=label, tracking_code=tracking_code, tracker=tracker
        )
        self.tracking.setdefault(tracking_code, TrackingScript(events=[("pre_transit", None)]))
        self._record_sale(
            Sale(
                purchase_id=shipment["id"],
                rate_id=rate_id,
                tracking_number=tracking_code,
                label_format="zpl" if label_format == "ZPL" else "pdf",
            )
        )
        return web.json_response(shipment)

    async def _convert_label(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        shipment = self._shipment(request)
        if isinstance(shipment, web.Response):
            return shipment
        file_format = request.query.get("file_format", "").upper()
        if file_format not in ("PDF", "ZPL", "EPL2", "PNG"):
            return _ep_error(422, "PARAMETER.INVALID", "file_format must be PDF, ZPL, EPL2 or PNG.")
        label = shipment["postage_label"]
        if label is None:
            return _ep_error(422, "SHIPMENT.POSTAGE.MISSING", "Shipment has no postage label.")
        if file_format == "PDF" and not label.get("label_pdf_url"):
            label["label_pdf_url"] = self._new_label("pdf")
        elif file_format == "ZPL" and not label.get("label_zpl_url"):
            label["label_zpl_url"] = self._new_label("zpl")
        return web.json_response(shipment)

    async def _refund(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        shipment = self._shipment(request)
        if isinstance(shipment, web.Response):
            return shipment
        if shipment["postage_label"] is None:
            return _ep_error(422, "SHIPMENT.REFUND.UNAVAILABLE", "Shipment has no postage.")
        shipment["refund_status"] = "submitted"
        return web.json_response(shipment)

    async def _create_tracker(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        body = await _json_body(request)
        tracker = body.get("tracker") if isinstance(body, dict) else None
        code = tracker.get("tracking_code") if isinstance(tracker, dict) else None
        carrier = tracker.get("carrier") if isinstance(tracker, dict) else None
        if not isinstance(code, str) or not code:
            return _ep_error(
                422,
                "TRACKER.TRACKING_CODE.REQUIRED",
                "Missing required parameter.",
                [{"field": "tracking_code", "message": "cannot be blank"}],
            )
        script = self.tracking.get(code, TrackingScript())
        details = [
            {
                "object": "TrackingDetail",
                "message": f"Scan: {status}",
                "description": None,
                "status": status,
                "status_detail": substatus or "status_update",
                "datetime": f"2030-06-0{day}T10:00:00Z",
                "source": "USPS",
                "tracking_location": {
                    "object": "TrackingLocation",
                    "city": "HOUSTON",
                    "state": "TX",
                    "country": "US",
                    "zip": "77063",
                },
            }
            for day, (status, substatus) in enumerate(script.events, 1)
        ]
        answer = {
            "id": f"trk_{uuid.uuid4().hex}",
            "object": "Tracker",
            "mode": "test",
            "tracking_code": code,
            "status": details[-1]["status"] if details else "unknown",
            "status_detail": "status_update",
            "est_delivery_date": script.eta,
            "carrier": carrier or "USPS",
            "tracking_details": details,
            "public_url": f"https://track.easypost.test/{code}",
        }
        return web.json_response(answer, status=201)


# ---- Shippo ------------------------------------------------------------------------------

_SP_ADDRESS_REQUIRED = ("street1", "city", "zip", "country")
_SP_DISTANCE_UNITS = ("cm", "in", "ft", "mm", "m", "yd")
_SP_MASS_UNITS = ("g", "oz", "lb", "kg")
_SP_LABEL_FILE_TYPES = ("PDF", "PDF_4x6", "PDF_4x8", "PDF_A4", "PDF_A5", "PDF_A6", "ZPLII")


def _sp_error(status: int, detail: str) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


class ShippoServer(_CarrierServer):
    """Shippo: shipments, transactions (list by rate, create), tracks and refunds."""

    def __init__(self, *, api_key: str = "shippo_test_0123456789abcdef") -> None:
        super().__init__(api_key=api_key)
        self.shipments: dict[str, dict[str, Any]] = {}
        self.rates: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.refunds: list[dict[str, Any]] = []
        self.refuse_next_purchase: str | None = None  # carrier message for a status ERROR
        router = self.app.router
        router.add_post("/shipments/", self._create_shipment)
        router.add_get("/transactions/", self._list_transactions)
        router.add_post("/transactions/", self._create_transaction)
        router.add_get("/tracks/{carrier}/{tracking_number}", self._track)
        router.add_post("/refunds/", self._create_refund)

    def _authorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"ShippoToken {self.api_key}":
            return _sp_error(401, "Invalid token.")
        return None

    async def _create_shipment(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _sp_error(400, "The request body must be a JSON object.")
        problems: dict[str, list[str]] = {}
        for which in ("address_from", "address_to"):
            address = body.get(which)
            if not isinstance(address, dict):
                problems[which] = ["This field is required."]
                continue
            missing = [key for key in _SP_ADDRESS_REQUIRED if not address.get(key)]
            if missing:
                problems[which] = [f"{key}: This field is required." for key in missing]
        parcels = body.get("parcels")
        grams: float | None = None
        if not isinstance(parcels, list) or not parcels:
            problems["parcels"] = ["At least one parcel is required."]
        else:
            for parcel in parcels:
                if not isinstance(parcel, dict):
                    problems["parcels"] = ["A parcel must be an object."]
                    break
                wrong = [
                    k
                    for k in ("length", "width", "height", "weight")
                    if _number(parcel.get(k)) is None
                ]
                if parcel.get("distance_unit") not in _SP_DISTANCE_UNITS:
                    wrong.append("distance_unit")
                if parcel.get("mass_unit") not in _SP_MASS_UNITS:
                    wrong.append("mass_unit")
                if wrong:
                    problems["parcels"] = [f"{key}: not a valid value." for key in wrong]
                grams = grams or _number(parcel.get("weight"))
        if body.get("async") is not False:
            problems["async"] = ["Only synchronous rating is served here."]
        if problems or grams is None:
            return web.json_response(problems, status=400)
        shipment_id = uuid.uuid4().hex
        rates = [
            self._rate(
                shipment_id,
                "USPS",
                "Priority Mail",
                "usps_priority",
                Decimal("8.10") + Decimal(grams) / 1000,
                2,
            ),
            self._rate(
                shipment_id, "USPS", "Ground Advantage", "usps_ground_advantage", Decimal("5.35"), 5
            ),
            self._rate(shipment_id, "UPS", "Ground", "ups_ground", Decimal("12.40"), None),
        ]
        shipment = {
            "object_id": shipment_id,
            "object_state": "VALID",
            "status": "SUCCESS",
            "address_from": body["address_from"],
            "address_to": body["address_to"],
            "parcels": parcels,
            "extra": body.get("extra", {}),
            "metadata": body.get("metadata", ""),
            "rates": rates,
            "messages": [],
            "test": True,
        }
        self.shipments[shipment_id] = shipment
        for rate in rates:
            self.rates[rate["object_id"]] = rate
        return web.json_response(shipment, status=201)

    def _rate(
        self,
        shipment_id: str,
        provider: str,
        name: str,
        token: str,
        amount: Decimal,
        days: int | None,
    ) -> dict[str, Any]:
        return {
            "object_id": uuid.uuid4().hex,
            "amount": f"{amount.quantize(Decimal('0.01'))}",
            "currency": "USD",
            "amount_local": f"{amount.quantize(Decimal('0.01'))}",
            "currency_local": "USD",
            "provider": provider,
            "servicelevel": {"name": name, "token": token, "terms": ""},
            "estimated_days": days,
            "duration_terms": "",
            "shipment": shipment_id,
            "carrier_account": f"{provider.lower()}_account",
            "attributes": [],
            "messages": [],
            "test": True,
        }

    async def _list_transactions(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        rate = request.query.get("rate")
        status = request.query.get("object_status")
        results = [
            transaction
            for transaction in self.transactions.values()
            if (rate is None or transaction["rate"] == rate)
            and (status is None or transaction["status"] == status)
        ]
        return web.json_response({"next": None, "previous": None, "results": results})

    async def _create_transaction(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _sp_error(400, "The request body must be a JSON object.")
        rate_id = body.get("rate")
        if not isinstance(rate_id, str) or rate_id not in self.rates:
            return web.json_response({"rate": ["Rate not found."]}, status=400)
        label_file_type = body.get("label_file_type", "PDF_4x6")
        if label_file_type not in _SP_LABEL_FILE_TYPES:
            return web.json_response({"label_file_type": ["Not a valid choice."]}, status=400)
        if body.get("async") is not False:
            return web.json_response(
                {"async": ["Only synchronous purchases are served here."]}, status=400
            )
        transaction_id = uuid.uuid4().hex
        transaction: dict[str, Any] = {
            "object_id": transaction_id,
            "object_state": "VALID",
            "status": "SUCCESS",
            "rate": rate_id,
            "metadata": body.get("metadata", ""),
            "label_file_type": label_file_type,
            "messages": [],
            "test": True,
        }
        if self.refuse_next_purchase is not None:
            message, self.refuse_next_purchase = self.refuse_next_purchase, None
            transaction.update(
                status="ERROR",
                tracking_number=None,
                label_url=None,
                tracking_url_provider=None,
                messages=[{"source": "USPS", "code": "address_invalid", "text": message}],
            )
            self.transactions[transaction_id] = transaction
            return web.json_response(transaction, status=201)
        label_format: Literal["pdf", "zpl"] = "zpl" if label_file_type == "ZPLII" else "pdf"
        tracking_number = self._tracking_number("9400")
        transaction.update(
            tracking_number=tracking_number,
            tracking_status="UNKNOWN",
            tracking_url_provider=f"https://tools.usps.test/track?n={tracking_number}",
            label_url=self._new_label(label_format),
            eta=None,
        )
        self.transactions[transaction_id] = transaction
        self.tracking.setdefault(tracking_number, TrackingScript(events=[("PRE_TRANSIT", None)]))
        self._record_sale(
            Sale(
                purchase_id=transaction_id,
                rate_id=rate_id,
                tracking_number=tracking_number,
                label_format=label_format,
                metadata=str(body.get("metadata", "")),
            )
        )
        return web.json_response(transaction, status=201)

    async def _track(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        number = request.match_info["tracking_number"]
        script = self.tracking.get(number)
        if script is None:
            return _sp_error(404, "Tracking number not found.")
        history = [
            {
                "object_id": uuid.uuid4().hex,
                "status": status,
                "status_details": f"Scan: {status}",
                "status_date": f"2030-06-0{day}T10:00:00Z",
                "substatus": None
                if substatus is None
                else {"code": substatus, "text": substatus, "action_required": False},
                "location": {"city": "Las Vegas", "state": "NV", "zip": "89101", "country": "US"},
            }
            for day, (status, substatus) in enumerate(script.events, 1)
        ]
        answer = {
            "carrier": request.match_info["carrier"],
            "tracking_number": number,
            "eta": script.eta,
            "original_eta": script.eta,
            "servicelevel": {"name": None, "token": None},
            "metadata": None,
            "tracking_status": history[-1] if history else None,
            "tracking_history": history,
            "messages": [],
        }
        return web.json_response(answer)

    async def _create_refund(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._authorized(request)) is not None:
            return refused
        body = await _json_body(request)
        transaction_id = body.get("transaction") if isinstance(body, dict) else None
        if not isinstance(transaction_id, str) or transaction_id not in self.transactions:
            return web.json_response({"transaction": ["Transaction not found."]}, status=400)
        refund = {
            "object_id": uuid.uuid4().hex,
            "status": "QUEUED",
            "transaction": transaction_id,
            "test": True,
        }
        self.refunds.append(refund)
        return web.json_response(refund, status=201)
