"""Settings: a TOML file plus ``ORDERD_<SECTION>__<KEY>`` environment overrides.

Everything is loaded into frozen msgspec Structs. An unknown key, a wrong type or a
missing secret is a :class:`ConfigError` naming the key and where it came from (the
file, or the environment variable), so ``orderd config check`` can print one line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta, Struct

from adapters.errors import ConfigError
from adapters.postgres.pool import redact_dsn as redact_dsn  # for tools that print a DSN
from adapters.redis.keys import RuntimeKeys

ENV_PREFIX = "ORDERD_"
CONFIG_ENV = "ORDERD_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/orderd/orderd.toml")

Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=86400)]
# Warehouse codes go inside Redis Cluster hash tags, so braces and separators are out.
WarehouseCode = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
KeyPrefix = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
SchemaName = Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
# A domain name or an address literal ([192.0.2.1], [IPv6:2001:db8::1]), as EHLO takes it.
EhloName = Annotated[str, Meta(pattern=r"^([A-Za-z0-9.-]{1,253}|\[[0-9A-Za-z.:]{1,60}\])?$")]
# A size PostgreSQL reads: pages (8 kB each) or kB/MB; empty for the server's own.
FlushAfter = Annotated[str, Meta(pattern=r"^([0-9]{1,4}(kB|MB)?)?$")]


def _flush_after_bytes(size: str) -> int:
    """What a FlushAfter size comes to; PostgreSQL refuses a session above 2 MB."""
    for unit, scale in (("kB", 1024), ("MB", 1024 * 1024)):
        if size.endswith(unit):
            return int(size.removesuffix(unit)) * scale
    return int(size) * 8192 if size else 0


class _Section(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class DaemonSettings(_Section, frozen=True):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_s: PositiveSeconds = 20.0
    # Empty: host name and process id, unique per running process.
    consumer_name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = ""
    # all: one process does everything; intake: only the HTTP side (webhooks stored and
    # streamed); actors: only the order actors and their senders. Processes of the two
    # halves share the work through the stream, each on a core of its own.
    role: Literal["all", "intake", "actors"] = "all"


class RuntimeSettings(_Section, frozen=True):
    max_deliveries: Annotated[int, Meta(ge=1, le=100)] = 5
    lease_ms: Annotated[int, Meta(ge=1000, le=600_000)] = 10_000
    claim_idle_ms: Annotated[int, Meta(ge=1000, le=86_400_000)] = 60_000
    read_count: Annotated[int, Meta(ge=1, le=10_000)] = 256
    max_turns: Annotated[int, Meta(ge=1, le=10_000)] = 64
    # Readiness fails once the oldest message not yet finished is older than this: the
    # process is up but its orders are not moving (or not keeping up).
    max_pending_age_s: PositiveSeconds = 300.0


class RedisSettings(_Section, frozen=True):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: KeyPrefix = "orderd:"
    # A Redis Cluster: url names any one of its nodes, and the others are found from it.
    cluster: bool = False
    # The order stream cut in this many streams, by a hash of the order id (each order's
    # messages in one), so that reading spreads over a cluster's shards. Change it with
    # every process stopped: the next to start streams again what was not applied.
    stream_partitions: Annotated[int, Meta(ge=1, le=64)] = 1

    def runtime_keys(self) -> RuntimeKeys:
        """The runtime's keys as laid out for these settings."""
        tagged = self.cluster or self.stream_partitions > 1
        return RuntimeKeys(self.prefix, tagged=tagged, partitions=self.stream_partitions)


class PostgresSettings(_Section, frozen=True):
    dsn: str = "postgresql://postgres@127.0.0.1:5432/orderd"
    schema: SchemaName = "public"
    pool_min_size: Annotated[int, Meta(ge=1, le=100)] = 2
    pool_max_size: Annotated[int, Meta(ge=1, le=100)] = 10
    connect_timeout_s: PositiveSeconds = 5.0
    # orderd's sessions ask the kernel to write what they wrote out every 256 kB, rather
    # than leave it to pile up in the page cache. A pile written out at once made every
    # commit on the server wait for the disk: bench/intake.py's p99 at 1,000/s fell from
    # 16-44 ms to 14-34 ms with this, lower in each of six alternated runs.
    backend_flush_after: FlushAfter = "256kB"


class HttpSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # Several orderd processes on one host may share the port (the kernel spreads the
    # connections), to use more than one core for webhooks.
    reuse_port: bool = False


class WebhookSource(_Section, frozen=True):
    enabled: bool = False
    secret: str = ""
    # Secrets still accepted while a platform rotates to the new one.
    previous_secrets: tuple[str, ...] = ()


class ShopifySource(WebhookSource, frozen=True):
    # The shop, e.g. my-shop.myshopify.com; its Admin API is at https://<shop_domain>.
    shop_domain: str = ""
    # Empty: https://<shop_domain>. A test server's address, in tests.
    admin_url: str = ""
    # The Admin API access token (set ORDERD_WEBHOOKS__SHOPIFY__ACCESS_TOKEN).
    access_token: str = ""
    api_version: Annotated[str, Meta(pattern=r"^\d{4}-\d{2}$|^unstable$")] = "2026-10"
    # Tell Shopify of each parcel that leaves (a fulfillment with its tracking).
    write_back: bool = False
    # Whether Shopify mails the customer too; orderd sends its own confirmation.
    notify_customer: bool = False
    # With write_back: a parcel's arrival becomes a DELIVERED event on its fulfillment.
    report_delivered: bool = True
    timeout_s: PositiveSeconds = 15.0
    # Keep Shopify's available counts to orderd's (needs write_back): the location of each
    # warehouse, and the inventory item of each sku (numbers, or gid://shopify/... ids).
    push_stock: bool = False
    locations: dict[str, str] = {}
    inventory_items: dict[str, str] = {}

    def admin_base(self) -> str:
        return self.admin_url or (f"https://{self.shop_domain}" if self.shop_domain else "")


class WooCommerceSource(WebhookSource, frozen=True):
    # The store's address, e.g. https://shop.example.com (its REST API is below it).
    store_url: str = ""
    # REST API keys (set ORDERD_WEBHOOKS__WOOCOMMERCE__CONSUMER_KEY and __CONSUMER_SECRET).
    consumer_key: str = ""
    consumer_secret: str = ""
    # Tell WooCommerce of each parcel that leaves (a note to the customer), and complete
    # the order once all of it shipped.
    write_back: bool = False
    # With write_back: a parcel's arrival becomes a private note for the store's staff.
    report_delivered: bool = True
    timeout_s: PositiveSeconds = 15.0
    # Keep each product's stock_quantity to orderd's (needs write_back): the units
    # available in these warehouses, summed (empty: every warehouse).
    push_stock: bool = False
    stock_warehouses: tuple[str, ...] = ()


class WebhooksSettings(_Section, frozen=True):
    shopify: ShopifySource = ShopifySource()
    woocommerce: WooCommerceSource = WooCommerceSource()
    generic: WebhookSource = WebhookSource()
    # How often stock counts are compared and pushed: a sku's changes in between go as
    # one call with its last figure.
    stock_every_s: PositiveSeconds = 5.0


class AdminSettings(_Section, frozen=True):
    # Empty keeps the admin API closed.
    token: str = ""


class AllocationSettings(_Section, frozen=True):
    backorder_policy: Literal["wait_all", "ship_available", "cancel_after_days"] = "wait_all"
    cancel_after_days: Annotated[int, Meta(ge=1, le=365)] = 14
    split_across_warehouses: bool = False
    idempotency_days: Annotated[int, Meta(ge=1, le=365)] = 30
    batch_max: Annotated[int, Meta(ge=1, le=10_000)] = 512
    batch_linger_ms: Annotated[float, Meta(ge=0, le=1000)] = 0.0
    batches_in_flight: Annotated[int, Meta(ge=1, le=64)] = 4
    fill_limit: Annotated[int, Meta(ge=1, le=100_000)] = 500


