"""Reminders an order sets for itself: their kinds, what each is about, and their keys.

A reminder's key names it in PostgreSQL and Redis: ``<order>:<kind>``, or
``<order>:<kind>:<shipment>`` for a check of one shipment, or
``<order>:<kind>:<shipment>:<number>`` for a numbered one (a scan, a poll). Scheduling
the same key twice is a no-op, so the key is what makes a reminder once per order, kind
and scope. :class:`ReminderKey` is the only place that writes or reads that shape.
"""

from __future__ import annotations

from enum import StrEnum

from msgspec import Struct


class ReminderKind(StrEnum):
    """What a reminder is for; the value is what PostgreSQL stores in ``reminders.kind``."""

    CANCEL_BACKORDER = "cancel_backorder"
    # Checks of a shipment in flight for a delay.
    PICKUP_CHECK = "pickup_check"
    PROMISE_CHECK = "promise_check"
    NO_SCAN = "no_scan"  # numbered by the scan it follows
    TRACK_POLL = "track_poll"  # numbered by the poll
    # Messages after delivery; the order completes once each is sent or skipped.
    REVIEW_REQUEST = "review_request"
    REPEAT_PURCHASE = "repeat_purchase"


FOLLOW_UPS = (ReminderKind.REVIEW_REQUEST, ReminderKind.REPEAT_PURCHASE)
# Kinds whose scope carries a number as well as the shipment.
_NUMBERED = frozenset({ReminderKind.NO_SCAN, ReminderKind.TRACK_POLL})


class ReminderScope(Struct, frozen=True):
    """What a reminder is about within its order: a shipment, and for a scan or a poll
    its number (the scan it follows, the poll it is)."""

    shipment_id: str
    number: int | None = None

    def __post_init__(self) -> None:
        if not self.shipment_id:
            raise ValueError("a reminder's scope names its shipment")
        if self.number is not None and self.number < 0:
            raise ValueError("a reminder's number is 0 or more")

    def text(self) -> str:
        """The scope as it ends a reminder key."""
        return self.shipment_id if self.number is None else f"{self.shipment_id}:{self.number}"

    @classmethod
    def parse(cls, text: str, kind: ReminderKind) -> ReminderScope | None:
        """The scope of a reminder of ``kind`` from the end of its key (None when empty).

        The kind says whether a number ends it, so a shipment id is taken whole.
        """
        if not text:
            return None
        if kind not in _NUMBERED:
            return cls(text)
        shipment_id, _, number = text.rpartition(":")
        if not shipment_id or not number.isdecimal():
            raise ValueError(f"a {kind} reminder's scope is shipment:number, not {text!r}")
        return cls(shipment_id, int(number))


class ReminderKey(Struct, frozen=True):
    """A reminder's identity: its order, kind and scope."""

    order_id: str
    kind: ReminderKind
    scope: ReminderScope | None = None

    def __post_init__(self) -> None:
        # Numbered kinds and only they carry a number: what makes the key read back.
        numbered = self.scope is not None and self.scope.number is not None
        if numbered != (self.kind in _NUMBERED):
            raise ValueError(f"a {self.kind} reminder's scope is not {self.scope!r}")

    def text(self) -> str:
        """The key as PostgreSQL and Redis store it."""
        head = f"{self.order_id}:{self.kind}"
        return head if self.scope is None else f"{head}:{self.scope.text()}"

    @classmethod
    def parse(cls, text: str) -> ReminderKey:
        """The key stored as ``text``; ValueError when it names no known kind.

        The order id is everything before the first segment that is a kind, so an id with
        a colon in it still reads back.
        """
        parts = text.split(":")
        for at in range(1, len(parts)):
            try:
                kind = ReminderKind(parts[at])
            except ValueError:
                continue
            scope = ReminderScope.parse(":".join(parts[at + 1 :]), kind)
            return cls(":".join(parts[:at]), kind, scope)
        raise ValueError(f"not a reminder key: {text!r}")
