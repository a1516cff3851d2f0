"""Webhook signatures: HMAC-SHA256 over the raw body bytes, checked in constant time.

Every verifier takes several secrets, so a secret can be rotated: the new one and the
previous ones are all accepted until the old ones are dropped from the configuration.
A missing, empty or garbled header is simply "not verified"; nothing here raises on input.

- Shopify ``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256(app client secret, raw body)
  (shopify.dev, "Verify webhooks" / "About webhooks").
- WooCommerce ``X-WC-Webhook-Signature``: base64 of HMAC-SHA256(webhook secret, raw body)
  (WooCommerce REST API docs, "Webhooks - Delivery/payload"; ``WC_Webhook::generate_signature``).
- orderd's generic ``X-Orderd-Signature``: ``sha256=`` and the lower-case hex HMAC-SHA256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence

SHOPIFY_HEADER = "X-Shopify-Hmac-Sha256"
WOOCOMMERCE_HEADER = "X-WC-Webhook-Signature"
GENERIC_HEADER = "X-Orderd-Signature"

_DIGEST_SIZE = hashlib.sha256().digest_size
_GENERIC_PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def sign_shopify(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify would send for ``body``."""
    return base64.b64encode(_digest(secret, body)).decode("ascii")


def sign_woocommerce(body: bytes, secret: str) -> str:
    """The ``X-WC-Webhook-Signature`` value WooCommerce would send for ``body``."""
    return base64.b64encode(_digest(secret, body)).decode("ascii")


def sign_generic(body: bytes, secret: str) -> str:
    """The ``X-Orderd-Signature`` value a sender of orderd's generic JSON must send."""
    return _GENERIC_PREFIX + _digest(secret, body).hex()


def verify_shopify(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when ``header`` is Shopify's signature of ``body`` under one of ``secrets``."""
    return _matches(body, _from_base64(header), secrets)


def verify_woocommerce(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when ``header`` is WooCommerce's signature of ``body`` under one of ``secrets``."""
    return _matches(body, _from_base64(header), secrets)


def verify_generic(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when ``header`` is ``sha256=<hex>`` of ``body`` under one of ``secrets``."""
    return _matches(body, _from_generic(header), secrets)


def _digest(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def _from_base64(header: str | None) -> bytes | None:
    if not header:
        return None
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        return None
    return raw if len(raw) == _DIGEST_SIZE else None


def _from_generic(header: str | None) -> bytes | None:
    value = (header or "").strip()
    if not value.startswith(_GENERIC_PREFIX):
        return None
    hex_digest = value[len(_GENERIC_PREFIX) :]
    return bytes.fromhex(hex_digest) if _HEX_DIGEST.fullmatch(hex_digest) else None


def _matches(body: bytes, claimed: bytes | None, secrets: Sequence[str]) -> bool:
    # A bare string is a Sequence[str] too: it would be tried one character at a time.
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if claimed is None:
        return False
    verified = False
    # Every configured secret is tried, so the time taken does not say which one matched.
    for secret in secrets:
        if secret:  # an empty secret is a misconfiguration, never a key
            verified |= hmac.compare_digest(_digest(secret, body), claimed)
    return verified
