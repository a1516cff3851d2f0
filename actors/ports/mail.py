"""Messages for order actors: stored in their mailboxes first, then put on the stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from msgspec import Struct

from actors.order.messages import Message


class Posted(Struct, frozen=True):
    """A message stored in its order's mailbox, numbered ``seq`` in the order."""

    id: int
    order_id: str
    seq: int
    body: bytes
    batch: int | None = None  # its row of ``unstreamed`` until it is on the stream


class Posting(Protocol):
    """Storing messages inside a transaction that also records something else."""

    async def post(self, messages: Sequence[Message]) -> list[Posted]:
        """Store ``messages`` in this transaction, each with its order's next number."""
        ...


class Mailbox(Protocol):
    """The order actors' mailboxes, and which of their messages are on the stream."""

    async def post(self, messages: Sequence[Message]) -> list[Posted]:
        """Store ``messages`` in one transaction, each with its order's next number."""
        ...

    async def streamed(self, batches: Sequence[int]) -> None:
        """The messages of ``batches`` are on the stream."""
        ...

    async def unstreamed(self, before: datetime, limit: int) -> list[Posted]:
        """Messages stored before ``before`` and not known to be on the stream, oldest
        batch first, whole batches up to about ``limit`` messages."""
        ...

    async def unapplied_of(self, order_id: str, before_seq: int) -> list[Posted]:
        """The order's messages numbered before ``before_seq`` that it has not applied."""
        ...


class MessageStream(Protocol):
    """The order stream, as stored messages are put on it."""

    @property
    def failures(self) -> tuple[type[Exception], ...]:
        """What :meth:`add` raises when the stream did not take the messages."""
        ...

    async def add(self, posted: Sequence[Posted]) -> list[str]:
        """Put stored messages on the stream, in order; return their entry ids."""
        ...
