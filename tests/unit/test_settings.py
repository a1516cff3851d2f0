from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.errors import ConfigError
from daemon.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "orderd.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orderd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def setting_keys(info: Any, prefix: str = "") -> set[str]:
    """Every leaf key of the settings, dotted; tables in arrays use ``[]``."""
    keys: set[str] = set()
    for field in info.fields:
        name = f"{prefix}{field.encode_name}"
        kind = field.type
        if isinstance(kind, msgspec.inspect.StructType):
            keys |= setting_keys(kind, name + ".")
        elif isinstance(kind, msgspec.inspect.VarTupleType) and isinstance(
            kind.item_type, msgspec.inspect.StructType
        ):
            keys |= setting_keys(kind.item_type, name + "[].")
        else:
            keys.add(name)
    return keys


def toml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict) and value:
            keys |= toml_keys(value, f"{prefix}{name}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for table in value:
                keys |= toml_keys(table, f"{prefix}{name}[].")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings.redis.prefix == "orderd:"
    assert settings.http.max_body_bytes == 1024 * 1024
    assert [w.code for w in settings.warehouses] == ["main"]
    assert settings.source == "built-in defaults"


def test_example_file_is_valid_and_lists_every_key() -> None:
    settings = load_settings(EXAMPLE, {})
    assert settings.source == str(EXAMPLE)
    listed = toml_keys(tomllib.loads(EXAMPLE.read_text()))
    known = setting_keys(msgspec.inspect.type_info(Settings)) - {"source"}
    assert listed == known


def test_example_file_says_something_about_every_key() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[index - 1].lstrip().startswith("#"), f"no comment above: {line}"


def test_example_values_are_the_built_in_defaults() -> None:
    example = load_settings(EXAMPLE, {})
    # Zones and carrier preferences have no defaults: the file shows one of each.
    assert [z.name for z in example.shipping.zones] == ["remote"]
    assert [p.prefer for p in example.shipping.preferences] == [("UPS",)]
    shipping = msgspec.structs.replace(example.shipping, zones=(), preferences=())
    from_file = msgspec.structs.replace(example, shipping=shipping, source="")
    assert from_file == msgspec.structs.replace(Settings(), source="")


SHOP_WRITING = (
    "[webhooks.shopify]\nwrite_back = true\naccess_token = 't'\nshop_domain = 's.myshopify.com'\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[redis]\nurll = 'x'\n", "redis.urll: unknown key"),
        ("[redsi]\nurl = 'x'\n", "redsi: unknown key"),
        ("[http]\nport = 'eighty'\n", "http.port: expected int, got str"),
        ("[http]\nport = 0\n", "http.port: expected int >= 1"),
        ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level: invalid enum value 'loud'"),
        ("[redis]\nprefix = 'a{b}'\n", "redis.prefix: expected str matching regex"),
        ("[redis]\nurl = 'http://x'\n", "redis.url: expected redis://"),
        ("[redis]\ncluster = true\nurl = 'unix:///run/redis.sock'\n", "has database 0 only"),
        ("[redis]\ncluster = true\nurl = 'redis://10.0.0.1:7000/3'\n", "has database 0 only"),
        ("[postgres]\ndsn = 'mysql://x'\n", "postgres.dsn: expected a postgresql:// URL"),
        ("[postgres]\npool_min_size = 9\npool_max_size = 3\n", "postgres.pool_min_size"),
        ("[postgres]\nbackend_flush_after = 'x'\n", "postgres.backend_flush_after: expected"),
        ("[postgres]\nbackend_flush_after = '3MB'\n", "postgres.backend_flush_after: at most"),
        ("[postgres]\nbackend_flush_after = '257'\n", "postgres.backend_flush_after: at most"),
        ("[webhooks.shopify]\nenabled = true\n", "webhooks.shopify.secret: required"),
        ("[[warehouses]]\ncode = 'main'\ntimezone = 'Mars/Base'\n", "warehouses[0].timezone"),
        ("[[warehouses]]\ncode = 'a'\n[[warehouses]]\ncode = 'a'\n", "warehouses[1].code"),
        ("[[warehouses]]\ncode = 'a b'\n", "warehouses[0].code: expected str matching"),
        ("[[warehouses]]\nname = 'x'\n", "warehouses[0]: object missing required field code"),
        ("warehouses = []\n", "warehouses: at least one warehouse"),
        ("[email]\nconnections = 0\n", "email.connections: expected int >= 1"),
        ("[email]\nconnections = 65\n", "email.connections: expected int <= 64"),
        ("[email]\nconnection_idle_s = 0\n", "email.connection_idle_s: expected float > 0"),
        ("[email]\nehlo_name = 'mail host'\n", "email.ehlo_name: expected str matching"),
        ('[email]\nehlo_name = "a\\r\\nRSET"\n', "email.ehlo_name: expected str matching"),
        (
            "[webhooks.woocommerce]\npush_stock = true\n",
            "webhooks.woocommerce.push_stock: needs write_back = true",
        ),
        (f"{SHOP_WRITING}push_stock = true\n", "webhooks.shopify.locations: required"),
        (
            f"{SHOP_WRITING}push_stock = true\napi_version = '2025-10'\n"
            "locations = {main = '1'}\n",
            "webhooks.shopify.api_version: 2026-01 or later",
        ),
        (
            f"{SHOP_WRITING}push_stock = true\nlocations = {{east = '1'}}\n",
            "webhooks.shopify.locations: no warehouse 'east'",
        ),
        ("[webhooks]\nstock_every_s = 0\n", "webhooks.stock_every_s: expected float > 0"),
        ("source = 'x'\n", "source: unknown key"),
        ("[http\nport = 1\n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml", {})


def test_the_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 9001\n")
    assert load_settings(None, {"ORDERD_CONFIG": str(path)}).http.port == 9001


def test_environment_overrides_are_coerced_to_the_key_type(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 9001\n")
    env = {
        "ORDERD_HTTP__PORT": "9100",
        "ORDERD_HTTP__HOST": "0.0.0.0",
        "ORDERD_DAEMON__SHUTDOWN_GRACE_S": "3.5",
        "ORDERD_REDIS__PREFIX": "shop2:",
        "ORDERD_WEBHOOKS__SHOPIFY__ENABLED": "yes",
        "ORDERD_WEBHOOKS__SHOPIFY__SECRET": "s3cret",
        "ORDERD_WEBHOOKS__SHOPIFY__PREVIOUS_SECRETS": "old1, old2",
        "ORDERD_ADMIN__TOKEN": "12345",
        "ORDERD_RUNTIME__MAX_TURNS": "256",
        "ORDERD_EMAIL__CONNECTIONS": "2",
        "ORDERD_EMAIL__CONNECTION_IDLE_S": "12.5",
        "ORDERD_EMAIL__EHLO_NAME": "[192.0.2.1]",
        "ORDERD_UNRELATED": "ignored: no double underscore",
    }
    settings = load_settings(path, env)
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"
    assert settings.daemon.shutdown_grace_s == 3.5
    assert settings.redis.prefix == "shop2:"
    assert settings.webhooks.shopify.enabled is True
    assert settings.webhooks.shopify.previous_secrets == ("old1", "old2")
    assert settings.admin.token == "12345"  # a numeric-looking secret stays a string
    assert settings.runtime.max_turns == 256
    assert settings.email.connections == 2
    assert settings.email.connection_idle_s == 12.5
    assert settings.email.ehlo_name == "[192.0.2.1]"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ORDERD_HTTP__PORT": "eighty"}, "ORDERD_HTTP__PORT: http.port: expected a whole number"),
        ({"ORDERD_HTTP__PORT": "70000"}, "ORDERD_HTTP__PORT: http.port: expected int <= 65535"),
        ({"ORDERD_HTTP__PROT": "80"}, "ORDERD_HTTP__PROT: http.prot is not a setting"),
        ({"ORDERD_HTTP": "x", "ORDERD_X__": "1"}, "ORDERD_X__: malformed override name"),
        ({"ORDERD_WEBHOOKS__SHOPIFY__ENABLED": "perhaps"}, "expected true or false"),
        ({"ORDERD_WEBHOOKS__SHOPIFY": "x"}, "cannot be set from the environment"),
        ({"ORDERD_WAREHOUSES__CODE": "x"}, "is not a setting"),
        ({"ORDERD_DAEMON__LOG_LEVEL": "loud"}, "ORDERD_DAEMON__LOG_LEVEL: daemon.log_level"),
        ({"ORDERD_RUNTIME__MAX_TURNS": "0"}, "runtime.max_turns: expected int >= 1"),
    ],
)
def test_a_bad_override_names_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env)
    assert expected in str(caught.value)


