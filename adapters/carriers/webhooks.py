"""Carrier tracking webhooks: checking who sent them, and reading them as one update.

Pure, no I/O. The HTTP layer checks the sender on the raw body first, then parses: an
update is stored (202), ``None`` is acknowledged as ignored (200), ``MalformedPayload`` is a
400 whose reason names the field.

EasyPost (docs.easypost.com: "Webhook", "Webhooks Guide", "Event", "Tracker"):

- the body is an Event ``{id, object: "Event", description, mode, result, ...}``; tracking
  news comes as ``description: "tracker.updated"`` with a Tracker as ``result``
  (``object: "Tracker", tracking_code, status, updated_at, est_delivery_date,
  tracking_details[] {status, message, datetime, tracking_location {city, state, zip,
  country}}``); EasyPost delivers each Event at least once, so its ``id`` de-duplicates;
- ``X-Hmac-Signature: hmac-sha256-hex=<hex>``: HMAC-SHA256 of the raw body, keyed with the
  webhook secret normalised to NFKD and encoded as UTF-8, as EasyPost's client libraries
  compute it (easypost-python ``validate_webhook``).

Shippo (docs.goshippo.com: "Webhooks", "Webhook security", the Track object):

- the body is ``{event, test, data}``; ``event: "track_updated"`` carries a Track as
  ``data`` (``carrier, tracking_number, eta, tracking_status {object_id, status, substatus
  {code}, status_details, status_date, location}, tracking_history[]``);
- Shippo signs nothing by itself. Its self-service protection is a token of our choosing
  appended to the webhook URL configured at Shippo (``?token=...``), which comes back on
  every call; HMAC exists only when arranged with Shippo's account management.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime

import msgspec
from msgspec import Struct

from actors.shipping.carriers import TrackingStatus
from adapters.carriers.easypost import easypost_tracking_status
from adapters.carriers.scans import ScanLocation, place
from adapters.carriers.shippo import shippo_tracking_status
from adapters.platforms.intake import MalformedPayload
from adapters.platforms.normalize import decode, text, utc_time

EASYPOST_HEADER = "X-Hmac-Signature"
SHIPPO_AUTH_PARAM = "token"  # the query parameter of the webhook URL that carries it

_EASYPOST_PREFIX = "hmac-sha256-hex="
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_MAX_TRACKING_NUMBER = 100


class TrackingUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One carrier's news of one parcel, whichever carrier sent it."""

    carrier: str  # the adapter: "easypost", "shippo", "sandbox"
    tracking_number: str
    status: TrackingStatus
    carrier_status: str  # the carrier's own status word
    detail: str = ""
    at: datetime  # aware, UTC: when the carrier saw this, not when it told us
    estimated_delivery: date | None = None
    event_id: str | None = None  # the carrier's id of this news, for de-duplication
    location: str = ""


def sign_easypost(body: bytes, secret: str) -> str:
    """The ``X-Hmac-Signature`` value EasyPost sends for ``body`` under ``secret``."""
    return _EASYPOST_PREFIX + _easypost_digest(secret, body).hex()


