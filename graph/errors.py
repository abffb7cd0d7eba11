"""Error codes on every GraphQL error, and no internals in the ones nobody expected."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import strawberry
from django.core.exceptions import PermissionDenied
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from catalog.errors import ErrorCode, database_unreachable

logger = logging.getLogger(__name__)

INTERNAL = "internal"
UNAVAILABLE_MESSAGE = "The database is unreachable; try again shortly."


def invalid(message: str) -> GraphQLError:
    """Return a request error about input the client can fix."""
    return GraphQLError(message, extensions={"code": ErrorCode.INVALID.value})


def cursor_unknown(cursor: str) -> GraphQLError:
    """Return the refusal of a cursor this log never issued (catalog.cursors)."""
    return GraphQLError(
        f"This stream never issued the cursor {cursor[:64]!r} (malformed, from another deployment, "
        "from before the database was restored, or ahead of the log): reload your state, then "
        "subscribe without `after`.",
        extensions={"code": ErrorCode.CURSOR_UNKNOWN.value},
    )


def _is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return (
        original is not None
        and not database_unreachable(original)
        and not isinstance(
            # An operationName the document does not have: the client's mistake.
            original,
            GraphQLError | InvalidOperationTypeError | CannotGetOperationTypeError | PermissionDenied,
        )
    )


class ErrorCodes(MaskErrors):
    """Give every error an `extensions.code`; hide the text of unexpected exceptions.

    Request errors (syntax, validation, values that do not fit their type, the limits on
    depth, aliases and tokens) get `invalid`; a missing permission gets `permission_denied`
    and names the permission; a database that cannot be reached gets `unavailable` (from any
    resolver or subscription, mutations included: strawberry-django turns only validation,
    permission and not-found errors into an OperationInfo), without the driver's text, which
    names hosts and ports;
    an exception nobody raised on purpose is logged with its traceback here and reaches the
    client only as "Unexpected error." with code `internal`.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": INTERNAL}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = [_explained(error) for error in super()._process_errors(errors)]
        for error in processed:
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": ErrorCode.INVALID.value}
        return processed


def _explained(error: GraphQLError) -> GraphQLError:
    if database_unreachable(error.original_error):
        return GraphQLError(
            UNAVAILABLE_MESSAGE, error.nodes, path=error.path, extensions={"code": ErrorCode.UNAVAILABLE.value}
        )
    if isinstance(error.original_error, PermissionDenied):
        extensions = {"code": ErrorCode.PERMISSION_DENIED.value}
        if permission := getattr(error.original_error, "permission", None):
            extensions["permission"] = permission
        return GraphQLError(error.message, error.nodes, path=error.path, extensions=extensions)
    if not isinstance(error.original_error, InvalidOperationTypeError):
        return error
    # Raised by the legacy graphql-ws subprotocol, which carries subscriptions only.
    return GraphQLError(
        f"{error.original_error.as_http_error_reason('the graphql-ws subprotocol').capitalize()}: "
        "send them over HTTP or the graphql-transport-ws subprotocol.",
        extensions={"code": ErrorCode.INVALID.value},
    )


class Schema(strawberry.Schema):
    """Strawberry's schema, logging only the errors that are the server's fault."""

    async def execute(self, *args: Any, allowed_operation_types: Iterable[OperationType] | None = None, **kwargs: Any):
        # A subscription over plain HTTP would run as a query and return nonsense: it is
        # refused (HTTP 400) and belongs on the WebSocket.
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES) - {OperationType.SUBSCRIPTION}
        return await super().execute(*args, allowed_operation_types=allowed, **kwargs)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Bad documents and bad input are answered with a clear error; logging each with a
        # traceback would bury the real faults.
        for error in errors:
            if database_unreachable(error.original_error):
                # An outage, not a fault in the code: one line each, no traceback.
                reason = " ".join(str(error.original_error).split())
                logger.warning("Database unreachable in %s: %s", error.path, reason)
            elif _is_unexpected(error):
                logger.error("Unexpected error in %s", error.path, exc_info=error.original_error)
