"""Building the fulfillment, shipping and customer-message parts from settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import time
from decimal import Decimal
from typing import Any

from actors.notifier import NotifierSettings
from actors.notify.model import Notifier
from actors.order.behaviour import Rules
from actors.order.effects import Shipping
from actors.order.outbox import MessageSettings
from actors.order.types import Address
from actors.ports.observe import UNOBSERVED, Observer
from actors.shipping.calendar import BusinessCalendar
from actors.shipping.carriers import Carrier
from actors.shipping.selection import Preference, ServiceLevel, ShippingRules, Zone
from actors.shipping.tracking import DelayRules
from actors.shipping.warehouse import WarehouseSystem
from actors.stock_push import Inventory
from actors.storefront import Storefront
from adapters.carriers.easypost import EasyPost
from adapters.carriers.sandbox import BUILT_IN_RATES, SandboxCarrier, load_rate_table
from adapters.carriers.shippo import Shippo
from adapters.label_files import LabelFiles
from adapters.notify.sms import TwilioSms
from adapters.notify.smtp import SmtpNotifier
from adapters.notify.templates import Templates
from adapters.platforms.shopify_admin import ShopifyAdmin, ShopifyGraphql
from adapters.platforms.shopify_inventory import ShopifyInventory
from adapters.platforms.woocommerce_api import WooCommerceApi, WooCommerceRest
from adapters.platforms.woocommerce_inventory import WooCommerceInventory
from adapters.postgres.catalog import PostgresCatalog
from adapters.wms.http import HttpWarehouse
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
        delivered_message=settings.notify.delivered_message,
        review_after_days=settings.notify.review_after_days,
        repeat_after_days=settings.notify.repeat_after_days,
        delays=DelayRules(
            no_scan_hours=settings.tracking.no_scan_hours,
            pickup_grace_hours=settings.tracking.pickup_grace_hours,
        ),
        poll_carriers=settings.tracking.poll_carriers,
        write_back=tuple(
            name
            for name in ("shopify", "woocommerce")
            if getattr(settings.webhooks, name).write_back
        ),
        delivery_events=tuple(
            name
            for name in ("shopify", "woocommerce")
            if getattr(settings.webhooks, name).report_delivered
        ),
        poll_interval_s=settings.tracking.poll_interval_s,
        poll_for_days=settings.tracking.poll_for_days,
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
            pool=pool,
            table=table,
            zones=zones(settings),
            clock=clock,
            delay_rate=config.sandbox.delay_rate,
            exception_rate=config.sandbox.exception_rate,
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


def sandbox(enabled: Mapping[str, Carrier]) -> SandboxCarrier | None:
    """The sandbox carrier, when enabled: it reports its parcels' scans itself."""
    carrier = enabled.get("sandbox")
    return carrier if isinstance(carrier, SandboxCarrier) else None


def shipping(
    settings: Settings,
    pool: Any,
    enabled: Mapping[str, Carrier],
    system: WarehouseSystem,
    observer: Observer = UNOBSERVED,
) -> Shipping:
    return Shipping(
        observer=observer,
        catalog=PostgresCatalog(pool),
        carriers=enabled,
        ship_from={w.code: ship_from(w) for w in settings.warehouses},
        labels=LabelFiles(settings.labels.dir),
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


def message_settings(settings: Settings) -> MessageSettings:
    notify = settings.notify
    return MessageSettings(
        channels=notify.channels,
        email_enabled=settings.email.enabled,
        sms_enabled=settings.sms.enabled,
        sms_require_consent=settings.sms.require_consent,
        store_name=notify.store_name,
        shop_url=notify.shop_url,
        public_url=notify.public_url,
        feedback_window_days=settings.feedback.window_days,
    )


def senders(settings: Settings) -> dict[str, Notifier]:
    """The enabled channels' senders, by channel."""
    templates = Templates(settings.email.templates_dir or None)
    enabled: dict[str, Notifier] = {}
    email = settings.email
    if email.enabled:
        enabled["email"] = SmtpNotifier(
            host=email.host,
            port=email.port,
            tls=email.tls,
            username=email.username,
            password=email.password,
            sender=email.sender,
            reply_to=email.reply_to,
            templates=templates,
            timeout_s=email.timeout_s,
            connections=email.connections,
            idle_s=email.connection_idle_s,
            ehlo_name=email.ehlo_name,
        )
    sms = settings.sms
    if sms.enabled:
        enabled["sms"] = TwilioSms(
            base_url=sms.base_url,
            account_sid=sms.account_sid,
            auth_token=sms.auth_token,
            sender=sms.sender,
            templates=templates,
            timeout_s=sms.timeout_s,
        )
    return enabled


def outbox_settings(settings: Settings) -> NotifierSettings:
    notify = settings.notify
    return NotifierSettings(
        max_attempts=notify.max_attempts,
        retry_max_s=notify.retry_max_s,
        quiet_start=notify.quiet_start,
        quiet_end=notify.quiet_end,
        claim_s=notify.resend_after_s,
    )


def _shopify_api(settings: Settings) -> ShopifyGraphql:
    shopify = settings.webhooks.shopify
    return ShopifyGraphql(
        admin_url=shopify.admin_base(),
        access_token=shopify.access_token,
        api_version=shopify.api_version,
        timeout_s=shopify.timeout_s,
    )


def _woocommerce_api(settings: Settings) -> WooCommerceRest:
    woo = settings.webhooks.woocommerce
    return WooCommerceRest(
        store_url=woo.store_url,
        consumer_key=woo.consumer_key,
        consumer_secret=woo.consumer_secret,
        timeout_s=woo.timeout_s,
    )


def storefronts(settings: Settings) -> dict[str, Storefront]:
    """The platforms told of their orders' parcels (write-back on), by name."""
    shopify = settings.webhooks.shopify
    found: dict[str, Storefront] = {}
    if shopify.write_back:
        found["shopify"] = ShopifyAdmin(
            _shopify_api(settings), notify_customer=shopify.notify_customer
        )
    if settings.webhooks.woocommerce.write_back:
        found["woocommerce"] = WooCommerceApi(_woocommerce_api(settings))
    return found


def inventories(settings: Settings) -> dict[str, Inventory]:
    """The platforms whose stock counts orderd keeps (push_stock on), by name."""
    shopify = settings.webhooks.shopify
    woo = settings.webhooks.woocommerce
    found: dict[str, Inventory] = {}
    if shopify.push_stock:
        found["shopify"] = ShopifyInventory(
            _shopify_api(settings),
            locations=shopify.locations,
            inventory_items=shopify.inventory_items,
        )
    if woo.push_stock:
        found["woocommerce"] = WooCommerceInventory(
            _woocommerce_api(settings), warehouses=woo.stock_warehouses
        )
    return found