class ShipFrom(_Section, frozen=True):
    """The warehouse's address, printed on labels and sent to carriers."""

    name: str = "Main warehouse"
    company: str = ""
    line1: str = "1 Warehouse Way"
    line2: str = ""
    city: str = "Springfield"
    region: str = "IL"
    postal_code: str = "62701"
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")] = "US"
    phone: str = ""


class Warehouse(_Section, frozen=True):
    code: WarehouseCode
    name: str = ""
    priority: Annotated[int, Meta(ge=0, le=1000)] = 1
    timezone: str = "UTC"
    # Parcels packed after the cutoff (local time) leave the next business day.
    cutoff: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "15:00"
    holidays: tuple[date, ...] = ()
    address: ShipFrom = ShipFrom()


class WmsSettings(_Section, frozen=True):
    # sandbox: picks and packs by itself; spool: pick list files for a printer and
    # `orderd order packed`; http: a WMS that takes JSON and calls back on /webhooks/wms.
    adapter: Literal["sandbox", "spool", "http"] = "sandbox"
    url: str = ""
    # Signs requests to the WMS and verifies its callbacks on /webhooks/wms.
    secret: str = ""
    previous_secrets: tuple[str, ...] = ()
    timeout_s: PositiveSeconds = 10.0
    retry_max_s: PositiveSeconds = 300.0
    spool_dir: str = "/var/lib/orderd/spool"
    sandbox_delay_s: Annotated[float, Meta(ge=0, le=86400)] = 1.0
    sandbox_mispick_rate: Annotated[float, Meta(ge=0, le=1)] = 0.0


class CarrierAccount(_Section, frozen=True):
    enabled: bool = False
    api_key: str = ""
    base_url: str = ""
    webhook_secret: str = ""
    timeout_s: PositiveSeconds = 15.0


class SandboxCarrier(_Section, frozen=True):
    enabled: bool = True
    # Empty: the rate table shipped with orderd (config/sandbox_rates.toml).
    rates_file: str = ""
    # Shares of sandbox parcels that arrive two days late, or fail delivery.
    delay_rate: Annotated[float, Meta(ge=0, le=1)] = 0.0
    exception_rate: Annotated[float, Meta(ge=0, le=1)] = 0.0


# Each carrier's own API address is the default of its section, so a section that sets only
# ``enabled`` and the key still has it.
class EasyPostAccount(CarrierAccount, frozen=True):
    base_url: str = "https://api.easypost.com/v2"


class ShippoAccount(CarrierAccount, frozen=True):
    base_url: str = "https://api.goshippo.com"


class CarriersSettings(_Section, frozen=True):
    sandbox: SandboxCarrier = SandboxCarrier()
    easypost: EasyPostAccount = EasyPostAccount()
    shippo: ShippoAccount = ShippoAccount()


class LabelsSettings(_Section, frozen=True):
    dir: str = "/var/lib/orderd/labels"
    format: Literal["pdf", "zpl"] = "pdf"


class ServiceLevelSetting(_Section, frozen=True):
    name: str
    max_days: Annotated[int, Meta(ge=1, le=60)]
    match: tuple[str, ...] = ()


class ZoneSetting(_Section, frozen=True):
    name: str
    countries: tuple[Annotated[str, Meta(pattern=r"^[A-Z]{2}$")], ...]
    postal_prefixes: tuple[str, ...] = ()


class PreferenceSetting(_Section, frozen=True):
    countries: tuple[Annotated[str, Meta(pattern=r"^[A-Z]{2}$")], ...] = ()
    prefer: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


