"""The links of the follow-up messages (rating an order, unsubscribing from reminders):
their signed tokens and their pages.

A token carries the order id and an expiry, signed with HMAC-SHA256, in one URL-safe
base64 string without padding::

    version (1 byte) | expires_at (4 bytes, Unix seconds, big-endian) | order id (UTF-8) | tag

The tag is the HMAC truncated to 128 bits, which keeps the link short enough for an SMS
and is still far beyond guessing. Several secrets are accepted when reading, so the
signing secret can be rotated without breaking links already sent. Each kind of link
signs with its own context, so a rating link cannot be made to unsubscribe, nor the other
way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import math
import re
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

_VERSION = 1
Purpose = Literal["feedback", "unsubscribe"]
# A secret used elsewhere cannot sign a token, nor a token of one purpose pass for another.
_CONTEXTS: dict[str, bytes] = {
    "feedback": b"orderd feedback token\x00",
    "unsubscribe": b"orderd unsubscribe token\x00",
}
_HEADER = struct.Struct(">BI")
_TAG_SIZE = 16
_MAX_ORDER_ID_BYTES = 200
_MAX_TOKEN_CHARS = math.ceil((_HEADER.size + _MAX_ORDER_ID_BYTES + _TAG_SIZE) * 4 / 3)
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_ID_CHARS = 32  # 128 bits of the digest as hex
MAX_COMMENT = 1000  # characters of a rating's comment


def issue_token(
    order_id: str, secret: str, *, expires_at: datetime, purpose: Purpose = "feedback"
) -> str:
    """A link token for order ``order_id`` (rating it, or unsubscribing its customer),
    valid until ``expires_at`` (aware)."""
    if not secret:
        raise ValueError("a feedback token needs a signing secret")
    order = order_id.encode()
    if not 0 < len(order) <= _MAX_ORDER_ID_BYTES:
        raise ValueError(f"an order id in a token is 1 to {_MAX_ORDER_ID_BYTES} bytes")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    expiry = int(expires_at.timestamp())
    if not 0 < expiry < 2**32:
        raise ValueError("expires_at is out of the range a token can carry")
    signed = _HEADER.pack(_VERSION, expiry) + order
    return _encode(signed + _tag(secret, signed, purpose))


def read_token(
    token: str, secrets: Sequence[str], *, now: datetime, purpose: Purpose = "feedback"
) -> str | None:
    """The order id of a valid, unexpired ``token`` signed with one of ``secrets``.

    None for anything else: malformed, too long, forged, from an unknown version or
    expired at ``now`` (aware). Nothing about the token makes this raise.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    raw = _decode(token)
    if raw is None or len(raw) <= _HEADER.size + _TAG_SIZE:
        return None
    signed, claimed = raw[:-_TAG_SIZE], raw[-_TAG_SIZE:]
    verified = False
    # Every secret is tried, so the time taken does not say which one matched.
    for secret in secrets:
        if secret:  # an empty secret is a misconfiguration, never a key
            verified |= hmac.compare_digest(_tag(secret, signed, purpose), claimed)
    if not verified:
        return None
    version, expiry = _HEADER.unpack_from(signed)
    if version != _VERSION or now.timestamp() >= expiry:
        return None
    try:
        return signed[_HEADER.size :].decode()
    except UnicodeDecodeError:
        return None


def token_id(token: str) -> str:
    """A short, stable id of ``token`` to store instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:_TOKEN_ID_CHARS]


def comment_of(value: object) -> str | None:
    """The rating's comment as the form sent it: None when left empty; ValueError when it
    is not text, too long, or holds characters a comment cannot (NUL)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("the comment must be text")
    text = value.strip()
    if len(text) > MAX_COMMENT:
        raise ValueError(f"the comment is longer than {MAX_COMMENT} characters")
    if "\x00" in text:
        raise ValueError("the comment holds a NUL character")
    return text or None


def thank_you_page(score: int) -> str:
    """The page a customer sees after rating an order ``score`` out of 5."""
    if not 1 <= score <= 5:
        raise ValueError("a rating is from 1 to 5")
    # Entities, so the page reads the same whatever charset it is served with.
    stars = "&#9733;" * score + "&#9734;" * (5 - score)
    return _page(
        "Thank you",
        f'<p class="stars" aria-label="{score} out of 5">{stars}</p>'
        f"<p>You rated your order {score} out of 5. Thank you for telling us.</p>",
    )


def rating_page(token: str, score: int) -> str:
    """The page a rating link opens: the score, and a button that records it. Following the
    link (as a mail scanner does) records nothing; pressing the button posts the form."""
    if not 1 <= score <= 5:
        raise ValueError("a rating is from 1 to 5")
    stars = "&#9733;" * score + "&#9734;" * (5 - score)
    action = html.escape(f"/feedback/{token}", quote=True)
    return _page(
        "Rate your order",
        f'<p class="stars" aria-label="{score} out of 5">{stars}</p>'
        f'<form method="post" action="{action}">'
        f'<input type="hidden" name="score" value="{score}">'
        '<p><label for="comment">Anything to tell us? (optional)</label><br>'
        f'<textarea id="comment" name="comment" rows="4" cols="40" maxlength="{MAX_COMMENT}">'
        "</textarea></p>"
        f'<button type="submit" style="font-size:1.1rem;padding:.6rem 1.2rem">'
        f"Rate it {score} out of 5</button></form>",
    )


def unsubscribe_page(token: str) -> str:
    """The page an unsubscribe link opens: a button that unsubscribes. Following the link
    (as a mail scanner does) changes nothing."""
    action = html.escape(f"/unsubscribe/{token}", quote=True)
    return _page(
        "Unsubscribe",
        "<p>Stop reminders and offers from us by email? Messages about your orders still "
        "come.</p>"
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit" style="font-size:1.1rem;padding:.6rem 1.2rem">'
        "Unsubscribe</button></form>",
    )


def unsubscribed_page() -> str:
    return _page(
        "Unsubscribed",
        "<p>You will get no more reminders or offers from us by email. Messages about your "
        "orders still come.</p>",
    )


def bad_comment_page(reason: str) -> str:
    """The page for a rating whose comment cannot be kept: nothing was recorded."""
    return _page(
        "Not recorded",
        f"<p>Your rating was not recorded: {html.escape(reason)}. Go back, shorten it and "
        "try again.</p>",
    )


def not_found_page() -> str:
    """The page for any link that is not valid, without saying why."""
    return _page("Page not found", "<p>This link does not lead anywhere.</p>")


def _tag(secret: str, signed: bytes, purpose: Purpose) -> bytes:
    context = _CONTEXTS[purpose]
    return hmac.new(secret.encode(), context + signed, hashlib.sha256).digest()[:_TAG_SIZE]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes | None:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        return None
    if not _URL_SAFE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # Only the one encoding issue_token gives is accepted, so one token has one token_id.
    return raw if _encode(raw) == token else None


def _page(title: str, body: str) -> str:
    # Self-contained: no scripts, fonts, images or style sheets fetched from anywhere.
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{title}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#222;text-align:center}.stars{font-size:2rem;color:#c80}"
        "</style></head>"
        f"<body><h1>{title}</h1>{body}</body></html>\n"
    )
