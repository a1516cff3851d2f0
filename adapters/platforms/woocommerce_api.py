"""Write-back to WooCommerce through its REST API (v3): a parcel that leaves becomes a
note to the customer with the carrier and tracking link, and the order is ``completed``
once nothing of it waits.

Calls go to ``<store_url>/wp-json/wc/v3/...`` with HTTP Basic authentication by the
consumer key and secret. WooCommerce has no idempotency key: before adding a parcel's
note, the order's notes are read, and one that already names the parcel's tracking number
(or its shipment, when it has none) is the answer. Marking an order completed is the same
request however often it is made.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from actors.storefront import ParcelDelivered, ParcelShipped, PlatformError, TrackingChanged
from adapters.bounded import TooLarge, read_bounded, retry_after_seconds

_MAX_ANSWER_BYTES = 2 * 1024 * 1024
_MAX_ERROR_TEXT = 300


class WooCommerceRest:
    """Calls to one store's REST API (v3), on one HTTP session."""

    def __init__(
        self, *, store_url: str, consumer_key: str, consumer_secret: str, timeout_s: float = 15.0
    ) -> None:
        self._base = f"{store_url.rstrip('/')}/wp-json/wc/v3"
        pair = base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self._authorization = f"Basic {pair}"
        self._secret = consumer_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, method: str, path: str, body: object = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data = msgspec.json.encode(body) if body is not None else None
        headers = {"Accept": "application/json", "Authorization": self._authorization}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, f"{self._base}{path}", data=data, headers=headers
            ) as answer:
                status = answer.status
                content = await read_bounded(answer, _MAX_ANSWER_BYTES)
                retry_after = answer.headers.get("Retry-After")
        except TooLarge:
            raise PlatformError("malformed answer from WooCommerce", temporary=False) from None
        except TimeoutError:
            raise PlatformError("WooCommerce did not answer in time", temporary=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            text = f"WooCommerce unreachable: {type(exc).__name__}"
            raise PlatformError(text, temporary=True) from None
        if status == 429 or status >= 500:
            raise PlatformError(
                f"WooCommerce answered HTTP {status}",
                temporary=True,
                retry_after_s=retry_after_seconds(retry_after),
            )
        if not 200 <= status < 300:
            raise PlatformError(
                f"WooCommerce refused the call (HTTP {status}){self._detail(content)}",
                temporary=False,
            )
        try:
            return msgspec.json.decode(content)
        except msgspec.DecodeError:
            raise PlatformError("malformed answer from WooCommerce", temporary=False) from None

    def _detail(self, content: bytes) -> str:
        """WooCommerce's own error message (``{"code", "message", "data"}``)."""
        try:
            answer = msgspec.json.decode(content)
        except msgspec.DecodeError:
            return ""
        if not isinstance(answer, dict) or not answer.get("message"):
            return ""
        text = " ".join(str(answer["message"]).split())
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return f": {text[:_MAX_ERROR_TEXT]}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WooCommerceApi:
    """One store's order notes and statuses (:class:`actors.storefront.Storefront`)."""

    def __init__(self, api: WooCommerceRest) -> None:
        self._api = api

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        return await self._api.call(method, path, body)

    async def close(self) -> None:
        await self._api.close()

    async def parcel_delivered(self, delivered: ParcelDelivered) -> str:
        """A private note for the store's staff that the parcel arrived (a customer note
        would mail the customer, who knows), unless the order has one already."""
        text = (
            f"Parcel {delivered.tracking_number} delivered on "
            f"{delivered.delivered_at.date().isoformat()}."
        )
        return await self._note_once(
            delivered.external_order_id, lambda note: note == text, lambda: text, customer=False
        )

    async def tracking_changed(self, changed: TrackingChanged) -> str:
        """A note to the customer with the parcel's new tracking number and link, unless
        a note names that number already."""
        mark = changed.tracking_number

        def text() -> str:
            which = "Your parcel"
            if changed.parcels > 1:
                which = f"Parcel {changed.parcel} of {changed.parcels}"
            words = f"{which} now travels under tracking number {mark}"
            if changed.carrier:
                words += f" with {changed.carrier}"
            return words + (f": {changed.tracking_url}." if changed.tracking_url else ".")

        return await self._note_once(
            changed.external_order_id, lambda note: mark in note, text, customer=True
        )

    async def parcel_shipped(self, parcel: ParcelShipped) -> str:
        mark = parcel.tracking_number or parcel.shipment_id
        done = await self._note_once(
            parcel.external_order_id,
            lambda note: mark in note,
            lambda: _note_text(parcel),
            customer=True,
        )
        if parcel.all_shipped:
            await self._call("PUT", f"/orders/{parcel.external_order_id}", {"status": "completed"})
        return done

    async def _note_once(
        self,
        order: str,
        written: Callable[[str], bool],
        text: Callable[[], str],
        *,
        customer: bool,
    ) -> str:
        """The order's note that ``written`` recognises, added (with ``text``) when it has
        none: WooCommerce has no idempotency key, so a repeated call finds its first note."""
        if not order.isdigit():
            raise PlatformError(f"WooCommerce order id {order!r} is not a number", temporary=False)
        notes = await self._call("GET", f"/orders/{order}/notes")
        if not isinstance(notes, list):
            raise PlatformError("malformed answer from WooCommerce", temporary=False)
        found = next(
            (n for n in notes if isinstance(n, dict) and written(str(n.get("note", "")))), None
        )
        if found is None:
            note = {"note": text(), "customer_note": customer}
            found = await self._call("POST", f"/orders/{order}/notes", note)
        if not isinstance(found, dict) or "id" not in found:
            raise PlatformError("malformed answer from WooCommerce", temporary=False)
        return f"note {found['id']}"


def _note_text(parcel: ParcelShipped) -> str:
    """What the customer reads on the order: the parcel, its carrier and its tracking."""
    which = f"Parcel {parcel.parcel} of {parcel.parcels}" if parcel.parcels > 1 else "Your order"
    text = f"{which} has shipped"
    if parcel.carrier:
        text += f" with {parcel.carrier}"
    if parcel.tracking_number:
        text += f", tracking number {parcel.tracking_number}"
    if parcel.tracking_url:
        text += f": {parcel.tracking_url}"
    if not parcel.tracking_number:
        text += f" (shipment {parcel.shipment_id})"
    return text + "."