Money = Annotated[float, Meta(ge=0, le=1_000_000)]
ClockTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class EmailSettings(_Section, frozen=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 25
    tls: Literal["none", "starttls", "implicit"] = "none"
    username: str = ""
    password: str = ""
    sender: str = msgspec.field(default="orders@example.com", name="from")
    reply_to: str = ""
    # Templates here replace the packaged ones of the same file name.
    templates_dir: str = ""
    timeout_s: PositiveSeconds = 15.0
    # Connections kept open to the server, and so the most messages on their way at once.
    connections: Annotated[int, Meta(ge=1, le=64)] = 4
    # A kept connection unused this long is closed; below the server's own idle timeout,
    # so that orderd, not the server, ends it.
    connection_idle_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    # The name orderd gives in EHLO; empty: this host's fully qualified name.
    ehlo_name: EhloName = ""


class SmsSettings(_Section, frozen=True):
    enabled: bool = False
    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: str = ""
    sender: str = msgspec.field(default="", name="from")
    timeout_s: PositiveSeconds = 15.0
    # Text only customers whose platform says they agreed; false: anyone with a mobile
    # number (where the store collects consent itself).
    require_consent: bool = True


class NotifySettings(_Section, frozen=True):
    # Which channels the store uses; narrowed per customer by what they gave and allow.
    channels: Literal["email", "sms", "both"] = "email"
    store_name: str = "Our store"
    shop_url: str = "https://shop.example.com"
    # Where customers reach orderd's rating links (GET /feedback/...).
    public_url: str = "http://127.0.0.1:8080"
    # No SMS in the customer's local night.
    quiet_start: ClockTime = "21:00"
    quiet_end: ClockTime = "08:00"
    delivered_message: bool = True
    # Follow-ups after delivery; 0 leaves one out.
    review_after_days: Annotated[int, Meta(ge=0, le=365)] = 7
    repeat_after_days: Annotated[int, Meta(ge=0, le=3650)] = 30
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 12
    retry_max_s: PositiveSeconds = 3600.0
    # A message a process took but never recorded (it died while sending) goes again after
    # this; longer than any send takes, so a slow server never gets it twice.
    resend_after_s: PositiveSeconds = 120.0


class TrackingSettings(_Section, frozen=True):
    # Carriers without webhooks (or as a safety net) are asked this often.
    poll_interval_s: Annotated[float, Meta(ge=60, le=7 * 86400)] = 4 * 3600.0
    poll_for_days: Annotated[int, Meta(ge=1, le=120)] = 30
    poll_carriers: tuple[str, ...] = ()
    no_scan_hours: Annotated[float, Meta(gt=0, le=24 * 30)] = 48.0
    pickup_grace_hours: Annotated[float, Meta(gt=0, le=24 * 30)] = 24.0


class FeedbackSettings(_Section, frozen=True):
    # Signs rating links; empty uses a random key kept in the database.
    secret: str = ""
    previous_secrets: tuple[str, ...] = ()
    # How long a rating link works; the latest click within it counts.
    window_days: Annotated[int, Meta(ge=1, le=365)] = 60


class ClockSettings(_Section, frozen=True):
    # Run reminders and the sandbox carrier this many times faster (demos and tests).
    scale: Annotated[float, Meta(ge=1, le=10_000_000)] = 1.0
    # Start the daemon's clock this far ahead of the wall clock (a demo goes on serving
    # from where its fast clock left off).
    offset_s: Annotated[float, Meta(ge=0, le=10 * 365 * 86400)] = 0.0


class ShippingSettings(_Section, frozen=True):
    strategy: Literal["cheapest", "fastest", "best_value"] = "cheapest"
    # best_value: what one business day sooner is worth, in the rate's currency.
    day_value: Money = 2.0
    # 0: no limit.
    max_price: Money = 0.0
    # Orders worth more than this ship with a signature on delivery; 0: never.
    signature_above: Money = 0.0
    default_service_level: str = "standard"
    service_levels: tuple[ServiceLevelSetting, ...] = (
        ServiceLevelSetting(name="standard", max_days=5, match=("standard", "economy", "ground")),
        ServiceLevelSetting(name="express", max_days=2, match=("express", "expedited", "priority")),
        ServiceLevelSetting(
            name="overnight", max_days=1, match=("overnight", "next day", "next-day")
        ),
    )
    zones: tuple[ZoneSetting, ...] = ()
    preferences: tuple[PreferenceSetting, ...] = ()
    # Packaging added to the items' weight, and the box used when items have no sizes.
    tare_g: Annotated[int, Meta(ge=0, le=100_000)] = 100
    default_box_cm: tuple[float, float, float] = (30.0, 20.0, 10.0)


class Settings(_Section, frozen=True):
    daemon: DaemonSettings = DaemonSettings()
    redis: RedisSettings = RedisSettings()
    postgres: PostgresSettings = PostgresSettings()
    http: HttpSettings = HttpSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    admin: AdminSettings = AdminSettings()
    allocation: AllocationSettings = AllocationSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    warehouses: tuple[Warehouse, ...] = (Warehouse(code="main", name="Main warehouse"),)
    wms: WmsSettings = WmsSettings()
    carriers: CarriersSettings = CarriersSettings()
    labels: LabelsSettings = LabelsSettings()
    shipping: ShippingSettings = ShippingSettings()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    notify: NotifySettings = NotifySettings()
    tracking: TrackingSettings = TrackingSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    clock: ClockSettings = ClockSettings()
    # Where the settings came from, for messages; not a key of the file.
    source: str = "built-in defaults"


def resolve_config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: the one named, else ``$ORDERD_CONFIG``, else /etc/orderd/orderd.toml."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH
    return None


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from ``path`` (resolved as :func:`resolve_config_path` says) and env."""
    env = os.environ if environ is None else environ
    config_path = resolve_config_path(path, env)
    raw: dict[str, Any] = {}
    where = "built-in defaults"
    if config_path is not None:
        where = str(config_path)
        raw = _read_toml(config_path)
        if "source" in raw:
            raise ConfigError(f"{where}: source: unknown key")
    from_env = _apply_env(raw, env, where)
    raw["source"] = where
    try:
        settings = msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        problem = _describe(exc)
        key = problem.split(":", 1)[0]
        raise ConfigError(f"{from_env.get(key, where)}: {problem}") from None
    _check(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.http.port``` into ``http.port: ...``."""
    match = _AT.match(str(exc))
    msg, path = (match["msg"], match["path"] or "") if match else (str(exc), "")
    key = path.lstrip(".")
    unknown = _UNKNOWN.match(msg)
    if unknown:
        key = f"{key}.{unknown['field']}" if key else unknown["field"]
        return f"{key}: unknown key"
    msg = msg.replace("`", "")
    msg = msg[:1].lower() + msg[1:]
    return f"{key}: {msg}" if key else msg


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str], where: str) -> dict[str, str]:
    """Overlay ``ORDERD_A__B=value`` onto the file's dict, coerced to the key's type.

    Returns the dotted keys set this way, each with the variable that set it.
    """
    applied: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"{name}: malformed override name (ORDERD_<SECTION>__<KEY>)")
        field_type = _field_type(parts)
        if field_type is None:
            raise ConfigError(f"{name}: {'.'.join(parts)} is not a setting")
        value = _coerce(name, parts, environ[name], field_type)
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {part}: expected a table")
            node = child
        node[parts[-1]] = value
        applied[".".join(parts)] = name
    return applied


