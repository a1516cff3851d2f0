"""The sandbox carrier: rates from a table, real labels, tracking numbers with a check digit.

It behaves as a carrier account does, with its side of things kept in PostgreSQL
(``sandbox_shipments``): every quote is stored with its parcel and addresses, and a label
is bought at most once per quote, so asking again after a crash returns the first label.
Nothing leaves the machine.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from actors.batching import Coalescer
from actors.shipping.calendar import BusinessCalendar, add_business_days, ship_date
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
from actors.shipping.selection import Zone, zone_for
from adapters.carriers.labels import LabelData, render_pdf, render_zpl
from adapters.carriers.tracking_numbers import sandbox_tracking_number
from adapters.carriers.webhooks import TrackingUpdate
from adapters.errors import ConfigError
from adapters.postgres.rows import Raw, Rows

BUILT_IN_RATES = Path(__file__).with_name("sandbox_rates.toml")
TRACKING_URL = "https://sandbox.orderd.invalid/track/{}"
# The sandbox's own working days: Monday to Friday, parcels collected until 17:00 UTC.
_WEEKDAYS = BusinessCalendar(timezone="UTC", cutoff=time(17, 0))
_LATE_BY_DAYS = 2  # how late a delayed parcel arrives
_QUOTES = Rows("quote_id text", "request jsonb")
_BOUGHT = Rows(
    "quote_id text", "idempotency_key text", "tracking_number text", "service text",
    "amount numeric", "currency text", "transit_days int", "label_format text",
    "bought_at timestamptz", "fate text", "delivery_date date",
)  # fmt: skip


class Journey(Struct, frozen=True):
    """One step of a sandbox parcel's way, as its tracking reports it."""

    at: datetime
    status: TrackingStatus
    carrier_status: str
    detail: str
    location: str
    estimated_delivery: date | None = None


def journey(bought_at: datetime, delivery: date, fate: str) -> list[Journey]:
    """Every scan a sandbox parcel gets: picked up, sorted, a scan a day on its way, out
    for delivery, then delivered on ``delivery``: two working days late when ``fate`` is
    "delayed" (the carrier's estimate moves at the sorting scan), or a failed attempt when
    it is "exception"."""
    late = fate == "delayed"
    arrives = add_business_days(_WEEKDAYS, delivery, _LATE_BY_DAYS) if late else delivery
    picked = bought_at + timedelta(hours=2)
    sorted_at = picked + timedelta(hours=10)
    steps = [
        Journey(picked, "in_transit", "picked_up", "Picked up by Sandbox Post", "Springfield, IL"),
        Journey(
            sorted_at, "in_transit", "arrived_at_facility", "Arrived at the sorting centre",
            "Chicago, IL", estimated_delivery=arrives,
        ),
    ]  # fmt: skip
    day = sorted_at.date() + timedelta(days=1)
    while day < arrives:
        steps.append(
            Journey(datetime.combine(day, time(6, 0), UTC), "in_transit", "in_transit",
                    "On its way", "In transit")
        )  # fmt: skip
        day += timedelta(days=1)
    morning = max(datetime.combine(arrives, time(8, 0), UTC), sorted_at + timedelta(hours=1))
    steps.append(
        Journey(morning, "out_for_delivery", "out_for_delivery", "Out for delivery", "Local depot")
    )
    afternoon = morning + timedelta(hours=6)
    if fate == "exception":
        steps.append(
            Journey(afternoon, "failure", "delivery_failed",
                    "Delivery attempt failed: no access to the building", "Local depot")
        )  # fmt: skip
    else:
        steps.append(Journey(afternoon, "delivered", "delivered", "Delivered", "Front door"))
    return steps


