"""Where bought shipping labels are kept, as the label effect needs it."""

from __future__ import annotations

from typing import Protocol


class LabelStore(Protocol):
    """Label files, each kept under a name of its own."""

    async def keep(self, name: str, label: bytes) -> str:
        """Keep ``label`` as the file ``name``, replacing one of that name.

        Returns the file's absolute path once the file is whole and durable; the file is
        never seen part-written. Raises ValueError for a name that is not a plain file
        name, and OSError (disk full, no permission, ...) when the file cannot be kept.
        """
        ...

    async def close(self) -> None:
        """Finish the labels being kept; nothing more is taken."""
        ...
