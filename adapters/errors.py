"""Errors of the edges an operator can act on: configuration, the database, the catalog.

Each is an :class:`~actors.errors.OrderdError`: one line that says what went wrong and
what to do.
"""

from actors.errors import OrderdError


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
