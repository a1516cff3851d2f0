"""A WMS reached over HTTP: the request POSTed as signed JSON, answers coming back later.

The body is the :class:`FulfillmentRequest` as JSON. ``X-Orderd-Signature: sha256=<hex>``
is the HMAC-SHA256 of the body with the shared secret, and ``Idempotency-Key`` is the
shipment id, so a request delivered twice (a retry after a lost answer) is recognisable.
The WMS confirms on ``POST /webhooks/wms`` with ``picked``, ``packed`` or ``short_pick``.
When the order is cancelled after that, ``{"event": "cancel", "order_id", "shipment_id"}``
goes to the same URL (``Idempotency-Key: <shipment id>:cancel``).
"""

from __future__ import annotations

import aiohttp
import msgspec

from actors.errors import printable
from actors.order.messages import Message
from actors.shipping.warehouse import FulfillmentRequest, WmsError
from adapters.platforms.signatures import sign_generic

_encode = msgspec.json.Encoder().encode
# Worth retrying: the WMS is busy, restarting or asked us to slow down.
_TEMPORARY = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpWarehouse:
    name = "http"
    delay_s = 0.0

    def __init__(self, *, url: str, secret: str, timeout_s: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: FulfillmentRequest) -> list[Message]:
        await self._post(_encode(request), request.shipment_id)
        return []

    async def cancel(self, request: FulfillmentRequest) -> None:
        """``{"event": "cancel", "order_id", "shipment_id"}`` to the same URL."""
        body = _encode(
            {"event": "cancel", "order_id": request.order_id, "shipment_id": request.shipment_id}
        )
        await self._post(body, f"{request.shipment_id}:cancel")

    async def _post(self, body: bytes, idempotency_key: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Orderd-Signature": sign_generic(body, self._secret),
            "Idempotency-Key": idempotency_key,
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, data=body, headers=headers) as answer:
                status = answer.status
                text = (await answer.content.read(500)).decode(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WmsError(f"WMS unreachable: {type(exc).__name__}", temporary=True) from None
        if 200 <= status < 300:
            return
        detail = printable(text, 200)
        raise WmsError(f"WMS answered {status}: {detail}", temporary=status in _TEMPORARY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
