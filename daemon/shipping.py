"""Building the fulfillment and shipping parts from settings: rules, carriers, the WMS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from decimal import Decimal
from typing import Any

from actors.order.behaviour import Rules
from actors.order.effects import Shipping
from actors.order.types import Address
from actors.shipping.calendar import BusinessCalendar
from actors.shipping.selection import Preference, ServiceLevel, ShippingRules, Zone
from adapters.carriers.easypost import EasyPost
from adapters.carriers.model import Carrier
from adapters.carriers.sandbox import BUILT_IN_RATES, SandboxCarrier, load_rate_table
from adapters.carriers.shippo import Shippo
from adapters.wms.http import HttpWarehouse
from adapters.wms.model import WarehouseSystem
from adapters.wms.sandbox import SandboxWarehouse
from adapters.wms.spool import SpoolWarehouse
from daemon.settings import Settings, Warehouse


def rules(settings: Settings) -> Rules:
    """The order decisions' settings."""
    shipping = settings.shipping
    return Rules(
        backorder_policy=settings.allocation.backorder_policy,
        cancel_after_days=settings.allocation.cancel_after_days,
        service_levels=tuple(
            ServiceLevel(name=level.name, max_days=level.max_days, match=level.match)
            for level in shipping.service_levels
        ),
        default_service_level=shipping.default_service_level,
        calendars=tuple((w.code, calendar(w)) for w in settings.warehouses),
        shipping=ShippingRules(
            strategy=shipping.strategy,
            day_value=_money(shipping.day_value) or Decimal(0),
            max_price=_money(shipping.max_price),
            signature_above=_money(shipping.signature_above),
            preferences=tuple(
                Preference(countries=p.countries, prefer=p.prefer, exclude=p.exclude)
                for p in shipping.preferences
            ),
        ),
        label_format=settings.labels.format,
    )


def calendar(warehouse: Warehouse) -> BusinessCalendar:
    hours, minutes = (int(part) for part in warehouse.cutoff.split(":"))
    return BusinessCalendar(
        timezone=warehouse.timezone,
        cutoff=time(hours, minutes),
        holidays=frozenset(warehouse.holidays),
    )


def zones(settings: Settings) -> tuple[Zone, ...]:
    return tuple(
        Zone(name=z.name, countries=z.countries, postal_prefixes=z.postal_prefixes)
        for z in settings.shipping.zones
    )


def carriers(settings: Settings, pool: Any, clock: Callable[[], float]) -> dict[str, Carrier]:
    """Every enabled carrier, by name."""
    enabled: dict[str, Carrier] = {}
    config = settings.carriers
    if config.sandbox.enabled:
        table = load_rate_table(config.sandbox.rates_file or BUILT_IN_RATES)
        enabled["sandbox"] = SandboxCarrier(
            pool=pool, table=table, zones=zones(settings), clock=clock
        )
    if config.easypost.enabled:
        enabled["easypost"] = EasyPost(
            api_key=config.easypost.api_key,
            base_url=config.easypost.base_url,
            timeout_s=config.easypost.timeout_s,
        )
    if config.shippo.enabled:
        enabled["shippo"] = Shippo(
            api_key=config.shippo.api_key,
            base_url=config.shippo.base_url,
            timeout_s=config.shippo.timeout_s,
        )
    return enabled


def warehouse_system(settings: Settings) -> WarehouseSystem:
    wms = settings.wms
    if wms.adapter == "http":
        return HttpWarehouse(url=wms.url, secret=wms.secret, timeout_s=wms.timeout_s)
    if wms.adapter == "spool":
        return SpoolWarehouse(directory=wms.spool_dir)
    return SandboxWarehouse(delay_s=wms.sandbox_delay_s, mispick_rate=wms.sandbox_mispick_rate)


def shipping(
    settings: Settings, pool: Any, clock: Callable[[], float], system: WarehouseSystem
) -> Shipping:
    return Shipping(
        pool=pool,
        carriers=carriers(settings, pool, clock),
        ship_from={w.code: ship_from(w) for w in settings.warehouses},
        labels_dir=settings.labels.dir,
        wms_adapter=system.name,
        wms_delay_s=system.delay_s,
        tare_g=settings.shipping.tare_g,
        default_box_cm=settings.shipping.default_box_cm,
    )


def ship_from(warehouse: Warehouse) -> Address:
    a = warehouse.address
    return Address(
        name=a.name or warehouse.name,
        company=a.company,
        line1=a.line1,
        line2=a.line2,
        city=a.city,
        region=a.region,
        postal_code=a.postal_code,
        country=a.country,
        phone=a.phone or None,
    )


def _money(value: float) -> Decimal | None:
    # 0 means "no limit" in the settings; amounts are compared as exact decimals.
    return Decimal(str(value)) if value else None