def _field_type(parts: list[str]) -> msgspec.inspect.Type | None:
    info: msgspec.inspect.Type = msgspec.inspect.type_info(Settings)
    for part in parts:
        if not isinstance(info, msgspec.inspect.StructType):
            return None
        fields = {f.encode_name: f for f in info.fields if f.encode_name != "source"}
        if part not in fields:
            return None
        info = fields[part].type
    return info


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, parts: list[str], value: str, info: msgspec.inspect.Type) -> Any:
    key = ".".join(parts)
    inspect = msgspec.inspect
    if isinstance(info, inspect.Metadata):
        info = info.type
    if isinstance(info, inspect.BoolType):
        lowered = value.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ConfigError(f"{name}: {key}: expected true or false, got {value!r}")
    if isinstance(info, inspect.IntType):
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: {key}: expected a whole number, got {value!r}") from None
    if isinstance(info, inspect.FloatType):
        try:
            return float(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: {key}: expected a number, got {value!r}") from None
    if isinstance(info, inspect.StrType | inspect.LiteralType):
        return value
    if isinstance(info, inspect.VarTupleType | inspect.ListType) and isinstance(
        info.item_type, inspect.StrType
    ):
        return [item.strip() for item in value.split(",") if item.strip()]
    raise ConfigError(f"{name}: {key} cannot be set from the environment; set it in the file")


def _check_stock_push(settings: Settings) -> None:
    where = settings.source
    codes = {w.code for w in settings.warehouses}
    shopify = settings.webhooks.shopify
    woo = settings.webhooks.woocommerce
    for name, source in (("shopify", shopify), ("woocommerce", woo)):
        if source.push_stock and not source.write_back:
            raise ConfigError(f"{where}: webhooks.{name}.push_stock: needs write_back = true")
    if shopify.push_stock:
        if not shopify.locations:
            raise ConfigError(
                f"{where}: webhooks.shopify.locations: required when push_stock is true "
                "(warehouse code = Shopify location id)"
            )
        if shopify.api_version != "unstable" and shopify.api_version < "2026-01":
            raise ConfigError(
                f"{where}: webhooks.shopify.api_version: 2026-01 or later is needed to "
                "push stock (changeFromQuantity)"
            )
    for key, named in (
        ("shopify.locations", tuple(shopify.locations)),
        ("woocommerce.stock_warehouses", woo.stock_warehouses),
    ):
        unknown = sorted(set(named) - codes)
        if unknown:
            raise ConfigError(
                f"{where}: webhooks.{key}: no warehouse {', '.join(map(repr, unknown))}"
            )


def _check(settings: Settings) -> None:
    """Rules that span keys or need more than a type: secrets, URLs, time zones."""
    where = settings.source
    for platform in ("shopify", "woocommerce", "generic"):
        source: WebhookSource = getattr(settings.webhooks, platform)
        if source.enabled and not source.secret:
            env = f"ORDERD_WEBHOOKS__{platform.upper()}__SECRET"
            raise ConfigError(
                f"{where}: webhooks.{platform}.secret: required when "
                f"webhooks.{platform}.enabled is true (set it in the config file or in {env})"
            )
    shopify = settings.webhooks.shopify
    if shopify.write_back:
        if not shopify.access_token:
            raise ConfigError(
                f"{where}: webhooks.shopify.access_token: required when write_back is true "
                "(set it in the config file or in ORDERD_WEBHOOKS__SHOPIFY__ACCESS_TOKEN)"
            )
        if urlsplit(shopify.admin_base()).scheme not in ("http", "https"):
            raise ConfigError(
                f"{where}: webhooks.shopify.shop_domain: required when write_back is true "
                "(or admin_url, an http(s):// URL)"
            )
    woo = settings.webhooks.woocommerce
    if woo.write_back:
        for key in ("consumer_key", "consumer_secret"):
            if not getattr(woo, key):
                env = f"ORDERD_WEBHOOKS__WOOCOMMERCE__{key.upper()}"
                raise ConfigError(
                    f"{where}: webhooks.woocommerce.{key}: required when write_back is true "
                    f"(set it in the config file or in {env})"
                )
        if urlsplit(woo.store_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"{where}: webhooks.woocommerce.store_url: an http(s):// URL is required "
                "when write_back is true"
            )
    _check_stock_push(settings)
    redis_url = urlsplit(settings.redis.url)
    if redis_url.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{where}: redis.url: expected redis://, rediss:// or unix:// URL")
    # A cluster has one database, and its nodes are reached over TCP.
    if settings.redis.cluster and (
        redis_url.scheme == "unix" or redis_url.path.strip("/") not in ("", "0")
    ):
        raise ConfigError(
            f"{where}: redis.url: a Redis Cluster is reached by redis:// or rediss:// and has "
            "database 0 only"
        )
    if urlsplit(settings.postgres.dsn).scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"{where}: postgres.dsn: expected a postgresql:// URL")
    if settings.postgres.pool_min_size > settings.postgres.pool_max_size:
        raise ConfigError(f"{where}: postgres.pool_min_size: larger than pool_max_size")
    if _flush_after_bytes(settings.postgres.backend_flush_after) > 2 * 1024 * 1024:
        raise ConfigError(f"{where}: postgres.backend_flush_after: at most 2MB (256 pages)")
    if not settings.warehouses:
        raise ConfigError(f"{where}: warehouses: at least one warehouse is needed")
    seen: set[str] = set()
    for index, warehouse in enumerate(settings.warehouses):
        if warehouse.code in seen:
            raise ConfigError(f"{where}: warehouses[{index}].code: {warehouse.code!r} repeated")
        seen.add(warehouse.code)
        try:
            ZoneInfo(warehouse.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{where}: warehouses[{index}].timezone: unknown time zone {warehouse.timezone!r}"
            ) from None
    _check_shipping(settings)
    _check_notify(settings)


