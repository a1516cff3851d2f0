"""Webhook bodies at the byte level: NUL characters, bytes that are not UTF-8, and the
Content-Type a JSON body may come with. Pure: no servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.carriers.webhooks import parse_easypost, parse_shippo
from adapters.platforms import MalformedPayload, generic, shopify, woocommerce
from adapters.platforms.normalize import require_utf8, without_nul
from adapters.wms.callbacks import parse_callback
from daemon.http import sent_as_json
from tests.unit.test_tracking import easypost_event, easypost_tracker, shippo_track_updated

PAYLOADS = Path(__file__).resolve().parent / "payloads"


def _payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (rb'{"a": "x\u0000y"}', rb'{"a": "xy"}'),
        (rb'{"a": "\u0000\u0000"}', rb'{"a": ""}'),
        (rb'{"a": "\u00001"}', rb'{"a": "1"}'),
        # An escaped backslash followed by the text u0000 is no NUL.
        (rb'{"a": "x\\u0000"}', rb'{"a": "x\\u0000"}'),
        (rb'{"a": "x\\\u0000"}', rb'{"a": "x\\"}'),
        (rb'{"a": "\u0001"}', rb'{"a": "\u0001"}'),
    ],
)
def test_nul_escapes_are_taken_out_and_nothing_else(body: bytes, expected: bytes) -> None:
    assert without_nul(body) == expected


@given(st.text())
def test_any_text_encoded_as_json_reads_back_without_its_nul_characters(value: str) -> None:
    for body in (msgspec.json.encode(value), json.dumps(value).encode()):
        assert msgspec.json.decode(without_nul(body)) == value.replace("\x00", "")


def _strings(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string value in ``data``."""
    if isinstance(data, str):
        yield path
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*path, index))


def _changed(data: Any, path: tuple[Any, ...], change: Callable[[str], str]) -> Any:
    """A copy of ``data`` with the string at ``path`` changed."""
    copy = json.loads(json.dumps(data))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = change(parent[path[-1]])
    return copy


def _nul_inside(value: str) -> str:
    return value[: len(value) // 2] + "\x00" + value[len(value) // 2 :]


PARSERS: dict[str, tuple[Any, Callable[[bytes], Any]]] = {
    "shopify paid": (
        _payload("shopify_orders_paid.json"),
        lambda body: shopify.parse(body, "orders/paid"),
    ),
    "shopify cancelled": (
        _payload("shopify_orders_cancelled.json"),
        lambda body: shopify.parse(body, "orders/cancelled"),
    ),
    "woocommerce": (
        _payload("woocommerce_order_processing.json"),
        lambda body: woocommerce.parse(body, "order.updated"),
    ),
    "generic": (_payload("generic_order.json"), generic.parse),
    "easypost": (easypost_event(easypost_tracker()), parse_easypost),
    "shippo": (shippo_track_updated(), parse_shippo),
    "wms": (
        {
            "event": "packed",
            "order_id": "ord_aaaaaaaaaaaaaaaaaaaa",
            "shipment_id": "ord_aaaaaaaaaaaaaaaaaaaa-1",
            "items": [{"sku": "MUG-BLK", "quantity": 2}],
        },
        parse_callback,
    ),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_nul_in_any_string_of_a_body_leaves_the_parsed_result_as_without_it(name: str) -> None:
    data, parse = PARSERS[name]
    clean = parse(json.dumps(data).encode())
    paths = list(_strings(data))
    assert paths
    for path in paths:
        body = json.dumps(_changed(data, path, _nul_inside)).encode()
        assert b"\\u0000" in body
        assert parse(body) == clean, path


# A string field each parser reads (a parser skips the others unread).
READ_FIELDS: dict[str, tuple[Any, ...]] = {
    "shopify paid": ("customer", "first_name"),
    "shopify cancelled": ("cancel_reason",),
    "woocommerce": ("line_items", 0, "name"),
    "generic": ("note",),
    "easypost": ("result", "tracking_details", 1, "message"),
    "shippo": ("data", "tracking_status", "status_details"),
    "wms": ("items", 0, "sku"),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_a_string_that_is_not_utf8_is_malformed_not_an_error(name: str) -> None:
    data, parse = PARSERS[name]
    marked = _changed(data, READ_FIELDS[name], lambda value: "MARK")
    body = json.dumps(marked).encode().replace(b"MARK", b"Zo\xc3\x28")
    with pytest.raises(MalformedPayload) as raised:
        parse(body)
    assert raised.value.reason == "body: not valid UTF-8"


def test_a_raw_nul_byte_is_not_json() -> None:
    body = json.dumps(_payload("generic_order.json")).encode().replace(b"Jon", b"J\x00on", 1)
    with pytest.raises(MalformedPayload) as raised:
        generic.parse(body)
    assert raised.value.reason.startswith("body: not valid JSON")


@pytest.mark.parametrize(
    "body",
    [b"{}", '{"name": "Zo\u00eb \u2603 \U0001f600"}'.encode(), b"\x00"],
)
def test_utf8_bodies_pass(body: bytes) -> None:
    require_utf8(body)


@pytest.mark.parametrize(
    "body", [b"\xff", b'"\xc3"', b'"\xed\xa0\x80"', b'"\xc0\x80"', b'"\xf4\x90\x80\x80"']
)
def test_bodies_that_are_not_utf8_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedPayload) as raised:
        require_utf8(body)
    assert raised.value.reason == "body: not valid UTF-8"


@pytest.mark.parametrize(
    ("media_type", "charset"),
    [
        ("application/json", None),
        ("application/json", "utf-8"),
        ("application/json", "UTF-8"),
        ("Application/JSON", "utf8"),
        ("application/vnd.api+json", None),
        # No Content-Type at all reads as octet-stream; clients send these when told none.
        ("application/octet-stream", None),
        ("application/x-www-form-urlencoded", None),
    ],
)
def test_json_and_unlabelled_bodies_are_read(media_type: str, charset: str | None) -> None:
    assert sent_as_json(media_type, charset)


@pytest.mark.parametrize(
    ("media_type", "charset"),
    [
        ("text/plain", None),
        ("text/plain", "utf-8"),
        ("text/json", None),
        ("application/xml", None),
        ("multipart/form-data", None),
        ("text/html", None),
        ("application/json", "iso-8859-1"),
        ("application/json", "utf-16"),
        ("application/octet-stream", "latin-1"),
    ],
)
def test_other_content_types_are_refused(media_type: str, charset: str | None) -> None:
    assert not sent_as_json(media_type, charset)
