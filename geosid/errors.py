"""Errors a user acts on: each says what was wrong and what is valid, in one line.

The CLI prints these as `geosid: <message>` with exit code 1 (no traceback unless
--debug); anything else is a bug and keeps its traceback. A class here also derives
from the builtin it refines (FileNotFoundError, KeyError, ValueError), so callers that
catch the builtin keep working.
"""

from __future__ import annotations

from geosid.schemas.registry import UnknownTableError


class UserError(Exception):
    """A refusal or a mistake in what was asked, not a bug."""

    def __str__(self) -> str:  # KeyError would quote its message
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotFoundError(UserError, FileNotFoundError):
    """A path, table or run that does not exist."""


class UnknownNameError(UserError, KeyError):
    """A name (source, codebook version, table, run, column) that is not known."""


class InvalidRequestError(UserError, ValueError):
    """Arguments that cannot go together or a value out of its range."""


class GateError(UserError, RuntimeError):
    """A candidate codebook version failed the publish gates."""


class QualityGateError(UserError, RuntimeError):
    """A data-quality gate did not hold (the suites say which checks failed)."""


class ImmutableVersionError(UserError, RuntimeError):
    """A published (or retired) codebook version cannot be changed."""


class SchemaMismatchError(UserError, ValueError):
    """A DataFrame does not match the registered schema of the table it is written to."""


class MissingStateError(UserError, RuntimeError):
    """The day before has events but no history state: rebuild with a backfill."""


class QueryError(UserError, ValueError):
    """SQL the engine refused (syntax, unknown table or column)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception type the CLI reports as a user's mistake (one line, exit 1)."""

    return (UserError, UnknownTableError)


class NotArrivedError(UserError, RuntimeError):
    """An input day a step needs has not arrived (no complete drop ingested, not closed)."""
