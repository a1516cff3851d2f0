"""Errors an operator can act on.

Each carries one line that says what went wrong, where, and what to do. The CLI prints
that line and exits 2; nothing above it shows a traceback.
"""


class OrderdError(Exception):
    """A failure with a clear, one-line explanation for the operator."""


def printable(text: str, limit: int = 300) -> str:
    """``text`` from outside (an answer body, an exception) made safe to store and log:
    control characters (NUL included, which PostgreSQL refuses) become spaces."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(cleaned.split())[:limit]
