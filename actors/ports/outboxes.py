"""The outboxes a turn fills and the senders empty: fulfillment requests for the warehouse
system, customer messages for the notifiers, and calls to the stores' platforms."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol

from msgspec import Struct

from actors.notify.model import Outgoing
from actors.ports.mail import Posting
from actors.shipping.warehouse import FulfillmentRequest
from actors.storefront import PlatformCall


class QueuedRequest(Struct, frozen=True):
    """A fulfillment request a turn stores, for ``adapter`` to deliver from ``due_at``."""

    request: FulfillmentRequest
    adapter: str
    due_at: datetime


class DueRequest(Struct, frozen=True):
    """A fulfillment request claimed for delivery."""

    request: FulfillmentRequest
    attempts: int
    kind: str = "request"  # or "cancel": tell the warehouse system to stop


class QueuedNotification(Struct, frozen=True, kw_only=True):
    """A customer message a turn stores, to go out from ``due_at``."""

    order_id: str
    shipment_id: str | None
    episode: int
    message: Outgoing
    due_at: datetime


class DueNotification(Struct, frozen=True):
    """A customer message claimed for sending."""

    id: int
    order_id: str
    message: Outgoing
    attempts: int
    # The claim's own end, as the database set it: it names this claim, so what a sender
    # records applies only while the message is still its own (a later claim of the same
    # message always ends later).
    claim: datetime


class RequestSettling(Posting, Protocol):
    """What became of claimed requests, written in one transaction with the messages the
    deliveries answered."""

    async def sent(self, delivered: Sequence[tuple[str, str]], now: datetime) -> None:
        """Mark (shipment, kind) deliveries done."""
        ...

    async def retry(
        self, shipment_id: str, kind: str, error: str, next_attempt_at: datetime
    ) -> None: ...

    async def failed(self, shipment_id: str, kind: str, error: str) -> bool:
        """Mark a delivery refused for good; False when it was withdrawn meanwhile."""
        ...


class RequestOutbox(Protocol):
    """Fulfillment requests waiting for delivery to the warehouse system."""

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[DueRequest]:
        """Take requests due by ``now`` (and ones whose sender's lease ran out) for
        ``lease_s`` of real time; other processes skip them meanwhile."""
        ...

    def settling(self) -> AbstractAsyncContextManager[RequestSettling]:
        """A transaction to record deliveries in; committed when the block ends."""
        ...


class NotificationSettling(Posting, Protocol):
    """What became of claimed customer messages, written in one transaction with what
    their orders are told. Each write applies only while the claim ``claim`` holds
    (``sent`` whoever holds it); False when it did not apply."""

    async def sent(self, delivered: Sequence[tuple[int, str, datetime]]) -> set[int]:
        """Record (row, Message-ID, when) messages sent, in one write; the rows recorded
        now (the others were recorded sent already)."""
        ...

    async def later(
        self, row_id: int, claim: datetime, when: datetime, error: str | None, tried: bool
    ) -> bool:
        """Try again at ``when``: after a temporary failure, or out of quiet hours (not
        ``tried``)."""
        ...

    async def failed(self, row_id: int, claim: datetime, error: str) -> bool: ...

    async def skipped(self, row_id: int, claim: datetime, reason: str) -> bool:
        """Not to be sent after all (its customer unsubscribed)."""
        ...


class NotificationOutbox(Protocol):
    """Customer messages waiting to be sent."""

    async def claim_due(self, now: datetime, claim: timedelta, limit: int) -> list[DueNotification]:
        """Claim messages due by ``now`` (and ones whose claim ran out) for ``claim`` of
        real time, counting the attempt; other processes skip them meanwhile."""
        ...

    async def opted_out(self, address: str) -> bool:
        """Whether ``address`` unsubscribed from marketing messages."""
        ...

    def settling(self) -> AbstractAsyncContextManager[NotificationSettling]:
        """A transaction to record messages' outcomes in; committed when the block ends."""
        ...


class DueCall(Struct, frozen=True):
    """A call to a store's platform, claimed for delivery."""

    key: str
    parcel: PlatformCall
    attempts: int


class PlatformOutbox(Protocol):
    """What the stores' platforms must be told, waiting for delivery. Claims, like the
    other outboxes', hold for ``lease_s`` of real time."""

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[DueCall]: ...

    async def sent(self, key: str, result: str, now: datetime) -> None:
        """Record the call delivered, with the platform's id of what it recorded."""
        ...

    async def retry(self, key: str, error: str, next_attempt_at: datetime) -> None: ...

    async def failed(self, key: str, error: str) -> None:
        """Record the call refused for good: a person looks (``orderd order show``)."""
        ...