def verify_easypost(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when ``header`` is EasyPost's signature of ``body`` under one of ``secrets``.

    Several secrets are accepted so one can be rotated; a missing or garbled header is
    simply not verified.
    """
    _refuse_bare_string(secrets)
    value = (header or "").strip()
    if not value.startswith(_EASYPOST_PREFIX):
        return False
    hex_digest = value[len(_EASYPOST_PREFIX) :]
    if not _HEX_DIGEST.fullmatch(hex_digest):
        return False
    claimed = bytes.fromhex(hex_digest)
    verified = False
    # Every secret is tried, so the time taken does not say which one matched.
    for secret in secrets:
        if secret:  # an empty secret is a misconfiguration, never a key
            verified |= hmac.compare_digest(_easypost_digest(secret, body), claimed)
    return verified


def verify_shippo(token: str | None, tokens: Sequence[str]) -> bool:
    """True when ``token`` (the webhook URL's ``?token=``) is one of the configured ``tokens``.

    Digests are compared rather than the tokens themselves, so neither the content nor
    the length of a configured token shows in the time taken.
    """
    _refuse_bare_string(tokens)
    if not token:
        return False
    claimed = hashlib.sha256(token.encode()).digest()
    verified = False
    for expected in tokens:
        if expected:
            verified |= hmac.compare_digest(hashlib.sha256(expected.encode()).digest(), claimed)
    return verified


def parse_easypost(body: bytes) -> TrackingUpdate | None:
    """The update in an EasyPost Event; None for an Event that is not ``tracker.updated``."""
    envelope = decode(_EASYPOST_ENVELOPE, body)
    # The kind of object is checked before its fields, so a reason says what the body is.
    if envelope.object != "Event":
        raise MalformedPayload("object", "must be 'Event'")
    if not envelope.id:
        raise MalformedPayload("id", "missing")
    if envelope.description is None:
        raise MalformedPayload("description", "missing")
    if envelope.description != "tracker.updated":
        return None
    tracker = decode(_EASYPOST_TRACKER_EVENT, body).result
    if tracker.object != "Tracker":
        raise MalformedPayload("result.object", "must be 'Tracker'")
    if tracker.status is None:
        raise MalformedPayload("result.status", "missing")
    latest = _latest_easypost_detail(tracker.tracking_details)
    if latest is not None:
        at, detail = latest
        message = text(detail.message)
        location = place(detail.tracking_location)
    else:
        # No scan yet: the tracker's own last change is the best time there is.
        updated = utc_time(tracker.updated_at, "result.updated_at", naive_is_utc=True)
        if updated is None:
            raise MalformedPayload("result.updated_at", "missing, and no tracking_details")
        at, message, location = updated, "", ""
    eta = tracker.est_delivery_date
    return TrackingUpdate(
        carrier="easypost",
        tracking_number=_tracking_number(tracker.tracking_code, "result.tracking_code"),
        status=easypost_tracking_status(tracker.status),
        carrier_status=text(tracker.status),
        detail=message,
        at=at,
        estimated_delivery=eta.date() if eta else None,
        event_id=envelope.id,
        location=location,
    )


def parse_shippo(body: bytes) -> TrackingUpdate | None:
    """The update in a Shippo webhook; None when its ``event`` is not ``track_updated``."""
    if decode(_SHIPPO_ENVELOPE, body).event != "track_updated":
        return None
    track = decode(_SHIPPO_TRACK_EVENT, body).data
    current, field = _current_shippo_status(track)
    at = utc_time(current.status_date, f"{field}.status_date", naive_is_utc=True)
    if at is None:
        # Shippo's record of the status stands in when the carrier gave no scan time.
        at = utc_time(current.object_updated, f"{field}.object_updated", naive_is_utc=True)
    if at is None:
        raise MalformedPayload(f"{field}.status_date", "missing")
    substatus = current.substatus.code if current.substatus else None
    return TrackingUpdate(
        carrier="shippo",
        tracking_number=_tracking_number(track.tracking_number, "data.tracking_number"),
        status=shippo_tracking_status(current.status, substatus),
        carrier_status=text(current.status),
        detail=text(current.status_details),
        at=at,
        estimated_delivery=track.eta.date() if track.eta else None,
        # Shippo's body has no event id; the status's object_id names this one scan, so
        # the same scan sent twice is recognised; with the estimate, so that news of a
        # moved estimate on the same scan is not.
        event_id=f"{current.object_id}:{track.eta.date() if track.eta else '-'}"
        if current.object_id
        else None,
        location=place(current.location),
    )


class _EasyPostEnvelope(Struct, kw_only=True):
    object: str
    id: str | None = None
    description: str | None = None


class _EasyPostDetail(Struct, kw_only=True):
    at: datetime | None = msgspec.field(default=None, name="datetime")
    message: str | None = None
    tracking_location: ScanLocation | None = None


class _EasyPostTracker(Struct, kw_only=True):
    object: str
    tracking_code: str | None = None
    status: str | None = None
    updated_at: datetime | None = None
    est_delivery_date: datetime | None = None
    tracking_details: list[_EasyPostDetail] = []


class _EasyPostTrackerEvent(Struct, kw_only=True):
    result: _EasyPostTracker


class _ShippoEnvelope(Struct, kw_only=True):
    event: str


class _ShippoSubstatus(Struct, kw_only=True):
    code: str | None = None


class _ShippoStatus(Struct, kw_only=True):
    object_id: str | None = None
    status: str
    status_details: str | None = None
    status_date: datetime | None = None
    object_updated: datetime | None = None
    substatus: _ShippoSubstatus | None = None
    location: ScanLocation | None = None


class _ShippoTrack(Struct, kw_only=True):
    tracking_number: str
    eta: datetime | None = None
    tracking_status: _ShippoStatus | None = None
    tracking_history: list[_ShippoStatus] = []


class _ShippoTrackEvent(Struct, kw_only=True):
    data: _ShippoTrack


# Built once: a Decoder compiles its type on construction.
_EASYPOST_ENVELOPE = msgspec.json.Decoder(_EasyPostEnvelope)
_EASYPOST_TRACKER_EVENT = msgspec.json.Decoder(_EasyPostTrackerEvent)
_SHIPPO_ENVELOPE = msgspec.json.Decoder(_ShippoEnvelope)
_SHIPPO_TRACK_EVENT = msgspec.json.Decoder(_ShippoTrackEvent)


def _easypost_digest(secret: str, body: bytes) -> bytes:
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return hmac.new(key, body, hashlib.sha256).digest()


def _refuse_bare_string(secrets: Sequence[str]) -> None:
    # A bare string is a Sequence[str] too: it would be tried one character at a time.
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")


def _latest_easypost_detail(
    details: list[_EasyPostDetail],
) -> tuple[datetime, _EasyPostDetail] | None:
    """The latest scan and its time in UTC; the last listed wins a tie."""
    latest: tuple[datetime, _EasyPostDetail] | None = None
    for index, detail in enumerate(details):
        field = f"result.tracking_details[{index}].datetime"
        at = utc_time(detail.at, field, naive_is_utc=True)
        if at is not None and (latest is None or at >= latest[0]):
            latest = (at, detail)
    return latest


def _current_shippo_status(track: _ShippoTrack) -> tuple[_ShippoStatus, str]:
    """The Track's latest status and its path: ``tracking_status``, else the newest of the
    history (listed oldest first)."""
    if track.tracking_status is not None:
        return track.tracking_status, "data.tracking_status"
    if track.tracking_history:
        last = len(track.tracking_history) - 1
        return track.tracking_history[last], f"data.tracking_history[{last}]"
    raise MalformedPayload("data.tracking_status", "missing")


def _tracking_number(value: str | None, field: str) -> str:
    if value is None:
        raise MalformedPayload(field, "missing")
    number = value.strip()
    if not number:
        raise MalformedPayload(field, "must not be empty")
    if len(number) > _MAX_TRACKING_NUMBER:
        raise MalformedPayload(field, f"longer than {_MAX_TRACKING_NUMBER} characters")
    return number
