"""Durable reminders: the rows that remember them, and the schedule that finds due ones."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from actors.ports.mail import Posting
from actors.ports.turns import Reminder


class ReminderSchedule(Protocol):
    """When each reminder not yet fired is due, kept where due ones are found at once.

    A copy: the reminders themselves are in a :class:`ReminderStore`, and the schedule is
    rebuilt from them when it was lost.
    """

    @property
    def failures(self) -> tuple[type[Exception], ...]:
        """What the calls raise when the schedule could not be reached."""
        ...

    async def add(self, reminders: Sequence[Reminder]) -> None: ...

    async def due(self, until_ms: int, limit: int) -> list[str]:
        """The keys of up to ``limit`` reminders due by ``until_ms`` (ms since the epoch)."""
        ...

    async def remove(self, key: str) -> None: ...


class ReminderFiring(Posting, Protocol):
    """Firing reminders: each marked fired in the transaction that posts its message."""

    async def fire(self, key: str) -> Reminder | None:
        """Mark the reminder fired; None when it was fired already (or is unknown)."""
        ...


class ReminderStore(Protocol):
    """The reminders themselves, kept until they have fired."""

    async def unfired(self) -> list[Reminder]: ...

    async def due(self, now: datetime, limit: int) -> list[str]:
        """The keys of up to ``limit`` reminders not fired and due by ``now``, oldest
        first."""
        ...

    def firing(self) -> AbstractAsyncContextManager[ReminderFiring]:
        """A transaction to fire reminders in; committed when the block ends."""
        ...