def test_a_missing_secret_names_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"ORDERD_WEBHOOKS__GENERIC__ENABLED": "true"})
    assert "ORDERD_WEBHOOKS__GENERIC__SECRET" in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = load_settings(None, {})
    with pytest.raises(AttributeError):
        settings.http.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("carrier", "url"),
    [("easypost", "https://api.easypost.com/v2"), ("shippo", "https://api.goshippo.com")],
)
def test_a_carrier_enabled_with_only_its_key_has_its_own_api_address(
    tmp_path: Path, carrier: str, url: str
) -> None:
    path = write(tmp_path, f"[carriers.{carrier}]\nenabled = true\napi_key = 'k'\n")
    from_file = load_settings(path, {})
    prefix = f"ORDERD_CARRIERS__{carrier.upper()}__"
    from_env = load_settings(None, {f"{prefix}ENABLED": "true", f"{prefix}API_KEY": "k"})
    for settings in (from_file, from_env):
        account = getattr(settings.carriers, carrier)
        assert account.enabled
        assert account.base_url == url
    # Another address (a test server's) is still taken from the file.
    path = write(tmp_path, f"[carriers.{carrier}]\nenabled = true\napi_key = 'k'\n"
                 "base_url = 'http://127.0.0.1:9/v2'\n")  # fmt: skip
    assert getattr(load_settings(path, {}).carriers, carrier).base_url == "http://127.0.0.1:9/v2"
