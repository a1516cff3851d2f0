"""The order stream as the runtime reads it: entries of a consumer group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from msgspec import Struct


class GroupLost(Exception):
    """The stream or its group is gone (Redis lost its data): recreate and rebuild."""


class Entry(Struct, frozen=True):
    """One message of an order on the stream, as delivered to this consumer."""

    id: str
    order_id: str
    seq: int
    body: bytes
    deliveries: int = 1


class ConsumerGroup(Protocol):
    """The order stream as one consumer of the group every orderd process joins reads it.

    Reading, claiming and housekeeping raise :class:`GroupLost` when the group is gone.
    """

    @property
    def stream(self) -> str:
        """The stream's name, as dead letters record it."""
        ...

    async def ensure_group(self) -> bool:
        """Create the stream and group if missing; True when they were created."""
        ...

    async def read(
        self,
        consumer: str,
        *,
        count: int,
        block_ms: int | None,
        own_pending: bool = False,
        after: str = "0",
    ) -> tuple[list[Entry], list[str]]:
        """New entries for ``consumer`` (or its own pending ones, those after ``after``);
        also ids of foreign entries, to acknowledge and drop."""
        ...

    async def ack(self, ids: Sequence[str]) -> None: ...

    async def claim_idle(
        self, consumer: str, min_idle_ms: int, *, start: str = "0-0", count: int = 100
    ) -> tuple[list[Entry], str]:
        """Take over entries idle that long on any consumer, scanning the pending list
        from ``start``; also where the next scan goes on from (``0-0`` once done)."""
        ...

    async def dead_letter(self, entry: Entry, error: str) -> None:
        """Copy the entry to the dead-letter stream and acknowledge it, both or neither."""
        ...

    async def trim(self) -> int:
        """Drop entries every group has acknowledged."""
        ...

    async def forget_idle_consumers(self, idle_ms: int) -> list[str]:
        """Delete consumers idle that long, never one with pending entries."""
        ...

    async def oldest_unfinished_ms(self) -> int | None:
        """When the oldest entry the group has not finished was added (ms since the
        epoch); None when there is none."""
        ...

    async def master_id(self) -> str:
        """Which server holds the stream (its replication id): another one after a
        failover or a restart, which may lack the last entries added before it."""
        ...


class DeadLetters(Protocol):
    """Where messages given up on are kept for a person to look at."""

    async def record(
        self,
        *,
        stream: str,
        entry_id: str,
        order_id: str,
        seq: int,
        deliveries: int,
        error: str,
        payload: bytes,
    ) -> None:
        """Keep the entry (once: recording it again changes nothing)."""
        ...
