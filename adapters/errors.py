"""Errors an operator can act on.

Each carries one line that says what went wrong, where, and what to do. The CLI prints
that line and exits 2; nothing above it shows a traceback.
"""


class OrderdError(Exception):
    """A failure with a clear, one-line explanation for the operator."""


class ConfigError(OrderdError):
    """A configuration file or environment override is invalid."""


class DatabaseUnavailable(OrderdError):
    """PostgreSQL cannot be reached or refused the connection."""


class SchemaVersionError(OrderdError):
    """The database schema is not at the version this orderd expects."""


class CatalogError(OrderdError):
    """A catalog import was rejected; nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"catalog rejected, nothing imported: {count} problem{'s' if count != 1 else ''}"
        )


def printable(text: str, limit: int = 300) -> str:
    """``text`` from outside (an answer body, an exception) made safe to store and log:
    control characters (NUL included, which PostgreSQL refuses) become spaces."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(cleaned.split())[:limit]
