"""Write-back to Shopify through its GraphQL Admin API: a parcel that leaves becomes a
fulfillment of the order's fulfillment orders, with its tracking.

Each call is a POST of ``{"query", "variables"}`` to ``<admin_url>/admin/api/<version>/
graphql.json`` with the ``X-Shopify-Access-Token`` header. Shopify answers 200 even when
it refuses: a query over the shop's cost budget comes back with a ``THROTTLED`` error and
the budget's ``throttleStatus`` (tried again once enough is restored), and a mutation it
will not carry out names why in its ``userErrors`` (refused for good).

A parcel is made a fulfillment at most once: before creating one, the order's
fulfillments are read, and one that already carries the parcel's tracking number (made by
a try whose answer was lost, or by a process that died before recording it) is the
answer.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from actors.storefront import ParcelDelivered, ParcelShipped, PlatformError, TrackingChanged
from adapters.bounded import TooLarge, read_bounded, retry_after_seconds

_MAX_ANSWER_BYTES = 2 * 1024 * 1024
_MAX_ERROR_TEXT = 300

ORDER_QUERY = """
query OrderFulfillment($id: ID!) {
  order(id: $id) {
    id
    fulfillments(first: 50) { id trackingInfo(first: 5) { number } }
    fulfillmentOrders(first: 20) {
      nodes {
        id
        status
        lineItems(first: 100) {
          nodes { id remainingQuantity lineItem { id sku } }
        }
      }
    }
  }
}
"""

CREATE_MUTATION = """
mutation FulfillmentCreate($fulfillment: FulfillmentInput!, $message: String) {
  fulfillmentCreate(fulfillment: $fulfillment, message: $message) {
    fulfillment { id status }
    userErrors { field message }
  }
}
"""

EVENTS_QUERY = """
query FulfillmentEvents($id: ID!) {
  order(id: $id) {
    id
    fulfillments(first: 50) {
      id
      trackingInfo(first: 5) { number }
      events(first: 50) { nodes { id status } }
    }
  }
}
"""

EVENT_MUTATION = """
mutation FulfillmentEventCreate($event: FulfillmentEventInput!) {
  fulfillmentEventCreate(fulfillmentEvent: $event) {
    fulfillmentEvent { id status }
    userErrors { field message }
  }
}
"""

TRACKING_MUTATION = """
mutation FulfillmentTrackingInfoUpdate(
  $fulfillmentId: ID!, $trackingInfoInput: FulfillmentTrackingInput!, $notifyCustomer: Boolean
) {
  fulfillmentTrackingInfoUpdate(
    fulfillmentId: $fulfillmentId, trackingInfoInput: $trackingInfoInput,
    notifyCustomer: $notifyCustomer
  ) {
    fulfillment { id }
    userErrors { field message }
  }
}
"""

# Fulfillment orders whose items can still be fulfilled.
_OPEN = frozenset({"OPEN", "IN_PROGRESS", "SCHEDULED"})


class ShopifyGraphql:
    """Calls to one shop's GraphQL Admin API, on one HTTP session."""

    def __init__(
        self, *, admin_url: str, access_token: str, api_version: str, timeout_s: float = 15.0
    ) -> None:
        self._url = f"{admin_url.rstrip('/')}/admin/api/{api_version}/graphql.json"
        self._token = access_token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of a GraphQL call; throttling and failures as PlatformError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {
            "X-Shopify-Access-Token": self._token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        body = msgspec.json.encode({"query": query, "variables": variables})
        try:
            async with self._session.post(self._url, data=body, headers=headers) as answer:
                status = answer.status
                content = await read_bounded(answer, _MAX_ANSWER_BYTES)
                retry_after = answer.headers.get("Retry-After")
        except TooLarge:
            raise PlatformError(
                "malformed answer from Shopify: too large", temporary=False
            ) from None
        except TimeoutError:
            raise PlatformError("Shopify did not answer in time", temporary=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PlatformError(
                f"Shopify unreachable: {type(exc).__name__}", temporary=True
            ) from None
        if status == 429 or status >= 500:
            raise PlatformError(
                f"Shopify answered HTTP {status}",
                temporary=True,
                retry_after_s=retry_after_seconds(retry_after),
            )
        if status != 200:
            raise PlatformError(
                f"Shopify refused the call (HTTP {status}){_detail(content)}", temporary=False
            )
        try:
            answer_json = msgspec.json.decode(content)
        except msgspec.DecodeError:
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        if not isinstance(answer_json, dict):
            raise PlatformError("malformed answer from Shopify", temporary=False)
        errors = answer_json.get("errors")
        if errors:
            if _throttled(errors):
                raise PlatformError(
                    "Shopify throttled the call",
                    temporary=True,
                    retry_after_s=_restored_in(answer_json.get("extensions")),
                )
            raise PlatformError(f"Shopify refused the call: {_messages(errors)}", temporary=False)
        data = answer_json.get("data")
        if not isinstance(data, dict):
            raise PlatformError("malformed answer from Shopify", temporary=False)
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ShopifyAdmin:
    """One shop's fulfillments (:class:`actors.storefront.Storefront`)."""

    def __init__(self, api: ShopifyGraphql, *, notify_customer: bool = False) -> None:
        self._api = api
        self._notify_customer = notify_customer

    async def _call(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return await self._api.call(query, variables)

    async def close(self) -> None:
        await self._api.close()

    async def _order(self, query: str, external_order_id: str) -> dict[str, Any]:
        order_gid = f"gid://shopify/Order/{external_order_id}"
        data = await self._call(query, {"id": order_gid})
        order = data.get("order")
        if not isinstance(order, dict):
            raise PlatformError(f"Shopify has no order {order_gid}", temporary=False)
        return order

    async def parcel_delivered(self, delivered: ParcelDelivered) -> str:
        """A ``DELIVERED`` event on the parcel's fulfillment (found by its tracking
        number), unless it has one already."""
        order = await self._order(EVENTS_QUERY, delivered.external_order_id)
        try:
            fulfillment = _with_tracking(order, delivered.tracking_number)
            if fulfillment is None:
                raise _not_made_yet()
            for event in (fulfillment.get("events") or {}).get("nodes") or []:
                if event.get("status") == "DELIVERED":
                    found: str = event["id"]
                    return found
            fulfillment_id = fulfillment["id"]
        except (KeyError, TypeError, AttributeError):
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        event_input = {
            "fulfillmentId": fulfillment_id,
            "status": "DELIVERED",
            "happenedAt": delivered.delivered_at.isoformat(),
        }
        created = await self._call(EVENT_MUTATION, {"event": event_input})
        return _made(created, "fulfillmentEventCreate", "fulfillmentEvent", "the delivery event")

    async def tracking_changed(self, changed: TrackingChanged) -> str:
        """The parcel's fulfillment (found by its old tracking number) takes the new one
        (``fulfillmentTrackingInfoUpdate``); one that has it already is the answer."""
        order = await self._order(ORDER_QUERY, changed.external_order_id)
        try:
            done = _with_tracking(order, changed.tracking_number)
            if done is not None:
                found: str = done["id"]
                return found
            before = _with_tracking(order, changed.was) if changed.was else None
            if before is None:
                raise _not_made_yet()
            fulfillment_id = before["id"]
        except (KeyError, TypeError, AttributeError):
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        tracking = {"number": changed.tracking_number}
        if changed.carrier:
            tracking["company"] = changed.carrier
        if changed.tracking_url:
            tracking["url"] = changed.tracking_url
        updated = await self._call(
            TRACKING_MUTATION,
            {
                "fulfillmentId": fulfillment_id,
                "trackingInfoInput": tracking,
                "notifyCustomer": self._notify_customer,
            },
        )
        return _made(updated, "fulfillmentTrackingInfoUpdate", "fulfillment", "the tracking number")

    async def parcel_shipped(self, parcel: ParcelShipped) -> str:
        order = await self._order(ORDER_QUERY, parcel.external_order_id)
        try:
            done = _fulfilled_before(order, parcel.tracking_number)
            if done is not None:
                return done
            wanted = _line_items(order, parcel)
        except (KeyError, TypeError, ValueError):
            raise PlatformError("malformed answer from Shopify", temporary=False) from None
        fulfillment: dict[str, Any] = {
            "lineItemsByFulfillmentOrder": wanted,
            "notifyCustomer": self._notify_customer,
        }
        if parcel.tracking_number:
            tracking = {"number": parcel.tracking_number}
            if parcel.carrier:
                tracking["company"] = parcel.carrier
            if parcel.tracking_url:
                tracking["url"] = parcel.tracking_url
            fulfillment["trackingInfo"] = tracking
        message = f"parcel {parcel.parcel} of {parcel.parcels}" if parcel.parcels > 1 else None
        created = await self._call(
            CREATE_MUTATION, {"fulfillment": fulfillment, "message": message}
        )
        return _made(created, "fulfillmentCreate", "fulfillment", "the fulfillment")


def _not_made_yet() -> PlatformError:
    # The parcel's fulfillment is not made yet (that call waits): this one waits too.
    return PlatformError(
        "Shopify has no fulfillment with the parcel's tracking number yet",
        temporary=True,
        retry_after_s=60.0,
    )


def _made(data: dict[str, Any], mutation: str, made: str, what: str) -> str:
    """The id of what a mutation made; its ``userErrors`` refuse it for good."""
    try:
        payload = data[mutation]
        errors = payload.get("userErrors") or []
        if errors:
            text = "; ".join(str(e.get("message", "")) for e in errors)
            raise PlatformError(f"Shopify refused {what}: {text}", temporary=False)
        found: str = payload[made]["id"]
    except (KeyError, TypeError, AttributeError):
        raise PlatformError("malformed answer from Shopify", temporary=False) from None
    return found


def _with_tracking(order: dict[str, Any], tracking_number: str) -> dict[str, Any] | None:
    for fulfillment in order["fulfillments"]:
        numbers = {info.get("number") for info in fulfillment.get("trackingInfo") or []}
        if tracking_number in numbers:
            found: dict[str, Any] = fulfillment
            return found
    return None


def _fulfilled_before(order: dict[str, Any], tracking_number: str | None) -> str | None:
    """The order's fulfillment that already carries ``tracking_number``, if any."""
    if not tracking_number:
        return None
    for fulfillment in order["fulfillments"]:
        numbers = {info.get("number") for info in fulfillment.get("trackingInfo") or []}
        if tracking_number in numbers:
            found: str = fulfillment["id"]
            return found
    return None


def _line_items(order: dict[str, Any], parcel: ParcelShipped) -> list[dict[str, Any]]:
    """The parcel's units as fulfillment order line items, by the order's line item ids
    (by sku for a line without one), from what each still has to fulfil."""
    by_line: dict[str, int] = {}
    by_sku: dict[str, int] = {}
    for line in parcel.lines:
        if line.external_line_id:
            key = f"gid://shopify/LineItem/{line.external_line_id}"
            by_line[key] = by_line.get(key, 0) + line.units
        else:
            by_sku[line.sku] = by_sku.get(line.sku, 0) + line.units
    chosen: list[dict[str, Any]] = []
    for fulfillment_order in order["fulfillmentOrders"]["nodes"]:
        if fulfillment_order["status"] not in _OPEN:
            continue
        items = []
        for item in fulfillment_order["lineItems"]["nodes"]:
            remaining = int(item["remainingQuantity"])
            line = item["lineItem"]
            for wanted, key in ((by_line, line["id"]), (by_sku, line.get("sku"))):
                units = min(remaining, wanted.get(key, 0)) if key else 0
                if units:
                    wanted[key] -= units
                    remaining -= units
                    items.append({"id": item["id"], "quantity": units})
        if items:
            chosen.append(
                {"fulfillmentOrderId": fulfillment_order["id"], "fulfillmentOrderLineItems": items}
            )
    left = {k: v for k, v in (*by_line.items(), *by_sku.items()) if v}
    if left or not chosen:
        what = ", ".join(f"{k} x{v}" for k, v in left.items()) or "the parcel's items"
        raise PlatformError(f"Shopify has no open fulfillment order for {what}", temporary=False)
    return chosen


def _throttled(errors: Any) -> bool:
    return isinstance(errors, list) and any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    )


def _restored_in(extensions: Any) -> float:
    """Seconds until the shop's budget holds the refused query's cost again."""
    try:
        cost = extensions["cost"]
        status = cost["throttleStatus"]
        needed = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return max(1.0, needed / float(status["restoreRate"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 2.0


def _messages(errors: Any) -> str:
    if isinstance(errors, list):
        text = "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors
        )
    else:
        text = str(errors)
    return " ".join(text.split())[:_MAX_ERROR_TEXT]


def _detail(content: bytes) -> str:
    try:
        answer = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return ""
    if isinstance(answer, dict) and answer.get("errors"):
        return f": {_messages(answer['errors'])}"
    return ""
