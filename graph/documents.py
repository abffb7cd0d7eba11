"""What the WebSocket side needs to know of a document before it runs: parsed once per document.

Anything that does not parse, or names no single operation, is left to Strawberry, which
answers errors the way each protocol wants.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Literal

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
)

INLINE: Literal["inline"] = "inline"
RESUMABLE_FIELD = "sourceEvents"


def subscription_field(query: object, operation_name: object) -> str | None:
    """Return the root field of the operation to run when it is a subscription (else None)."""
    if not isinstance(query, str) or not isinstance(operation_name, str | None):
        return None
    return _analysed(query, operation_name)[0]


def is_query_or_mutation(query: object, operation_name: object) -> bool:
    """Return whether the operation to run is a query or a mutation of a document that parses."""
    if not isinstance(query, str) or not isinstance(operation_name, str | None):
        return False
    return _operation_type(query, operation_name) in (OperationType.QUERY, OperationType.MUTATION)


def ambiguity(document: DocumentNode, operation_name: str | None) -> str | None:
    """Return why the operation to run is not named, when the document has several (else None).

    The GraphQL spec's GetOperation makes that a request error; Strawberry 0.341 runs the first
    operation, so a client could run a mutation it did not name.
    """
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    if operation_name is not None or len(operations) < 2:
        return None
    names = ", ".join(node.name.value if node.name else "(anonymous)" for node in operations)
    return f"The document has {len(operations)} operations ({names}): name the one to run in operationName."


def ambiguity_of(query: object, operation_name: object) -> str | None:
    """Return ambiguity() of a document not parsed yet (None when it does not parse)."""
    if not isinstance(query, str) or not isinstance(operation_name, str | None):
        return None
    return _ambiguity(query, operation_name)


@functools.lru_cache(maxsize=256)
def _ambiguity(query: str, operation_name: str | None) -> str | None:
    try:
        return ambiguity(parse(query, no_location=True, max_tokens=settings.GRAPHQL_MAX_TOKENS), operation_name)
    except GraphQLError:
        return None


@functools.lru_cache(maxsize=256)
def _operation_type(query: str, operation_name: str | None) -> OperationType | None:
    try:
        document = parse(query, no_location=True, max_tokens=settings.GRAPHQL_MAX_TOKENS)
    except GraphQLError:
        return None
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [node for node in operations if node.name is not None and node.name.value == operation_name]
    return operations[0].operation if len(operations) == 1 else None


def after_argument(query: str, operation_name: str | None) -> tuple[str, bool] | Literal["inline"] | None:
    """Return how the subscription passes sourceEvents' `after`.

    (its variable, whether that variable's definition has a default), INLINE when the document
    writes a value, None when it passes none (or null).
    """
    return _analysed(query, operation_name)[1]


@functools.lru_cache(maxsize=256)
def _analysed(query: str, operation_name: str | None) -> tuple[str | None, tuple[str, bool] | Literal["inline"] | None]:
    try:
        document = parse(query, no_location=True, max_tokens=settings.GRAPHQL_MAX_TOKENS)
    except GraphQLError:
        return None, None
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [node for node in operations if node.name is not None and node.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation != OperationType.SUBSCRIPTION:
        return None, None
    operation = operations[0]
    fragments = {node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)}
    fields = list(_root_fields(operation.selection_set, fragments, set()))
    if not fields:
        return None, None
    defaults = {
        node.variable.name.value: node.default_value is not None for node in operation.variable_definitions or ()
    }
    after: tuple[str, bool] | Literal["inline"] | None = None
    for field in fields:
        for argument in (field.arguments or ()) if field.name.value == RESUMABLE_FIELD else ():
            if argument.name.value != "after" or isinstance(argument.value, NullValueNode):
                continue
            if isinstance(argument.value, VariableNode):
                name = argument.value.name.value
                after = (name, defaults.get(name, False))
            else:
                after = INLINE
    return fields[0].name.value, after


def _root_fields(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: set[str]
) -> Iterator[FieldNode]:
    """Yield the operation's root fields, through its fragments (each once: a cycle is invalid anyway)."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            if selection.name.value in fragments:
                yield from _root_fields(fragments[selection.name.value].selection_set, fragments, seen)
