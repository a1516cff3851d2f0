"""The HTTP server: platform webhooks, health, metrics and the admin API (aiohttp).

Every answer is JSON (metrics aside) and never carries a stack trace. A webhook is
verified on its raw bytes before anything else is read from it; it is answered 202 only
once stored, 200 with a reason when ignored or a repeat, 401 when unsigned or forged, 400
when malformed (not UTF-8 among it), 413 when too large, 415 when sent as something other
than JSON, and 503 while the store is away or the daemon is stopping, so the platform
retries.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisClusterException, RedisError

from actors.errors import OrderdError
from actors.mail import Mail
from actors.notify.feedback import (
    bad_comment_page,
    comment_of,
    not_found_page,
    rating_page,
    read_token,
    thank_you_page,
    token_id,
    unsubscribed_page,
)
from actors.notify.feedback import unsubscribe_page as unsubscribe_page_for
from actors.order.messages import Packed, Picked, ShortPicked
from actors.order.types import is_valid_sku
from adapters.carriers.webhooks import (
    TrackingUpdate,
    parse_easypost,
    parse_shippo,
    verify_easypost,
    verify_shippo,
)
from adapters.platforms import MalformedPayload, generic, shopify, woocommerce
from adapters.platforms.normalize import require_utf8
from adapters.platforms.signatures import verify_generic, verify_shopify, verify_woocommerce
from adapters.postgres import notifications, orders
from adapters.redis.client import RedisClient
from adapters.stock.allocator import Allocator
from adapters.wms.callbacks import parse_callback
from daemon.dashboard import Dashboard
from daemon.intake import ForOrder, Intake, StoreUnavailable, Tracked
from daemon.settings import CarrierAccount, Settings, WebhookSource

log = logging.getLogger("orderd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Context:
    """What the handlers need, built once by the daemon."""

    settings: Settings
    pool: Any
    redis: RedisClient
    intake: Intake
    allocator: Allocator
    mail: Mail
    # "ok", or why the order actors are not ready (not reading, or orders not moving).
    ready: Callable[[], str] = lambda: "ok"
    # The key that signs rating links, and the clock their expiry is read by.
    feedback_secrets: Callable[[], list[str]] = lambda: []
    clock: Callable[[], float] = time.time
    metrics: Callable[[], Awaitable[bytes]] | None = None
    draining: bool = False
    answers: dict[str, int] = field(default_factory=dict)


CONTEXT = web.AppKey("context", Context)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


def _error(status: int, reason: str) -> web.Response:
    return _json(status, {"error": reason})


@web.middleware
async def _answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = request.app[CONTEXT]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    except StoreUnavailable:
        response = _error(503, "the order store is unavailable; retry later")
    except Exception:
        # Logged here with its traceback; the caller learns only that it may retry.
        log.exception("unexpected error answering %s %s", request.method, request.path)
        response = _error(503, "temporarily unavailable; retry later")
    key = f"{request.method} {_route(request)} {response.status}"
    context.answers[key] = context.answers.get(key, 0) + 1
    return response


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


async def _body(request: web.Request) -> bytes:
    limit = request.app[CONTEXT].settings.http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    return await request.read()


# What HTTP clients label a body with when its sender named no type (aiohttp and requests:
# octet-stream; curl -d, urllib and PHP: form-urlencoded). Such a body says no more than
# one without the header: it is read as JSON, and refused (400) when it is not.
_UNLABELLED = frozenset({"application/octet-stream", "application/x-www-form-urlencoded"})
NOT_JSON = "Content-Type: must be application/json (UTF-8)"


def sent_as_json(media_type: str, charset: str | None) -> bool:
    """True when a body with this Content-Type may be read as JSON: ``application/json``
    or a ``+json`` type, or a client's default label, in UTF-8 (JSON's only charset, RFC
    8259) when a charset is given. ``media_type`` and ``charset`` as aiohttp parses them
    (no header reads as ``application/octet-stream``)."""
    media_type = media_type.lower()
    json_type = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if not json_type and media_type not in _UNLABELLED:
        return False
    return charset is None or charset.lower() in ("utf-8", "utf8")


def _header(request: web.Request, name: str) -> str | None:
    """A header's value; raises :class:`MalformedPayload` when its bytes are not UTF-8.

    aiohttp keeps such bytes as lone surrogates, which no encoder (msgspec's for the
    inbox row, asyncpg's) takes: one such header would fail the batch stored with it.
    """
    value = request.headers.get(name)
    if value is not None and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise MalformedPayload(name, "not valid UTF-8") from None
    return value


def _platform_secrets(name: str) -> Callable[[Settings], list[str] | None]:
    def secrets(settings: Settings) -> list[str] | None:
        source: WebhookSource = getattr(settings.webhooks, name)
        if not source.enabled:
            return None
        return [s for s in (source.secret, *source.previous_secrets) if s]

    return secrets


def _wms_secrets(settings: Settings) -> list[str] | None:
    # Open whenever a secret is set: an HTTP WMS, or packers confirming from a scanner.
    wms = settings.wms
    return [s for s in (wms.secret, *wms.previous_secrets) if s] or None


def _webhook(
    name: str,
    verify: Callable[[bytes, str | None, list[str]], bool],
    signature_header: str,
    parse: Callable[[bytes, str | None], Any],
    delivery_headers: tuple[str, str | None],
    topic_header: str | None = None,
    secrets_for: Callable[[Settings], list[str] | None] | None = None,
) -> Handler:
    """An order or callback webhook; ``parse`` gets the body and the ``topic_header``."""
    find_secrets = secrets_for or _platform_secrets(name)

    async def handle(request: web.Request) -> web.StreamResponse:
        context = request.app[CONTEXT]
        secrets = find_secrets(context.settings)
        if secrets is None:
            return _error(404, f"{name} webhooks are not enabled")
        if context.draining:
            return _error(503, "shutting down; retry later")
        body = await _body(request)
        if name == "woocommerce" and woocommerce.is_ping(body):
            return _json(200, {"status": "ok", "reason": "webhook ping"})
        if not sent_as_json(request.content_type, request.charset):
            return _error(415, NOT_JSON)
        if not verify(body, request.headers.get(signature_header), secrets):
            return _error(401, f"missing or invalid {signature_header}")
        delivery_header, event_header = delivery_headers
        try:
            # Checked whole, before anything is stored: a parser skips fields unread.
            require_utf8(body)
            topic = _header(request, topic_header) if topic_header else None
            delivery = _header(request, delivery_header) or hashlib.sha256(body).hexdigest()
            event = _header(request, event_header) if event_header else None
            decision = parse(body, topic)
        except MalformedPayload as exc:
            return _error(400, exc.reason)
        answer = await context.intake.accept(
            source=name,
            topic=(topic or "") if topic_header else "order",
            delivery_id=delivery,
            event_id=event,
            body=body,
            decision=decision,
        )
        return _json(answer.status, answer.body)

    return handle


def _carrier_webhook(
    name: str,
    verified: Callable[[web.Request, bytes, list[str]], bool],
    parse: Callable[[bytes], TrackingUpdate | None],
) -> Handler:
    """Tracking news from a carrier: verified, parsed, and handed to the parcel's order."""

    async def handle(request: web.Request) -> web.StreamResponse:
        context = request.app[CONTEXT]
        account: CarrierAccount = getattr(context.settings.carriers, name)
        if not account.enabled or not account.webhook_secret:
            return _error(404, f"{name} tracking webhooks are not enabled")
        if context.draining:
            return _error(503, "shutting down; retry later")
        body = await _body(request)
        if not sent_as_json(request.content_type, request.charset):
            return _error(415, NOT_JSON)
        if not verified(request, body, [account.webhook_secret]):
            return _error(401, f"missing or invalid {name} webhook signature")
        try:
            require_utf8(body)
            update = parse(body)
        except MalformedPayload as exc:
            return _error(400, exc.reason)
        if update is None:
            return _json(200, {"status": "ignored", "reason": "not tracking news"})
        answer = await context.intake.accept(
            source=name,
            topic="tracking",
            delivery_id=update.event_id or hashlib.sha256(body).hexdigest(),
            event_id=None,
            body=body,
            decision=Tracked(update),
        )
        return _json(answer.status, answer.body)

    return handle


async def feedback_page(request: web.Request) -> web.StreamResponse:
    """A rating link from a review request: a page whose button records the score. The
    link itself records nothing, so a mail scanner that follows every link rates nothing."""
    context = request.app[CONTEXT]
    token = request.match_info["token"]
    score = request.query.get("score", "")
    now = datetime.fromtimestamp(context.clock(), UTC)
    order_id = read_token(token, context.feedback_secrets(), now=now)
    if order_id is None or score not in ("1", "2", "3", "4", "5"):
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    return web.Response(text=rating_page(token, int(score)), content_type="text/html")


async def feedback(request: web.Request) -> web.StreamResponse:
    """The rating page's button: the score recorded, then thanked for."""
    context = request.app[CONTEXT]
    token = request.match_info["token"]
    form = await request.post()
    score = form.get("score", "")
    now = datetime.fromtimestamp(context.clock(), UTC)
    order_id = read_token(token, context.feedback_secrets(), now=now)
    if order_id is None or not isinstance(score, str) or score not in ("1", "2", "3", "4", "5"):
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    try:
        comment = comment_of(form.get("comment"))
    except ValueError as exc:
        return web.Response(status=400, text=bad_comment_page(str(exc)), content_type="text/html")
    async with context.pool.acquire() as conn:
        stored = await conn.fetchval(
            """
            INSERT INTO feedback (order_id, score, token_id, at, comment)
            SELECT id, $2, $3, $4, $5 FROM orders WHERE id = $1
            RETURNING id
            """,
            order_id,
            int(score),
            token_id(token),
            now,
            comment,
        )
    if stored is None:
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    return web.Response(text=thank_you_page(int(score)), content_type="text/html")


async def unsubscribe_page(request: web.Request) -> web.StreamResponse:
    """An unsubscribe link from a reminder: a page whose button unsubscribes. The link
    itself changes nothing, so a mail scanner that follows every link unsubscribes no one."""
    context = request.app[CONTEXT]
    token = request.match_info["token"]
    now = datetime.fromtimestamp(context.clock(), UTC)
    if read_token(token, context.feedback_secrets(), now=now, purpose="unsubscribe") is None:
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    return web.Response(text=unsubscribe_page_for(token), content_type="text/html")


async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """The page's button, or a mail program's one-click unsubscribe (RFC 8058: a POST of
    ``List-Unsubscribe=One-Click``): the customer's address takes no more reminders."""
    context = request.app[CONTEXT]
    token = request.match_info["token"]
    now = datetime.fromtimestamp(context.clock(), UTC)
    order_id = read_token(token, context.feedback_secrets(), now=now, purpose="unsubscribe")
    if order_id is None:
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    async with context.pool.acquire() as conn:
        known = await notifications.opt_out(conn, order_id, now)
    if not known:
        return web.Response(status=404, text=not_found_page(), content_type="text/html")
    log.info("order %s: its customer unsubscribed from reminders", order_id)
    return web.Response(text=unsubscribed_page(), content_type="text/html")


def _for_order(message: Picked | Packed | ShortPicked) -> ForOrder:
    return ForOrder(message, message.shipment_id)


async def healthz(request: web.Request) -> web.StreamResponse:
    # The daemon's time: [clock] scale makes it run ahead of the wall clock.
    now = datetime.fromtimestamp(request.app[CONTEXT].clock(), UTC)
    return _json(200, {"status": "ok", "time": now.isoformat()})


async def readyz(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT]
    checks: dict[str, str] = {}
    try:
        await context.redis.ping()
        checks["redis"] = "ok"
    except (RedisError, RedisClusterException, OSError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        async with context.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    checks["consumers"] = context.ready()
    if context.draining:
        checks["daemon"] = "stopping"
    ok = all(value == "ok" for value in checks.values())
    return _json(200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": checks})


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus's text format (:mod:`daemon.metrics`)."""
    context = request.app[CONTEXT]
    if context.metrics is None:
        return _error(404, "metrics are not kept here")
    try:
        text = await context.metrics()
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        RedisError,
        RedisClusterException,
    ) as exc:
        log.warning("metrics could not be read: %s", type(exc).__name__)
        return _error(503, "metrics cannot be read now: a server is away")
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _authorised(request: web.Request) -> web.Response | None:
    token = request.app[CONTEXT].settings.admin.token
    if not token:
        return _error(404, "the admin API is not enabled")
    offered = request.headers.get("Authorization", "")
    scheme, _, value = offered.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
        return _error(401, "missing or invalid bearer token")
    return None


async def admin_order(request: web.Request) -> web.StreamResponse:
    refused = _authorised(request)
    if refused is not None:
        return refused
    context = request.app[CONTEXT]
    async with context.pool.acquire() as conn:
        try:
            order_id = await orders.resolve(conn, request.match_info["id"])
            return _json(200, await orders.view(conn, order_id))
        except orders.UnknownOrder as exc:
            return _error(404, str(exc))


async def admin_stock(request: web.Request) -> web.StreamResponse:
    refused = _authorised(request)
    if refused is not None:
        return refused
    sku = request.match_info["sku"]
    if not is_valid_sku(sku):
        return _error(400, "malformed sku")
    context = request.app[CONTEXT]
    warehouse = request.query.get("warehouse")
    if warehouse is not None and warehouse not in context.allocator.warehouses:
        return _error(400, "unknown warehouse")
    try:
        level = await context.allocator.stock(sku, warehouse)
    except OrderdError as exc:
        return _error(404, str(exc))
    return _json(200, msgspec.to_builtins(level))


class _Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    delta: int
    reason: str
    movement_id: str | None = None
    warehouse: str | None = None


async def admin_adjust(request: web.Request) -> web.StreamResponse:
    refused = _authorised(request)
    if refused is not None:
        return refused
    context = request.app[CONTEXT]
    sku = request.match_info["sku"]
    if not is_valid_sku(sku):
        return _error(400, "malformed sku")
    raw = await _body(request)
    try:
        require_utf8(raw)
        body = msgspec.json.decode(raw, type=_Adjustment)
    except MalformedPayload as exc:
        return _error(400, exc.reason)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _error(400, f"expected {{delta, reason[, movement_id, warehouse]}}: {exc}")
    if body.delta == 0 or abs(body.delta) > 1_000_000_000:
        return _error(400, "delta: a whole number from -1e9 to 1e9, not 0")
    if not body.reason.strip() or len(body.reason) > 200:
        return _error(400, "reason: 1-200 characters")
    # The ledger's text columns cannot hold a NUL character.
    for name, value in (("reason", body.reason), ("movement_id", body.movement_id)):
        if value is not None and "\x00" in value:
            return _error(400, f"{name}: must not contain NUL characters")
    if body.warehouse is not None and body.warehouse not in context.allocator.warehouses:
        return _error(400, "unknown warehouse")
    # Without an id every call is a movement of its own; send one to make retries safe.
    movement = body.movement_id or f"api-{uuid.uuid4().hex}"
    try:
        done = await context.allocator.adjust(
            sku, body.delta, movement_id=movement, reason=body.reason, warehouse=body.warehouse
        )
    except OrderdError as exc:
        return _error(409 if "already recorded" in str(exc) else 400, str(exc))
    await context.mail.tell_filled(done)
    return _json(200, msgspec.to_builtins(done))


def build_app(context: Context) -> web.Application:
    """The aiohttp application with every route of the contract."""
    app = web.Application(
        client_max_size=context.settings.http.max_body_bytes, middlewares=[_answers]
    )
    app[CONTEXT] = context
    app.router.add_post(
        "/webhooks/shopify",
        _webhook(
            "shopify",
            verify_shopify,
            "X-Shopify-Hmac-Sha256",
            shopify.parse,
            ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id"),
            topic_header="X-Shopify-Topic",
        ),
    )
    app.router.add_post(
        "/webhooks/woocommerce",
        _webhook(
            "woocommerce",
            verify_woocommerce,
            "X-WC-Webhook-Signature",
            woocommerce.parse,
            ("X-WC-Webhook-Delivery-ID", None),
            topic_header="X-WC-Webhook-Topic",
        ),
    )
    app.router.add_post(
        "/webhooks/orders",
        _webhook(
            "generic",
            verify_generic,
            "X-Orderd-Signature",
            lambda body, topic: generic.parse(body),
            ("X-Orderd-Delivery-Id", None),
        ),
    )
    app.router.add_post(
        "/webhooks/wms",
        _webhook(
            "wms",
            verify_generic,
            "X-Orderd-Signature",
            lambda body, topic: _for_order(parse_callback(body)),
            ("X-Orderd-Delivery-Id", None),
            secrets_for=_wms_secrets,
        ),
    )
    app.router.add_post(
        "/webhooks/carriers/easypost",
        _carrier_webhook(
            "easypost",
            lambda request, body, secrets: verify_easypost(
                body, request.headers.get("X-Hmac-Signature"), secrets
            ),
            parse_easypost,
        ),
    )
    app.router.add_post(
        "/webhooks/carriers/shippo",
        _carrier_webhook(
            "shippo",
            lambda request, body, secrets: verify_shippo(request.query.get("token"), secrets),
            parse_shippo,
        ),
    )
    app.router.add_get("/feedback/{token}", feedback_page)
    app.router.add_post("/feedback/{token}", feedback)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/orders/{id}", admin_order)
    app.router.add_get("/api/v1/stock/{sku}", admin_stock)
    Dashboard(context).add_routes(app)
    app.router.add_post("/api/v1/stock/{sku}/adjust", admin_adjust)
    return app
