"""Error codes that clients can act on; every ValidationError the services raise uses one."""

from __future__ import annotations

from enum import StrEnum

import psycopg
from django.core.exceptions import ValidationError
from django.db import OperationalError


class ErrorCode(StrEnum):
    REQUIRED = "required"
    BLANK = "blank"
    MAX_LENGTH = "max_length"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    INVALID_TRANSITION = "invalid_transition"
    VERSION_CONFLICT = "version_conflict"
    # A cursor this log never issued: the client must reload its state (see catalog.cursors).
    CURSOR_UNKNOWN = "cursor_unknown"
    # Who may do what (the GraphQL layer and the transport use these).
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_CREDENTIALS = "invalid_credentials"
    # Too many failed sign-ins from this address or for this username: wait, then try again.
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    CSRF_FAILED = "csrf_failed"
    LIMIT_EXCEEDED = "limit_exceeded"
    # The database cannot be reached (or the connection to it broke): the client may send the
    # same request again shortly.
    UNAVAILABLE = "unavailable"


# Django's own validation codes, folded into the few this API documents.
_DJANGO_CODES = {
    "null": ErrorCode.BLANK,
    "blank": ErrorCode.BLANK,
    "required": ErrorCode.REQUIRED,
    "max_length": ErrorCode.MAX_LENGTH,
}


def field_error(field: str, message: str, code: ErrorCode) -> ValidationError:
    """Return an error about one field, shaped so strawberry-django keeps its code."""
    # handle_django_errors reads the code from the inner error only.
    return ValidationError({field: ValidationError(message, code=code.value)})


def operation_error(message: str, code: ErrorCode) -> ValidationError:
    """Return an error about the operation as a whole."""
    return ValidationError(message, code=code.value)


def normalized(error: ValidationError) -> ValidationError:
    """Return `error` with Django's field codes mapped to the documented ones."""
    return ValidationError(
        {
            field: [
                ValidationError(e.message, code=_DJANGO_CODES.get(e.code, ErrorCode.INVALID).value, params=e.params)
                for e in errors
            ]
            for field, errors in error.error_dict.items()
        }
    )


# Besides SQLSTATE class 08 (connection exception): a server shutting down, crashed, starting up,
# or at its connection limit. Other OperationalErrors (a deadlock, a statement or lock timeout)
# come from a database that answers: faults to look into, reported as `internal`.
_SERVER_AWAY = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unreachable(error: BaseException | None) -> bool:
    """Return whether `error` says that the database cannot be reached or the connection broke.

    psycopg 3 reports a connection it could not open, or lost, as an OperationalError without
    SQLSTATE (Django wraps it in its own OperationalError); its InterfaceError means a misuse
    (a closed cursor), a fault like any other.
    """
    if isinstance(error, OperationalError):  # Django's wrapper around the driver's error
        error = error.__cause__
    if not isinstance(error, psycopg.OperationalError):
        return False
    return error.sqlstate is None or error.sqlstate.startswith("08") or error.sqlstate in _SERVER_AWAY