def _check_notify(settings: Settings) -> None:
    where = settings.source
    sms = settings.sms
    if sms.enabled:
        for key, value in (("account_sid", sms.account_sid), ("auth_token", sms.auth_token),
                           ("from", sms.sender)):  # fmt: skip
            if not value:
                raise ConfigError(
                    f"{where}: sms.{key}: required when sms.enabled is true "
                    f"(set it in the config file or in ORDERD_SMS__{key.upper()})"
                )
        if urlsplit(sms.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: sms.base_url: expected an http(s):// URL")
    if settings.email.enabled and "@" not in settings.email.sender:
        raise ConfigError(f"{where}: email.from: an address like orders@example.com is needed")
    for key in ("public_url", "shop_url"):
        if urlsplit(getattr(settings.notify, key)).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: notify.{key}: expected an http(s):// URL")


def _check_shipping(settings: Settings) -> None:
    where = settings.source
    wms = settings.wms
    if wms.adapter == "http":
        if urlsplit(wms.url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: wms.url: an http:// or https:// URL is required")
        if not wms.secret:
            raise ConfigError(
                f"{where}: wms.secret: required when wms.adapter is http "
                "(set it in the config file or in ORDERD_WMS__SECRET)"
            )
    enabled = [name for name in ("sandbox", "easypost", "shippo") if _carrier_on(settings, name)]
    if not enabled:
        raise ConfigError(f"{where}: carriers: enable at least one carrier")
    for name in ("easypost", "shippo"):
        account: CarrierAccount = getattr(settings.carriers, name)
        if not account.enabled:
            continue
        env = f"ORDERD_CARRIERS__{name.upper()}__API_KEY"
        if not account.api_key:
            raise ConfigError(
                f"{where}: carriers.{name}.api_key: required when carriers.{name}.enabled "
                f"is true (set it in the config file or in {env})"
            )
        if urlsplit(account.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: carriers.{name}.base_url: expected an http(s):// URL")
    levels = [level.name for level in settings.shipping.service_levels]
    if len(set(levels)) != len(levels):
        raise ConfigError(f"{where}: shipping.service_levels: a name is repeated")
    if settings.shipping.default_service_level not in levels:
        raise ConfigError(
            f"{where}: shipping.default_service_level: "
            f"{settings.shipping.default_service_level!r} is not one of {', '.join(levels)}"
        )
    if any(side <= 0 for side in settings.shipping.default_box_cm):
        raise ConfigError(f"{where}: shipping.default_box_cm: sizes must be above 0")


def _carrier_on(settings: Settings, name: str) -> bool:
    account: CarrierAccount | SandboxCarrier = getattr(settings.carriers, name)
    return account.enabled
