"""The sandbox carrier: rates from a table, real labels, tracking numbers with a check digit.

It behaves as a carrier account does, with its side of things kept in PostgreSQL
(``sandbox_shipments``): every quote is stored with its parcel and addresses, and a label
is bought at most once per quote, so asking again after a crash returns the first label.
Nothing leaves the machine.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from actors.shipping.selection import Zone, zone_for
from adapters.carriers.labels import LabelData, render_pdf, render_zpl
from adapters.carriers.model import (
    CarrierError,
    LabelFormat,
    Purchase,
    Rate,
    RateRequest,
    Tracking,
)
from adapters.carriers.tracking_numbers import sandbox_tracking_number
from adapters.errors import ConfigError

BUILT_IN_RATES = Path(__file__).with_name("sandbox_rates.toml")
TRACKING_URL = "https://sandbox.orderd.invalid/track/{}"


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
    ) -> None:
        self._pool = pool
        self._table = table
        self._zones = zones
        self._clock = clock

    async def rates(self, request: RateRequest) -> list[Rate]:
        zone = zone_for(
            request.ship_to.country,
            request.ship_to.postal_code,
            self._zones,
            request.ship_from.country,
        )
        quote_id = f"sbx_{request.shipment_id}"
        async with self._pool.acquire() as conn:
            # The quote is re-stored on each call: a repeated quote sees the latest parcel.
            await conn.execute(
                """
                INSERT INTO sandbox_shipments (quote_id, request) VALUES ($1, $2::jsonb)
                ON CONFLICT (quote_id) DO UPDATE SET request = excluded.request
                WHERE sandbox_shipments.bought_at IS NULL
                """,
                quote_id,
                msgspec.json.encode(_Quote(request, zone)).decode(),
            )
        rates = []
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
                    rate_id=f"{quote_id}:{service.name}",
                    quote_id=quote_id,
                )
            )
        return rates

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                """
                UPDATE sandbox_shipments
                SET idempotency_key = $2, tracking_number = $3, service = $4, amount = $5,
                    currency = $6, transit_days = $7, label_format = $8, bought_at = $9
                WHERE quote_id = $1 AND bought_at IS NULL
                RETURNING *
                """,
                rate.quote_id,
                idempotency_key,
                sandbox_tracking_number(rate.quote_id),
                rate.service,
                rate.amount,
                rate.currency,
                rate.delivery_days,
                label_format,
                self._now(),
            ) or await conn.fetchrow(
                "SELECT * FROM sandbox_shipments WHERE quote_id = $1", rate.quote_id
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
                "SELECT bought_at, voided_at FROM sandbox_shipments WHERE tracking_number = $1",
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
        return Tracking(
            tracking_number=tracking_number, status="pre_transit", carrier_status="label_created"
        )

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
