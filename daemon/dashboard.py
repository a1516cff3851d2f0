"""``GET /dashboard``: the warehouse manager's page, and a page for each order.

Server-rendered from Jinja2 templates (``daemon/templates``) with charts drawn as inline SVG
(:mod:`daemon.charts`): nothing is fetched from the network, and the page refreshes itself.
It is behind the admin token (``[admin] token``): sent as a bearer token, or typed once
into the login form, which gives a session cookie signed with the token (so changing the
token ends every session). The figures are read from the durable record over a window of
the daemon's clock (``?days=``, 7 by default), the stock from Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from redis.exceptions import RedisClusterException, RedisError

from adapters.postgres import dashboard as queries
from adapters.postgres import listing, orders
from adapters.postgres.catalog import PostgresCatalog
from daemon import charts, report, timeline
from daemon.metrics import reason_label

if TYPE_CHECKING:
    from daemon.http import Context

log = logging.getLogger("orderd.dashboard")

COOKIE = "orderd_dashboard"
SESSION_S = 12 * 3600
REFRESH_S = 30
LOW_STOCK = 5  # units available to sell at or below which a sku is shown as low
MAX_DAYS = 90
_SESSION_CONTEXT = b"orderd dashboard session\x00"
# A page of the dashboard with its query: no other host, no scheme, no escapes.
_BACK = re.compile(r"/dashboard(/orders/[A-Za-z0-9_.#%-]{1,300})?(\?[A-Za-z0-9=&%._-]{0,200})?")

# The states in the order an order passes through them, each with its colour.
STATE_COLOURS = (
    ("received", "#bbb"),
    ("reserved", "#9cd"),
    ("partially_reserved", "#fc6"),
    ("backordered", "#f93"),
    ("fulfillment_requested", "#7ad"),
    ("picked", "#58c"),
    ("packed", "#47b"),
    ("label_created", "#36a"),
    ("shipped", "#5b8"),
    ("in_transit", "#4a7"),
    ("out_for_delivery", "#396"),
    ("delivered", "#285"),
    ("completed", "#164"),
    ("needs_attention", "#d33"),
    ("cancelled", "#888"),
    ("ignored", "#ccc"),
)

_templates = Environment(
    loader=PackageLoader("daemon", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(value: datetime | str | None) -> str:
    """A moment as the pages show it: UTC, to the minute."""
    if value is None or value == "":
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


_templates.filters.update(when=when, percent=report.percent, hours=report.hours)


def _render(name: str, status: int = 200, **values: Any) -> web.Response:
    page = _templates.get_template(name).render(**values)
    return web.Response(
        status=status,
        text=page,
        content_type="text/html",
        # The pages hold customers' orders: never cached, never framed, no outside resources.
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; form-action 'self'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        },
    )


# -- the session --------------------------------------------------------------------------


def session_value(token: str, expires: int) -> str:
    """The cookie for a session ending at ``expires`` (Unix seconds), signed with ``token``."""
    tag = hmac.new(token.encode(), _SESSION_CONTEXT + str(expires).encode(), hashlib.sha256)
    return f"{expires}.{tag.hexdigest()}"


def session_valid(token: str, value: str, now: float) -> bool:
    """Whether ``value`` is a session cookie signed with ``token`` and not expired at ``now``."""
    expires, _, _tag = value.partition(".")
    if not token or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    expected = session_value(token, int(expires))
    return hmac.compare_digest(expected.encode(), value.encode()) and now < int(expires)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def signed_in(request: web.Request, token: str) -> bool:
    """Whether the request carries the admin token, or a session signed with it."""
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(offered.encode(), token.encode()):
        return True
    # Sessions run on the wall clock: the daemon's own may be scaled (the demo's is).
    return session_valid(token, request.cookies.get(COOKIE, ""), time.time())


def back_to(value: object) -> str:
    """Where to go once signed in: a page of the dashboard, never anywhere else."""
    if isinstance(value, str) and _BACK.fullmatch(value):
        return value
    return "/dashboard"


def _closed() -> web.Response:
    return _render(
        "message.html",
        status=404,
        title="Dashboard not enabled",
        message="The dashboard is behind the admin token: set [admin] token to open it.",
    )


def _secure(request: web.Request) -> bool:
    # Behind the HTTPS server in front of orderd the cookie must only travel over HTTPS.
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


# -- the figures -----------------------------------------------------------------------


def days_of(value: str | None) -> int:
    """The ``days`` query parameter: a whole number of days from 1 to :data:`MAX_DAYS`."""
    if value is None or value == "":
        return 7
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_DAYS:
        raise ValueError(f"days: a whole number from 1 to {MAX_DAYS}")
    return int(value)


def day_columns(since: datetime, until: datetime) -> list[date]:
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def state_chart(counts: list[queries.DayCount], days: list[date]) -> Any:
    """Orders paid each day, stacked by the state they are in now."""
    index = {day: i for i, day in enumerate(days)}
    known = dict(STATE_COLOURS)
    series: dict[str, list[int]] = {}
    for row in counts:
        values = series.setdefault(row.state, [0] * len(days))
        if row.day in index:
            values[index[row.day]] += row.orders
    ordered = [(s, known[s], series[s]) for s, _ in STATE_COLOURS if s in series]
    ordered += [(s, "#999", v) for s, v in series.items() if s not in known]
    return charts.stacked_bars(
        [d.strftime("%b %d") for d in days],
        [(name.replace("_", " "), colour, values) for name, colour, values in ordered],
        title="Orders paid each day, by their state now",
    )


def bucket_labels() -> list[str]:
    edges = queries.HOUR_EDGES
    return [f"{a}-{b} h" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]} h+"]


class Dashboard:
    """The dashboard's handlers, over the daemon's shared context."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._catalog = PostgresCatalog(context.pool)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/login", self.login_page)
        app.router.add_post("/dashboard/login", self.login)
        app.router.add_post("/dashboard/logout", self.logout)
        app.router.add_get("/dashboard/orders/{id}", self.order_page)

    @property
    def _token(self) -> str:
        return self._context.settings.admin.token

    def _refused(self, request: web.Request) -> web.Response | None:
        """The answer to a request not signed in, or None when it is."""
        if not self._token:
            return _closed()
        if signed_in(request, self._token):
            return None
        # Back to this page once signed in.
        return _see_other(f"/dashboard/login?{urlencode({'next': request.path_qs})}")

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if not self._token:
            return _closed()
        return _render("login.html", title="Sign in", next=back_to(request.query.get("next")))

    async def login(self, request: web.Request) -> web.StreamResponse:
        token = self._token
        if not token:
            return _closed()
        form = await request.post()
        offered = form.get("token", "")
        if not isinstance(offered, str) or not hmac.compare_digest(
            offered.strip().encode(), token.encode()
        ):
            log.warning("dashboard: a sign-in with a wrong token from %s", request.remote)
            return _render(
                "login.html",
                status=401,
                title="Sign in",
                error="That is not the token.",
                next=back_to(form.get("next")),
            )
        expires = int(time.time()) + SESSION_S
        answer = _see_other(back_to(form.get("next")))
        answer.set_cookie(
            COOKIE,
            session_value(token, expires),
            max_age=SESSION_S,
            path="/dashboard",
            httponly=True,
            samesite="Strict",
            secure=_secure(request),
        )
        return answer

    async def logout(self, request: web.Request) -> web.StreamResponse:
        answer = _see_other("/dashboard/login")
        answer.del_cookie(COOKIE, path="/dashboard")
        return answer

    async def page(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            days = days_of(request.query.get("days"))
        except ValueError as exc:
            return _render("message.html", status=400, title="Bad request", message=str(exc))
        context = self._context
        until = datetime.fromtimestamp(context.clock(), UTC)
        since = until - timedelta(days=days)
        try:
            async with context.pool.acquire() as conn:
                figures = await report.figures(conn, since, until)
                by_day = await queries.orders_by_day(conn, since, until)
                buckets = await queries.time_buckets(conn, since, until)
                ratings = await queries.ratings_by_day(conn, since, until)
                comments = await queries.comments(conn)
                delays = await queries.open_delays(conn)
                held = await listing.listed(conn, held=True, limit=50)
                waiting = await queries.waiting_for_stock(conn)
            low, stock_note = await self._low_stock()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("dashboard: the order store could not be read: %s", type(exc).__name__)
            return _render(
                "message.html",
                status=503,
                title="Dashboard unavailable",
                message="The order store cannot be read now; this page tries again by itself.",
                refresh=REFRESH_S,
            )
        columns = day_columns(since, until)
        rated = {r.day: r for r in ratings}
        labels = bucket_labels()
        return _render(
            "dashboard.html",
            title="orderd",
            refresh=REFRESH_S,
            days=days,
            since=since,
            until=until,
            figures=figures,
            orders_total=sum(figures["orders"].values()),
            state_chart=state_chart(by_day, columns),
            shipped_chart=charts.bars(
                labels, buckets["shipped"], title="Paid to shipped, orders", colour="#47b"
            ),
            delivered_chart=charts.bars(
                labels, buckets["delivered"], title="Paid to delivered, orders", colour="#285"
            ),
            csat_chart=charts.shares(
                [d.strftime("%b %d") for d in columns],
                [
                    (rated[d].satisfied / rated[d].rated) if d in rated and rated[d].rated else None
                    for d in columns
                ],
                title="Share of ratings that are 4 or 5, by day",
            ),
            comments=comments,
            delays=delays,
            held=[(order, reason_label(order.reason)) for order in held],
            waiting=waiting,
            low=low,
            low_limit=LOW_STOCK,
            stock_note=stock_note,
        )

    async def _low_stock(self) -> tuple[list[dict[str, Any]], str | None]:
        """Skus with :data:`LOW_STOCK` units or fewer to sell, per warehouse, from Redis."""
        try:
            available = await self._context.allocator.available()
        except (RedisError, RedisClusterException, OSError) as exc:
            return [], f"stock cannot be read now ({type(exc).__name__})"
        low = sorted(
            (units, warehouse, sku)
            for (warehouse, sku), units in available.items()
            if units <= LOW_STOCK
        )[:50]
        products = await self._catalog.products({sku for _, _, sku in low})
        return [
            {
                "sku": sku,
                "name": products[sku].name if sku in products else None,
                "warehouse": warehouse,
                "available": units,
            }
            for units, warehouse, sku in low
        ], None

    async def order_page(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        async with self._context.pool.acquire() as conn:
            try:
                order_id = await orders.resolve(conn, request.match_info["id"])
            except orders.UnknownOrder:
                return _render(
                    "message.html", status=404, title="No such order", message="No such order."
                )
            view = await orders.view(conn, order_id)
            events = await queries.order_events(conn, order_id)
        rows = []
        for seq, kind, at, data in events:
            event: Mapping[str, Any] = json.loads(data)
            rows.append({"seq": seq, "type": kind, "at": at, "words": timeline.describe(event)})
        return _render(
            "order.html",
            title=f"Order {view['name'] or view['id']}",
            refresh=REFRESH_S,
            order=view,
            events=rows,
        )
