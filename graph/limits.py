"""Limits on what one GraphQL document may ask, from the settings (see README: Limits)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from django.conf import settings
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.extensions.base_extension import SchemaExtension

from catalog.errors import ErrorCode
from graph.documents import ambiguity


class OperationSelection(SchemaExtension):
    """Refuse a document of several operations that does not name the one to run (documents.ambiguity).

    Set before validation runs, the error makes the request fail as a validation error does,
    over HTTP and graphql-transport-ws (the legacy handler asks documents.ambiguity itself).
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            # The name the request gave: ExecutionContext.operation_name falls back to the first's.
            problem = ambiguity(context.graphql_document, context._provided_operation_name)
            if problem is not None:
                context.pre_execution_errors = [GraphQLError(problem, extensions={"code": ErrorCode.INVALID.value})]
        yield


class IntrospectionSwitch(AddValidationRules):
    """Refuse introspection when `GRAPHQL_INTROSPECTION` is off (read on each operation)."""

    def __init__(self) -> None:
        super().__init__([NoSchemaIntrospectionCustomRule])

    def on_operation(self) -> Iterator[None]:
        if settings.GRAPHQL_INTROSPECTION:
            yield
        else:
            yield from super().on_operation()


def document_limits() -> list[Callable[[], SchemaExtension]]:
    """Return factories of the extensions that refuse documents over the configured limits."""
    return [
        # Tokens first: the parser stops counting there, before a huge document costs more.
        partial(MaxTokensLimiter, max_token_count=settings.GRAPHQL_MAX_TOKENS),
        # Introspection fields are not counted: GraphiQL's own query nests deeper than any
        # query of the catalog's needs to.
        partial(QueryDepthLimiter, max_depth=settings.GRAPHQL_MAX_DEPTH),
        partial(MaxAliasesLimiter, max_alias_count=settings.GRAPHQL_MAX_ALIASES),
        IntrospectionSwitch,
        OperationSelection,
    ]
