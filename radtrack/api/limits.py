"""Bounds on what one request may cost: body size, content type, query depth and cost.

The parser's token limit (api.max_tokens) is applied in documents.py; the depth and cost limits
here run on the parsed document *before* graphql-core's validation, whose OverlappingFields rule
is quadratic in the worst case, so a hostile document is refused before it can cost much.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# Most users one upsertUsers call may carry (the import tool sends more in several calls).
MAX_UPSERT_USERS = 10_000
# Their nesting is bounded by graphql-core's MaxIntrospectionDepthRule, not by api.max_depth.
INTROSPECTION_ROOTS = frozenset(("__schema", "__type"))


class BodyTooLarge(Exception):
    """The request body is longer than the limit; nothing beyond the limit was read."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, read chunk by chunk; None when the client went away first.

    Raises BodyTooLarge as soon as more than ``limit`` bytes have arrived (chunked bodies have no
    Content-Length to check up front).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def is_json(content_type: bytes | None) -> bool:
    """True for ``application/json``, optionally with ``charset=utf-8``."""
    if content_type is None:
        return False
    media_type, *params = content_type.decode("latin-1").split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


class _FragmentCycle(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Measure:
    """Depth and cost of selection sets, fragments expanded; each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, tuple[int, int]] = {}
        self.active: set[str] = set()

    def selection_set(self, node: SelectionSetNode | None) -> tuple[int, int]:
        """(depth, cost): every field, alias and fragment spread costs 1."""
        depth = cost = 0
        if node is None:
            return depth, cost
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                sub_depth, sub_cost = self.selection_set(selection.selection_set)
                if selection.name.value in INTROSPECTION_ROOTS:
                    sub_depth = 0
                depth = max(depth, sub_depth + 1)
                cost += sub_cost + 1
            elif isinstance(selection, InlineFragmentNode):
                sub_depth, sub_cost = self.selection_set(selection.selection_set)
                depth = max(depth, sub_depth)
                cost += sub_cost
            elif isinstance(selection, FragmentSpreadNode):
                sub_depth, sub_cost = self.fragment(selection.name.value)
                depth = max(depth, sub_depth)
                cost += sub_cost + 1
        return depth, cost

    def fragment(self, name: str) -> tuple[int, int]:
        known = self.done.get(name)
        if known is not None:
            return known
        if name in self.active:
            raise _FragmentCycle(name)
        definition = self.fragments.get(name)
        if definition is None:
            return 0, 0  # KnownFragmentNamesRule reports it
        self.active.add(name)
        try:
            result = self.selection_set(definition.selection_set)
        finally:
            self.active.discard(name)
        self.done[name] = result
        return result


def check_limits(document: DocumentNode, max_depth: int, max_cost: int) -> list[GraphQLError]:
    """Errors for operations deeper than ``max_depth`` or costlier than ``max_cost``.

    Depth counts nested fields (``{ a { b } }`` is 2); cost counts every field, alias and fragment
    spread once, fragments expanded where they are spread. Fragment cycles are refused here too,
    since they would make the expansion endless.
    """
    measure = _Measure(document)
    errors: list[GraphQLError] = []
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                depth, cost = measure.selection_set(definition.selection_set)
                if depth > max_depth:
                    message = f"Query depth {depth} exceeds the limit of {max_depth}."
                    errors.append(GraphQLError(message, definition))
                if cost > max_cost:
                    message = f"Query cost {cost} exceeds the limit of {max_cost}."
                    errors.append(GraphQLError(message, definition))
        # unused fragments too: validation walks them, so they must be cheap as well
        if not errors:
            for definition in document.definitions:
                if isinstance(definition, FragmentDefinitionNode):
                    _, cost = measure.fragment(definition.name.value)
                    if cost > max_cost:
                        message = f"Fragment cost {cost} exceeds the limit of {max_cost}."
                        errors.append(GraphQLError(message, definition))
    except _FragmentCycle as cycle:
        errors.append(GraphQLError(f"Cannot spread fragment '{cycle.name}' within itself."))
    except RecursionError:
        errors.append(GraphQLError("The document is nested too deeply."))
    return errors
