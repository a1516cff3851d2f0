"""The EasyPost and Shippo adapters against local servers that speak the vendors' JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from actors.order.types import Address
from actors.shipping.carriers import CarrierError, Parcel, RateRequest, TrackingStatus
from adapters.carriers.easypost import EasyPost, easypost_error_text, easypost_tracking_status
from adapters.carriers.http import CarrierHttp
from adapters.carriers.shippo import Shippo, shippo_carrier_token, shippo_tracking_status
from tests.carrier_servers import EasyPostServer, ShippoServer, TrackingScript

WAREHOUSE = Address(
    name="Dock 4",
    company="Example Goods",
    line1="100 Freight Way",
    city="Reno",
    region="NV",
    postal_code="89501",
    country="US",
    phone="7755550100",
)
CUSTOMER = Address(
    name="Ada Buyer",
    line1="5 Main St",
    line2="Apt 2",
    city="Austin",
    region="TX",
    postal_code="78701",
    country="US",
)
REQUEST = RateRequest(
    shipment_id="shp-1001-1",
    ship_from=WAREHOUSE,
    ship_to=CUSTOMER,
    parcel=Parcel(weight_g=1000, length_cm=30, width_cm=20, height_cm=10),
    signature=True,
)
NO_STREET = RateRequest(
    shipment_id="shp-1001-2",
    ship_from=WAREHOUSE,
    ship_to=Address(name="Ada Buyer", city="Austin", postal_code="78701", country="US"),
    parcel=Parcel(weight_g=500, length_cm=20, width_cm=15, height_cm=5),
)


def _bodies(server: EasyPostServer | ShippoServer, method: str, path: str) -> list[Any]:
    return [body for m, p, body in server.requests if m == method and p.startswith(path)]


def _paths(server: EasyPostServer | ShippoServer) -> list[str]:
    return [f"{method} {path}" for method, path, _ in server.requests]


# ---- EasyPost ----------------------------------------------------------------------------


@pytest.fixture
async def easypost_server() -> AsyncIterator[EasyPostServer]:
    async with EasyPostServer() as server:
        yield server


@pytest.fixture
async def easypost(easypost_server: EasyPostServer) -> AsyncIterator[EasyPost]:
    carrier = EasyPost(
        api_key=easypost_server.api_key, base_url=easypost_server.base_url, timeout_s=5.0
    )
    yield carrier
    await carrier.close()


async def test_easypost_quotes_in_ounces_and_inches(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rates = await easypost.rates(REQUEST)

    (sent,) = _bodies(easypost_server, "POST", "/v2/shipments")
    shipment = sent["shipment"]
    # 1000 g is 35.27 oz, 30 x 20 x 10 cm is 11.81 x 7.87 x 3.94 in: rounded up to tenths.
    assert shipment["parcel"] == {"length": 11.9, "width": 7.9, "height": 4.0, "weight": 35.3}
    assert shipment["options"] == {"label_format": "PDF", "delivery_confirmation": "SIGNATURE"}
    assert shipment["reference"] == "shp-1001-1"
    assert shipment["to_address"] == {
        "name": "Ada Buyer",
        "street1": "5 Main St",
        "street2": "Apt 2",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "country": "US",
    }
    assert shipment["from_address"]["company"] == "Example Goods"
    assert shipment["from_address"]["phone"] == "7755550100"

    (shipment_id,) = easypost_server.shipments
    served = easypost_server.shipments[shipment_id]["rates"]
    assert [(r.carrier_account, r.service) for r in rates] == [
        ("USPS", "Priority"),
        ("USPS", "Express"),
        ("UPS", "Ground"),
    ]
    for rate, raw in zip(rates, served, strict=True):
        assert rate.carrier == "easypost"
        assert rate.amount == Decimal(raw["rate"])
        assert rate.currency == "USD"
        assert rate.rate_id == raw["id"]
        assert rate.quote_id == shipment_id
    assert [r.delivery_days for r in rates] == [2, 1, None]
    assert [r.delivery_date for r in rates] == [None, date(2030, 6, 3), None]


async def test_easypost_buy_returns_tracking_number_and_pdf_label(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]

    purchase = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    (sale,) = easypost_server.sales
    assert purchase.tracking_number == sale.tracking_number
    assert purchase.purchase_id == rate.quote_id
    assert purchase.label_format == "pdf"
    assert purchase.label.startswith(b"%PDF-1.4")
    assert (purchase.carrier, purchase.carrier_account, purchase.service) == (
        "easypost",
        "USPS",
        "Priority",
    )
    assert (purchase.amount, purchase.currency) == (rate.amount, "USD")
    assert purchase.tracking_url == f"https://track.easypost.test/{sale.tracking_number}"
    assert _bodies(easypost_server, "POST", f"/v2/shipments/{rate.quote_id}/buy") == [
        {"rate": {"id": rate.rate_id}}
    ]


async def test_easypost_zpl_label_is_converted_after_buying(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[2]

    purchase = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="zpl")

    assert purchase.label_format == "zpl"
    assert purchase.label.startswith(b"^XA")
    assert purchase.label.rstrip().endswith(b"^XZ")
    assert f"GET /v2/shipments/{rate.quote_id}/label?file_format=ZPL" in _paths(easypost_server)
    assert easypost_server.purchases == 1


async def test_easypost_second_buy_of_a_quote_returns_the_first_purchase(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]

    first = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    second = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert second == first
    assert easypost_server.purchases == 1


async def test_easypost_label_bought_but_not_delivered_is_not_bought_again(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]
    # The purchase goes through, then the label download fails: as if orderd died there.
    easypost_server.on_buy = lambda: easypost_server.fail_next("500")

    with pytest.raises(CarrierError) as lost:
        await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    assert lost.value.temporary
    easypost_server.on_buy = None
    purchase = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert easypost_server.purchases == 1
    assert purchase.tracking_number == easypost_server.sales[0].tracking_number


async def test_easypost_server_error_is_temporary(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    easypost_server.fail_next("500")

    with pytest.raises(CarrierError) as error:
        await easypost.rates(REQUEST)

    assert error.value.temporary
    assert "HTTP 500" in str(error.value)


async def test_easypost_refusal_is_permanent_with_easypost_message(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    with pytest.raises(CarrierError) as error:
        await easypost.rates(NO_STREET)

    assert not error.value.temporary
    assert "HTTP 422" in str(error.value)
    assert "Unable to create shipment." in str(error.value)
    assert "to_address.street1: cannot be blank" in str(error.value)
    assert easypost_server.api_key not in str(error.value)


async def test_easypost_wrong_key_is_permanent_and_not_in_the_message(
    easypost_server: EasyPostServer,
) -> None:
    carrier = EasyPost(api_key="EZAK_wrong_secret_987", base_url=easypost_server.base_url)
    try:
        with pytest.raises(CarrierError) as error:
            await carrier.rates(REQUEST)
    finally:
        await carrier.close()

    assert not error.value.temporary
    assert "The API key provided is not valid." in str(error.value)
    assert "EZAK_wrong_secret_987" not in str(error.value)


@pytest.mark.parametrize("fault", ["not_json", "wrong_shape"])
async def test_easypost_malformed_answer_is_permanent(
    easypost: EasyPost, easypost_server: EasyPostServer, fault: Any
) -> None:
    easypost_server.fail_next(fault)

    with pytest.raises(CarrierError) as error:
        await easypost.rates(REQUEST)

    assert not error.value.temporary
    assert str(error.value) == "malformed answer from easypost"


async def test_easypost_timeout_is_temporary(easypost_server: EasyPostServer) -> None:
    carrier = EasyPost(
        api_key=easypost_server.api_key, base_url=easypost_server.base_url, timeout_s=0.3
    )
    easypost_server.fail_next("hang")
    try:
        with pytest.raises(CarrierError) as error:
            await carrier.rates(REQUEST)
    finally:
        await carrier.close()

    assert error.value.temporary
    assert "did not answer in time" in str(error.value)


async def test_easypost_unreachable_is_temporary() -> None:
    async with EasyPostServer() as server:
        base_url = server.base_url
    carrier = EasyPost(api_key="EZTK_test", base_url=base_url)
    try:
        with pytest.raises(CarrierError) as error:
            await carrier.rates(REQUEST)
    finally:
        await carrier.close()

    assert error.value.temporary


async def test_easypost_tracking_is_normalized(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]
    purchase = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    easypost_server.tracking[purchase.tracking_number] = TrackingScript(
        events=[("pre_transit", None), ("in_transit", None), ("return_to_sender", None)],
        eta="2030-06-09T18:00:00Z",
    )

    tracking = await easypost.track(purchase.tracking_number, carrier_account="USPS")

    assert _bodies(easypost_server, "POST", "/v2/trackers") == [
        {"tracker": {"tracking_code": purchase.tracking_number, "carrier": "USPS"}}
    ]
    assert tracking.tracking_number == purchase.tracking_number
    assert (tracking.status, tracking.carrier_status) == ("returned", "return_to_sender")
    assert tracking.estimated_delivery == date(2030, 6, 9)
    assert [e.status for e in tracking.events] == ["pre_transit", "in_transit", "returned"]
    assert tracking.events[0].location == "HOUSTON, TX, 77063, US"
    assert tracking.events[0].detail == "Scan: pre_transit"
    assert tracking.events[2].at.isoformat() == "2030-06-03T10:00:00+00:00"


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("pre_transit", "pre_transit"),
        ("in_transit", "in_transit"),
        ("out_for_delivery", "out_for_delivery"),
        ("available_for_pickup", "available_for_pickup"),
        ("delivered", "delivered"),
        ("return_to_sender", "returned"),
        ("failure", "failure"),
        ("cancelled", "failure"),
        ("error", "failure"),
        ("unknown", "unknown"),
        ("something_new", "unknown"),
        ("", "unknown"),
    ],
)
def test_easypost_tracking_status_words(word: str, status: TrackingStatus) -> None:
    assert easypost_tracking_status(word) == status


async def test_easypost_void_asks_for_a_refund(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]
    purchase = await easypost.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    await easypost.void(purchase.purchase_id)

    assert easypost_server.shipments[purchase.purchase_id]["refund_status"] == "submitted"


async def test_easypost_void_of_an_unknown_shipment_is_permanent(easypost: EasyPost) -> None:
    with pytest.raises(CarrierError) as error:
        await easypost.void("shp_does_not_exist")

    assert not error.value.temporary
    assert "The requested resource could not be found." in str(error.value)


async def test_answer_over_the_size_limit_is_malformed(
    easypost: EasyPost, easypost_server: EasyPostServer
) -> None:
    rate = (await easypost.rates(REQUEST))[0]
    client = CarrierHttp(
        carrier="easypost",
        base_url=easypost_server.base_url,
        authorization=aiohttp.encode_basic_auth(easypost_server.api_key),
        secret=easypost_server.api_key,
        timeout_s=5.0,
        error_text=easypost_error_text,
        max_answer_bytes=512,
    )
    try:
        with pytest.raises(CarrierError) as error:
            await client.call("GET", f"/shipments/{rate.quote_id}", dict)
    finally:
        await client.close()

    assert not error.value.temporary
    assert "malformed answer from easypost" in str(error.value)


# ---- Shippo ------------------------------------------------------------------------------


@pytest.fixture
async def shippo_server() -> AsyncIterator[ShippoServer]:
    async with ShippoServer() as server:
        yield server


@pytest.fixture
async def shippo(shippo_server: ShippoServer) -> AsyncIterator[Shippo]:
    carrier = Shippo(api_key=shippo_server.api_key, base_url=shippo_server.base_url, timeout_s=5.0)
    yield carrier
    await carrier.close()


async def test_shippo_quotes_in_grams_and_centimetres(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rates = await shippo.rates(REQUEST)

    (sent,) = _bodies(shippo_server, "POST", "/shipments/")
    assert sent["parcels"] == [
        {
            "length": "30",
            "width": "20",
            "height": "10",
            "distance_unit": "cm",
            "weight": "1000",
            "mass_unit": "g",
        }
    ]
    assert sent["async"] is False
    assert sent["metadata"] == "shp-1001-1"
    assert sent["extra"] == {"signature_confirmation": "STANDARD"}
    assert sent["address_to"] == {
        "name": "Ada Buyer",
        "street1": "5 Main St",
        "street2": "Apt 2",
        "city": "Austin",
        "state": "TX",
        "zip": "78701",
        "country": "US",
    }

    (shipment_id,) = shippo_server.shipments
    served = shippo_server.shipments[shipment_id]["rates"]
    assert [(r.carrier_account, r.service, r.delivery_days) for r in rates] == [
        ("USPS", "Priority Mail", 2),
        ("USPS", "Ground Advantage", 5),
        ("UPS", "Ground", None),
    ]
    for rate, raw in zip(rates, served, strict=True):
        assert rate.carrier == "shippo"
        assert rate.amount == Decimal(raw["amount"])
        assert rate.currency == "USD"
        assert rate.rate_id == raw["object_id"]
        assert rate.quote_id == shipment_id


async def test_shippo_buy_returns_tracking_number_and_pdf_label(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rate = (await shippo.rates(REQUEST))[0]

    purchase = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    (sale,) = shippo_server.sales
    assert purchase.tracking_number == sale.tracking_number
    assert purchase.purchase_id == sale.purchase_id
    assert purchase.label_format == "pdf"
    assert purchase.label.startswith(b"%PDF-1.4")
    assert (purchase.carrier_account, purchase.service) == ("USPS", "Priority Mail")
    assert (purchase.amount, purchase.currency) == (rate.amount, rate.currency)
    assert purchase.tracking_url is not None
    assert sale.tracking_number in purchase.tracking_url
    assert _bodies(shippo_server, "POST", "/transactions/") == [
        {
            "rate": rate.rate_id,
            "label_file_type": "PDF_4x6",
            "async": False,
            "metadata": "order-1:label:1",
        }
    ]


async def test_shippo_buy_zpl_label(shippo: Shippo, shippo_server: ShippoServer) -> None:
    rate = (await shippo.rates(REQUEST))[1]

    purchase = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="zpl")

    assert purchase.label_format == "zpl"
    assert purchase.label.startswith(b"^XA")
    assert _bodies(shippo_server, "POST", "/transactions/")[0]["label_file_type"] == "ZPLII"


async def test_shippo_second_buy_of_a_rate_returns_the_first_purchase(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rate = (await shippo.rates(REQUEST))[0]

    first = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    second = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert second == first
    assert shippo_server.purchases == 1
    lookups = [p for p in _paths(shippo_server) if p.startswith("GET /transactions/")]
    assert lookups == [f"GET /transactions/?rate={rate.rate_id}"] * 2


async def test_shippo_label_still_being_made_is_waited_for_not_bought_again(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rate = (await shippo.rates(REQUEST))[0]
    # A purchase whose answer never came back, still being made at Shippo.
    shippo_server.transactions["queued-1"] = {
        "object_id": "queued-1", "object_state": "VALID", "status": "QUEUED",
        "rate": rate.rate_id, "metadata": "order-1:label:1", "label_file_type": "PDF_4x6",
        "messages": [], "tracking_number": None, "label_url": None,
        "tracking_url_provider": None, "test": True,
    }  # fmt: skip

    with pytest.raises(CarrierError) as waiting:
        await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert waiting.value.temporary
    assert "queued-1 is still QUEUED" in str(waiting.value)
    assert shippo_server.purchases == 0


async def test_shippo_label_bought_but_not_delivered_is_not_bought_again(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rate = (await shippo.rates(REQUEST))[0]
    shippo_server.on_buy = lambda: shippo_server.fail_next("hang")
    slow = Shippo(api_key=shippo_server.api_key, base_url=shippo_server.base_url, timeout_s=0.5)
    try:
        with pytest.raises(CarrierError) as lost:
            await slow.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    finally:
        await slow.close()
    assert lost.value.temporary
    shippo_server.on_buy = None

    purchase = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert shippo_server.purchases == 1
    assert purchase.purchase_id == shippo_server.sales[0].purchase_id


async def test_shippo_failed_purchase_is_permanent_with_carrier_messages(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    rate = (await shippo.rates(REQUEST))[0]
    shippo_server.refuse_next_purchase = "The destination address is not deliverable."

    with pytest.raises(CarrierError) as error:
        await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    assert not error.value.temporary
    assert "The destination address is not deliverable." in str(error.value)
    assert shippo_server.purchases == 0


async def test_shippo_server_error_is_temporary(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    shippo_server.fail_next("500")

    with pytest.raises(CarrierError) as error:
        await shippo.rates(REQUEST)

    assert error.value.temporary


async def test_shippo_refusal_is_permanent_with_shippo_message(
    shippo: Shippo, shippo_server: ShippoServer
) -> None:
    with pytest.raises(CarrierError) as error:
        await shippo.rates(NO_STREET)

    assert not error.value.temporary
    assert "HTTP 400" in str(error.value)
    assert "address_to: street1: This field is required." in str(error.value)
    assert shippo_server.api_key not in str(error.value)


async def test_shippo_wrong_key_is_permanent_and_not_in_the_message(
    shippo_server: ShippoServer,
) -> None:
    carrier = Shippo(api_key="shippo_live_wrong_secret_42", base_url=shippo_server.base_url)
    try:
        with pytest.raises(CarrierError) as error:
            await carrier.rates(REQUEST)
    finally:
        await carrier.close()

    assert not error.value.temporary
    assert "Invalid token." in str(error.value)
    assert "shippo_live_wrong_secret_42" not in str(error.value)


@pytest.mark.parametrize("fault", ["not_json", "wrong_shape"])
async def test_shippo_malformed_answer_is_permanent(
    shippo: Shippo, shippo_server: ShippoServer, fault: Any
) -> None:
    shippo_server.fail_next(fault)

    with pytest.raises(CarrierError) as error:
        await shippo.rates(REQUEST)

    assert not error.value.temporary
    assert str(error.value) == "malformed answer from shippo"


async def test_shippo_timeout_is_temporary(shippo_server: ShippoServer) -> None:
    carrier = Shippo(api_key=shippo_server.api_key, base_url=shippo_server.base_url, timeout_s=0.3)
    shippo_server.fail_next("hang")
    try:
        with pytest.raises(CarrierError) as error:
            await carrier.rates(REQUEST)
    finally:
        await carrier.close()

    assert error.value.temporary


async def test_shippo_tracking_is_normalized(shippo: Shippo, shippo_server: ShippoServer) -> None:
    rate = (await shippo.rates(REQUEST))[0]
    purchase = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")
    shippo_server.tracking[purchase.tracking_number] = TrackingScript(
        events=[
            ("PRE_TRANSIT", None),
            ("TRANSIT", "package_departed"),
            ("TRANSIT", "out_for_delivery"),
        ],
        eta="2030-06-04T12:00:00Z",
    )

    tracking = await shippo.track(
        purchase.tracking_number, carrier_account=purchase.carrier_account
    )

    assert f"GET /tracks/usps/{purchase.tracking_number}" in _paths(shippo_server)
    assert (tracking.status, tracking.carrier_status) == ("out_for_delivery", "TRANSIT")
    assert tracking.estimated_delivery == date(2030, 6, 4)
    assert [e.status for e in tracking.events] == ["pre_transit", "in_transit", "out_for_delivery"]
    assert tracking.events[1].location == "Las Vegas, NV, 89101, US"
    assert tracking.events[1].detail == "Scan: TRANSIT"


async def test_shippo_tracking_needs_the_carrier(shippo: Shippo) -> None:
    with pytest.raises(CarrierError) as error:
        await shippo.track("9400000000000001")

    assert not error.value.temporary


@pytest.mark.parametrize(
    ("status", "substatus", "expected"),
    [
        ("PRE_TRANSIT", None, "pre_transit"),
        ("TRANSIT", None, "in_transit"),
        ("TRANSIT", "package_departed", "in_transit"),
        ("TRANSIT", "out_for_delivery", "out_for_delivery"),
        ("TRANSIT", "pickup_available", "available_for_pickup"),
        ("DELIVERED", None, "delivered"),
        ("DELIVERED", "out_for_delivery", "delivered"),
        ("RETURNED", "return_to_sender", "returned"),
        ("FAILURE", "package_lost", "failure"),
        ("UNKNOWN", None, "unknown"),
        ("SOMETHING_NEW", None, "unknown"),
    ],
)
def test_shippo_tracking_status_words(
    status: str, substatus: str | None, expected: TrackingStatus
) -> None:
    assert shippo_tracking_status(status, substatus) == expected


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("USPS", "usps"),
        ("DHL Express", "dhl_express"),
        ("Canada Post", "canada_post"),
        ("Evri", "hermes_uk"),
        ("fedex", "fedex"),
    ],
)
def test_shippo_carrier_tokens(name: str, token: str) -> None:
    assert shippo_carrier_token(name) == token


async def test_shippo_void_asks_for_a_refund(shippo: Shippo, shippo_server: ShippoServer) -> None:
    rate = (await shippo.rates(REQUEST))[0]
    purchase = await shippo.buy(rate, idempotency_key="order-1:label:1", label_format="pdf")

    await shippo.void(purchase.purchase_id)

    assert [r["transaction"] for r in shippo_server.refunds] == [purchase.purchase_id]
    assert _bodies(shippo_server, "POST", "/refunds/") == [
        {"transaction": purchase.purchase_id, "async": False}
    ]