class Service(Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    carrier: str
    transit_days: dict[str, int]
    prices: dict[str, list[tuple[int, Decimal]]]


class RateTable(Struct, frozen=True, forbid_unknown_fields=True):
    currency: str
    services: list[Service]


def load_rate_table(path: str | Path = BUILT_IN_RATES) -> RateTable:
    """Read and check a rate table; a bad one is a :class:`ConfigError` naming the file."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        table = msgspec.convert(raw, RateTable)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such rate table") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the rate table: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for service in table.services:
        for zone, brackets in service.prices.items():
            weights = [w for w, _ in brackets]
            if weights != sorted(weights) or zone not in service.transit_days:
                raise ConfigError(
                    f"{path}: service {service.name} zone {zone}: brackets must rise in weight "
                    "and the zone needs transit_days"
                )
    return table


class _Quote(Struct, frozen=True):
    request: RateRequest
    zone: str


class SandboxCarrier:
    name = "sandbox"

    def __init__(
        self,
        *,
        pool: Any,
        table: RateTable,
        zones: tuple[Zone, ...] = (),
        clock: Any = None,
        delay_rate: float = 0.0,
        exception_rate: float = 0.0,
    ) -> None:
        self._pool = pool
        self._table = table
        self._zones = zones
        self._clock = clock
        self._delay_rate = delay_rate
        self._exception_rate = exception_rate
        # Quotes and purchases made at the same time are stored in one statement each,
        # as a carrier's own database would batch them.
        self._quotes: Coalescer[tuple[str, bytes], None] = Coalescer(self._store_quotes)
        self._purchases: Coalescer[tuple[Any, ...], Any] = Coalescer(self._store_purchases)

    async def rates(self, request: RateRequest) -> list[Rate]:
        zone = zone_for(
            request.ship_to.country,
            request.ship_to.postal_code,
            self._zones,
            request.ship_from.country,
        )
        quote_id = f"sbx_{request.shipment_id}"
        await self._quotes.submit((quote_id, msgspec.json.encode(_Quote(request, zone))))
        rates = []
        leaves = ship_date(_WEEKDAYS, self._now())
        for service in self._table.services:
            price = _price(service, zone, request.parcel.weight_g)
            if price is None:
                continue
            if request.signature:
                price += Decimal("2.50")
            rates.append(
                Rate(
                    carrier=self.name,
                    carrier_account=service.carrier,
                    service=service.name,
                    amount=price,
                    currency=self._table.currency,
                    delivery_days=service.transit_days[zone],
                    delivery_date=add_business_days(_WEEKDAYS, leaves, service.transit_days[zone]),
                    rate_id=f"{quote_id}:{service.name}",
                    quote_id=quote_id,
                )
            )
        return rates

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        now = self._now()
        transit = rate.delivery_days or 1
        row = await self._purchases.submit(
            (
                rate.quote_id,
                idempotency_key,
                sandbox_tracking_number(rate.quote_id),
                rate.service,
                rate.amount,
                rate.currency,
                transit,
                label_format,
                now,
                self._fate(rate.quote_id),
                # The date quoted is the date kept, however long the buyer took to choose.
                rate.delivery_date
                or add_business_days(_WEEKDAYS, ship_date(_WEEKDAYS, now), transit),
            )
        )
        if row is None:
            raise CarrierError(f"sandbox: no quote {rate.quote_id}", temporary=False)
        if row["voided_at"] is not None:
            raise CarrierError(f"sandbox: the label of {rate.quote_id} was voided", temporary=False)
        quote = msgspec.json.decode(row["request"], type=_Quote)
        account = next(
            (s.carrier for s in self._table.services if s.name == row["service"]), "Sandbox Post"
        )
        data = LabelData(
            ship_from=quote.request.ship_from,
            ship_to=quote.request.ship_to,
            carrier=account,
            service=row["service"],
            tracking_number=row["tracking_number"],
            weight_g=quote.request.parcel.weight_g,
            reference=quote.request.shipment_id,
            ship_date=row["bought_at"].date(),
        )
        # The label is drawn again from what was bought: the same one each time.
        fmt: LabelFormat = "zpl" if row["label_format"] == "zpl" else "pdf"
        label = render_zpl(data) if fmt == "zpl" else render_pdf(data)
        return Purchase(
            carrier=self.name,
            carrier_account=account,
            service=row["service"],
            tracking_number=row["tracking_number"],
            label_format=fmt,
            label=label,
            purchase_id=rate.quote_id,
            amount=row["amount"],
            currency=row["currency"].strip(),
            tracking_url=TRACKING_URL.format(row["tracking_number"]),
        )

    async def track(self, tracking_number: str, *, carrier_account: str | None = None) -> Tracking:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """
                SELECT bought_at, voided_at, delivery_date, fate FROM sandbox_shipments
                WHERE tracking_number = $1
                """,
                tracking_number,
            )
        if row is None:
            raise CarrierError(
                f"sandbox: unknown tracking number {tracking_number}", temporary=False
            )
        if row["voided_at"] is not None:
            return Tracking(
                tracking_number=tracking_number, status="failure", carrier_status="voided"
            )
        now = self._now()
        steps = [
            step
            for step in journey(row["bought_at"], row["delivery_date"], row["fate"])
            if step.at <= now
        ]
        if not steps:
            return Tracking(
                tracking_number=tracking_number,
                status="pre_transit",
                carrier_status="label_created",
                estimated_delivery=row["delivery_date"],
            )
        estimate = next(
            (s.estimated_delivery for s in reversed(steps) if s.estimated_delivery), None
        )
        return Tracking(
            tracking_number=tracking_number,
            status=steps[-1].status,
            carrier_status=steps[-1].carrier_status,
            estimated_delivery=estimate or row["delivery_date"],
            events=tuple(
                TrackingEvent(
                    status=s.status, carrier_status=s.carrier_status, detail=s.detail, at=s.at,
                    location=s.location,
                )
                for s in steps
            ),
        )  # fmt: skip

    async def news(
        self, limit: int = 200
    ) -> list[tuple[str, int, datetime | None, TrackingUpdate]]:
        """Scans that have happened and were not reported yet, soonest first: (quote, how
        many scans that makes, when the next one is due, the scan) each. Only parcels
        orderd has recorded as shipped are reported, as a carrier's webhook would be
        retried until orderd knew them. Reported with :meth:`told`."""
        now = self._now()
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                """
                SELECT b.quote_id, b.tracking_number, b.bought_at, b.delivery_date, b.fate,
                       b.events_sent
                FROM sandbox_shipments b
                -- Looked up parcel by parcel from the few that are due: as a join, it was
                -- planned as a walk over every sandbox shipment orderd ever recorded.
                CROSS JOIN LATERAL (
                    SELECT 1 FROM shipments s
                    WHERE s.carrier = 'sandbox' AND s.tracking_number = b.tracking_number
                      AND s.status = 'shipped'
                    LIMIT 1
                ) AS shipped
                WHERE b.next_scan_at <= $1 AND b.voided_at IS NULL
                ORDER BY b.next_scan_at
                LIMIT $2
                """,
                now,
                limit,
            )
        due = []
        for row in rows:
            steps = journey(row["bought_at"], row["delivery_date"], row["fate"])
            for number, step in enumerate(steps):
                if number >= row["events_sent"] and step.at <= now:
                    update = TrackingUpdate(
                        carrier=self.name,
                        tracking_number=row["tracking_number"],
                        status=step.status,
                        carrier_status=step.carrier_status,
                        detail=step.detail,
                        at=step.at,
                        estimated_delivery=step.estimated_delivery,
                        event_id=f"{row['tracking_number']}:{number}",
                        location=step.location,
                    )
                    later = steps[number + 1].at if number + 1 < len(steps) else None
                    due.append((row["quote_id"], number + 1, later, update))
        return due

    async def told(self, quote_id: str, count: int, next_scan_at: datetime | None) -> None:
        """The parcel's first ``count`` scans reached orderd; the next is due then."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE sandbox_shipments SET events_sent = $2, next_scan_at = $3
                WHERE quote_id = $1 AND events_sent < $2
                """,
                quote_id,
                count,
                next_scan_at,
            )

    async def _store_quotes(self, quotes: Sequence[tuple[str, bytes]]) -> list[None]:
        # The quote is re-stored on each call: a repeated quote sees the latest parcel.
        latest = {quote_id: request for quote_id, request in quotes}
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"""
                INSERT INTO sandbox_shipments (quote_id, request)
                SELECT {_QUOTES.columns} FROM {_QUOTES.source}
                ON CONFLICT (quote_id) DO UPDATE SET request = excluded.request
                WHERE sandbox_shipments.bought_at IS NULL
                """,
                _QUOTES.encode((q, Raw(request)) for q, request in latest.items()),
            )
        return [None] * len(quotes)

    async def _store_purchases(self, bought: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Buy each quote's label unless it was bought already; each quote's row (None
        for a quote never made)."""
        first = {b[0]: b for b in reversed(bought)}  # a quote bought twice: the first
        quote_ids = list(first)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                UPDATE sandbox_shipments b
                SET idempotency_key = u.idempotency_key, tracking_number = u.tracking_number,
                    service = u.service, amount = u.amount, currency = u.currency,
                    transit_days = u.transit_days, label_format = u.label_format,
                    bought_at = u.bought_at, fate = u.fate, delivery_date = u.delivery_date,
                    next_scan_at = u.bought_at + interval '2 hours'
                FROM (SELECT {_BOUGHT.columns} FROM {_BOUGHT.source}) AS u
                WHERE b.quote_id = ANY($2::text[]) AND b.quote_id = u.quote_id
                  AND b.bought_at IS NULL
                RETURNING b.*
                """,
                _BOUGHT.encode(first.values()),
                quote_ids,
            )
            found = {r["quote_id"]: r for r in rows}
            left = [q for q in quote_ids if q not in found]
            if left:
                earlier = await conn.fetch(
                    "SELECT * FROM sandbox_shipments WHERE quote_id = ANY($1::text[])", left
                )
                found.update((r["quote_id"], r) for r in earlier)
        return [found.get(b[0]) for b in bought]

    def _fate(self, quote_id: str) -> str:
        # Decided by the quote, so a label bought again after a crash has the same fate.
        draw = random.Random(quote_id).random()  # noqa: S311 - a simulation, not a secret
        if draw < self._exception_rate:
            return "exception"
        if draw < self._exception_rate + self._delay_rate:
            return "delayed"
        return "on_time"

    async def void(self, purchase_id: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE sandbox_shipments SET voided_at = coalesce(voided_at, $2) "
                "WHERE quote_id = $1",
                purchase_id,
                self._now(),
            )

    async def close(self) -> None:
        return None

    def _now(self) -> datetime:
        seconds = self._clock() if self._clock is not None else None
        return datetime.fromtimestamp(seconds, UTC) if seconds is not None else datetime.now(UTC)


def _price(service: Service, zone: str, weight_g: int) -> Decimal | None:
    for max_g, price in service.prices.get(zone, []):
        if weight_g <= max_g:
            return Decimal(price)
    return None
