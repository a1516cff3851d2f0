"""What a platform parser decides about one webhook body, and the order id it maps to.

Pure data, no I/O. The HTTP layer answers from these: ``Paid`` and ``Cancelled`` are stored
(202), ``Ignored`` is acknowledged with its reason (200), ``MalformedPayload`` is a 400 whose
JSON reason is ``MalformedPayload.reason``.
"""

from __future__ import annotations

import base64
import hashlib
import re

import msgspec
from msgspec import Struct

from actors.errors import OrderdError
from actors.order.types import NormalizedOrder, Platform

_ORDER_ID_CHARS = 20  # 100 bits of the hash: no collision in any realistic order book


def order_id_for(platform: Platform, external_id: str) -> str:
    """orderd's id for the platform's order ``external_id``: the same on every redelivery."""
    digest = hashlib.sha256(f"{platform}:{external_id}".encode()).digest()
    # The first 15 bytes make 24 characters, enough for 20: the rest is not encoded at all.
    return "ord_" + base64.b32encode(digest[:15]).decode("ascii")[:_ORDER_ID_CHARS].lower()


class Paid(Struct, frozen=True):
    """A paid order to fulfil."""

    order: NormalizedOrder


class Cancelled(Struct, frozen=True, kw_only=True):
    """The platform cancelled one of its orders."""

    platform: Platform
    external_id: str
    reason: str

    @property
    def order_id(self) -> str:
        """orderd's id of the cancelled order."""
        return order_id_for(self.platform, self.external_id)


class Changed(Struct, frozen=True):
    """The platform changed one of its orders (its address or lines): applied while the
    pick list is not out yet, and held for a person after."""

    order: NormalizedOrder


class Ignored(Struct, frozen=True, kw_only=True):
    """Received, understood and not for fulfilment (unpaid, another topic, ...)."""

    platform: Platform
    reason: str
    external_id: str | None = None


Decision = Paid | Cancelled | Changed | Ignored


class MalformedPayload(OrderdError):
    """A webhook body that cannot be an order. The reason names the field and the problem,
    never the value: values may be personal data."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    @property
    def reason(self) -> str:
        """The one line a 400 answer carries."""
        return str(self)


# msgspec says "<problem> - at `$.a.b[0]`"; its missing-field message names the field itself.
_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_QUOTED = re.compile(r"'[^']*'")


def malformed_from(error: msgspec.DecodeError | msgspec.ValidationError) -> MalformedPayload:
    """The :class:`MalformedPayload` for a msgspec decoding error, with the field as a path."""
    match = _AT.match(str(error))
    problem = match.group("problem") if match else "invalid"
    path = (match.group("path") or "") if match else ""
    path = path.removeprefix(".")
    # ValidationError is a subclass of DecodeError: anything else is not JSON at all.
    if not isinstance(error, msgspec.ValidationError):
        return MalformedPayload("body", f"not valid JSON ({problem.lower()})")
    missing = _MISSING.match(problem)
    if missing:
        name = missing.group("name")
        return MalformedPayload(f"{path}.{name}" if path else name, "missing")
    if not path and problem.startswith("Expected `object`"):
        return MalformedPayload("body", "not a JSON object")
    # Quoted text in a msgspec message can be the offending value itself: leave it out.
    problem = _QUOTED.sub("(value)", problem).replace("`", "")
    return MalformedPayload(path or "body", problem[:1].lower() + problem[1:])
