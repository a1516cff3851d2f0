"""What orderd asks of a customer-message channel: the message to send, the receipt, errors.

Each channel's adapter (email over SMTP, SMS through Twilio) implements :class:`Notifier`.
A message carries everything its templates need as plain strings, so an adapter renders
and sends without looking anything up.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec
from msgspec import Struct

from actors.errors import OrderdError

Kind = Literal[
    "shipping_confirmation",
    "backorder_notice",
    "delay_alert",
    "delivered",
    "delivery_exception",
    "review_request",
    "repeat_purchase",
]
# Messages that sell rather than tell of an order: sent only with the customer's consent,
# each with a link to unsubscribe, and never to an address that did.
MARKETING: frozenset[str] = frozenset({"repeat_purchase"})


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One message to one customer on one channel."""

    # Derived from (order, step, scope): the same message always carries the same key, so
    # a resend after a crash is recognisable (email: the same Message-ID).
    idempotency_key: str
    kind: Kind
    channel: Literal["email", "sms"]
    to: str  # an email address, or an E.164 phone number
    context: dict[str, str]  # template values, already formatted as text
    items: tuple[tuple[str, str, int], ...] = ()  # (sku, name, quantity)
    links: tuple[tuple[str, str], ...] = ()  # (label, url), e.g. rating links "1".."5"
    locale: str | None = None  # e.g. "de" or "en-GB"; picks localised templates when present


class Sent(Struct, frozen=True):
    """The receipt of an accepted message."""

    message_id: str  # email: the Message-ID header; SMS: the provider's message id


class NotifyError(OrderdError):
    """A message could not be sent.

    ``temporary`` is true for what a later try may fix (no connection, timeouts, 4xx SMTP
    replies, HTTP 429 and 5xx); false for what needs a person (a refused recipient, bad
    credentials, a template that does not render, a malformed answer).
    """

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class Notifier(Protocol):
    """A channel orderd can send customer messages through."""

    channel: str

    async def send(self, message: Outgoing) -> Sent:
        """Render and send ``message``; :class:`NotifyError` when it was not accepted."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
