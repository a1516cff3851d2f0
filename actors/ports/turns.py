"""An order's turn as the runtime loads and saves it, and the leases that keep other
processes off the order meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import IntEnum
from typing import Protocol

from msgspec import Struct

from actors.order.behaviour import ResendFulfillment, Snapshot
from actors.order.events import Event
from actors.order.messages import Message
from actors.ports.mail import Posted
from actors.ports.outboxes import QueuedNotification, QueuedRequest
from actors.stock import LedgerEntry
from actors.storefront import PlatformCall


class ConcurrentTurn(Exception):
    """Another process saved a turn of this order first; this turn must be dropped."""


class ConcurrentTurns(Exception):
    """Turns of a batch whose orders another process saved first."""

    def __init__(self, order_ids: set[str]) -> None:
        super().__init__(f"saved by another process first: {', '.join(sorted(order_ids))}")
        self.order_ids = frozenset(order_ids)


class StaleTurns(Exception):
    """Turns of a batch whose stock changes Redis lost while they ran (it was rebuilt)."""

    def __init__(self, order_ids: set[str]) -> None:
        super().__init__(", ".join(sorted(order_ids)))
        self.order_ids = frozenset(order_ids)


class Loaded(Struct, frozen=True):
    """An order's saved state (None and version 0 for one never saved)."""

    snapshot: Snapshot | None
    version: int
    last_seq: int


class Reminder(Struct, frozen=True):
    """A durable timer of an order: ``kind`` comes due at ``due_at``."""

    key: str
    order_id: str
    kind: str
    due_at: datetime


class Turn(Struct, frozen=True, kw_only=True):
    """One applied message of one order, to be saved."""

    order_id: str
    loaded: Loaded
    snapshot: Snapshot
    events: Sequence[Event]
    seq: int
    ledger: Sequence[LedgerEntry] = ()
    reminders: Sequence[Reminder] = ()
    told: Sequence[Message] = ()
    requests: Sequence[QueuedRequest] = ()
    resends: Sequence[ResendFulfillment] = ()
    platform: Sequence[PlatformCall] = ()  # for the platform outbox
    notifications: Sequence[QueuedNotification] = ()


class OrderStore(Protocol):
    """The orders' saved state: loaded at the start of a turn, saved at its end."""

    async def load_many(self, order_ids: Sequence[str]) -> dict[str, Loaded]:
        """The saved state of each order, in one query."""
        ...

    async def save(self, turns: Sequence[Turn]) -> list[Posted]:
        """Save the turns in one transaction, or none of them; return the messages they
        told (themselves, or the orders their releases filled), to stream once saved.

        :class:`ConcurrentTurns` names the turns another process saved first,
        :class:`StaleTurns` those whose stock changes Redis lost meanwhile.
        """
        ...


class Taken(IntEnum):
    """What taking an order's lease found."""

    BUSY = 0  # another process's turn holds it
    TAKEN = 1
    # Taken, and this process ran the order's last turn: nobody has saved it since.
    OURS = 2


class LeaseBook(Protocol):
    """Order leases: which process runs an order's turn right now. A lease is held with a
    token, expires by itself after ``lease_ms`` unless renewed, and is freed only by the
    token that took it."""

    @property
    def lease_ms(self) -> int: ...

    @property
    def failures(self) -> tuple[type[Exception], ...]:
        """What the calls raise when they could not tell whether a lease is held."""
        ...

    def new_token(self) -> str:
        """A turn's own lease token."""
        ...

    async def take(self, wanted: Sequence[tuple[str, str]]) -> list[Taken]:
        """Take the lease of each (order, token) where no other process's turn holds it
        (this process runs one turn of an order at a time: a lease its earlier turn still
        holds is taken over)."""
        ...

    async def renew(self, held: Sequence[tuple[str, str]]) -> list[bool]:
        """Extend each (order, token) lease still held with that token; True where it was
        still held."""
        ...

    async def free(self, held: Sequence[tuple[str, str]]) -> int:
        """Free each (order, token) lease still held with that token; return how many."""
        ...
