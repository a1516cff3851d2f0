"""Reading what earlier versions stored, into today's types.

Snapshots, events and messages live on in PostgreSQL (and messages on the stream) across
upgrades. Earlier versions wrote a few fields as strings that are typed now:

- holds were "order", a shipment id, or ``dead:<seq>`` (``dead:<message type>`` before
  messages were numbered), and an order-wide ``AttentionNeeded`` had a null hold;
- a reminder's scope was "", a shipment id, or ``<shipment id>:<number>``;
- a delay had only its reason in words, no cause.

Decoding tries today's form first, so what this version wrote costs nothing extra; only
what fails that is rewritten here and decoded again. Saving it writes today's form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from actors.order.holds import ORDER_HOLD, DeadLetterHold, Hold, ShipmentHold
from actors.order.reminder import ReminderKind, ReminderScope
from actors.shipping.tracking import DelayCause

T = TypeVar("T")

_DEAD = "dead:"
_encode = msgspec.json.Encoder().encode
_to_builtins = msgspec.to_builtins

# The beginnings of the delay reasons earlier versions wrote, by the rule that wrote them.
_REASONS = (
    ("the promised date", DelayCause.PROMISE_PASSED),
    ("the carrier now expects", DelayCause.LATE_ESTIMATE),
    ("not picked up", DelayCause.NOT_PICKED_UP),
    ("no scan for", DelayCause.NO_SCAN),
)


def decode(decoder: msgspec.json.Decoder[T], data: bytes | str, upgrade: Callable[[Any], Any]) -> T:
    """``data`` decoded as today's form, else as an earlier version's, upgraded.

    An error that the upgrade does not explain is raised as it was.
    """
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as error:
        raw = msgspec.json.decode(data)
        upgraded = upgrade(raw)
        if upgraded == raw:
            raise error from None
        return decoder.decode(_encode(upgraded))


def hold_from_text(text: str) -> Hold:
    """A hold an earlier version stored as a string."""
    if text == "order":
        return ORDER_HOLD
    if text.startswith(_DEAD):
        named = text.removeprefix(_DEAD)
        if named.isdecimal():
            return DeadLetterHold(seq=int(named))
        return DeadLetterHold(message=named)
    return ShipmentHold(shipment_id=text)


def cause_from_reason(reason: str) -> DelayCause:
    """The cause of a delay an earlier version recorded only in words.

    A reason none of its rules wrote ended its episode with any scan, as a missing scan
    does, so it is read as one.
    """
    return next(
        (cause for start, cause in _REASONS if reason.startswith(start)), DelayCause.NO_SCAN
    )


def upgrade_snapshot(raw: Any) -> Any:
    """A stored snapshot with its holds in today's form."""
    if not isinstance(raw, dict) or "holds" not in raw:
        return raw
    return {**raw, "holds": upgrade_holds(raw["holds"])}


def upgrade_holds(raw: Any) -> Any:
    """A snapshot's stored holds in today's form."""
    return [_hold(h) for h in raw] if isinstance(raw, list) else raw


def upgrade_event(raw: Any) -> Any:
    """A stored event in today's form: typed holds, a delay with its cause."""
    if not isinstance(raw, dict):
        return raw
    match raw.get("type"):
        case "needs_attention" if raw.get("hold", "") is None:
            return {**raw, "hold": _to_builtins(ORDER_HOLD)}  # the whole order, unnamed
        case "needs_attention" | "hold_released" if isinstance(raw.get("hold"), str):
            return {**raw, "hold": _hold(raw["hold"])}
        case "delayed" if "cause" not in raw and isinstance(raw.get("reason"), str):
            return {**raw, "cause": cause_from_reason(raw["reason"]).value}
        case _:
            return raw


def upgrade_message(raw: Any) -> Any:
    """A stored message in today's form: a typed hold, a typed reminder scope."""
    if not isinstance(raw, dict):
        return raw
    match raw.get("type"):
        case "hold_release" if isinstance(raw.get("hold"), str):
            return {**raw, "hold": _hold(raw["hold"])}
        case "reminder_due" if isinstance(raw.get("scope"), str):
            return {**raw, "scope": _scope(raw["scope"], raw.get("kind"))}
        case _:
            return raw


def _hold(value: Any) -> Any:
    return _to_builtins(hold_from_text(value)) if isinstance(value, str) else value


def _scope(text: str, kind: Any) -> Any:
    try:
        return _to_builtins(ReminderScope.parse(text, ReminderKind(kind)))
    except ValueError:
        return text  # not a scope of a known kind: left for the decoder to refuse
