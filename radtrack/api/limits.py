"""Bounds on what one request may cost: body size, content type, query depth and cost.

The parser's token limit (api.max_tokens) is applied in documents.py; the depth and cost limits
here run on the parsed document *before* graphql-core's validation, whose OverlappingFields rule
is quadratic in the worst case, so a hostile document is refused before it can cost much. A
refusal names the setting it comes from and has a code of its own (QUERY_TOO_DEEP,
QUERY_TOO_COSTLY), never graphql-core's "Validation aborted." of a walk cut short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
)

from radtrack.api.errors import ErrorCode

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


class _Size(NamedTuple):
    """What a selection set costs: nested fields, nested fragments, fields counted."""

    depth: int = 0
    nesting: int = 0  # fragments within fragments (named or inline): a chain's length
    cost: int = 0


class _Measure:
    """Sizes of selection sets, fragments expanded; each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.done: dict[str, _Size] = {}
        self.active: set[str] = set()

    def selection_set(self, node: SelectionSetNode | None) -> _Size:
        """Every field, alias and fragment spread costs 1."""
        depth = nesting = cost = 0
        if node is None:
            return _Size()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                sub = self.selection_set(selection.selection_set)
                if selection.name.value in INTROSPECTION_ROOTS:
                    sub = _Size(cost=sub.cost)
                depth = max(depth, sub.depth + 1)
                nesting = max(nesting, sub.nesting)
                cost += sub.cost + 1
            elif isinstance(selection, InlineFragmentNode):
                sub = self.selection_set(selection.selection_set)
                depth = max(depth, sub.depth)
                nesting = max(nesting, sub.nesting + 1)
                cost += sub.cost
            elif isinstance(selection, FragmentSpreadNode):
                sub = self.fragment(selection.name.value)
                depth = max(depth, sub.depth)
                nesting = max(nesting, sub.nesting + 1)
                cost += sub.cost + 1
        return _Size(depth, nesting, cost)

    def fragment(self, name: str) -> _Size:
        known = self.done.get(name)
        if known is not None:
            return known
        if name in self.active:
            raise _FragmentCycle(name)
        definition = self.fragments.get(name)
        if definition is None:
            return _Size()  # KnownFragmentNamesRule reports it
        self.active.add(name)
        try:
            result = self.selection_set(definition.selection_set)
        finally:
            self.active.discard(name)
        self.done[name] = result
        return result


def _refusal(code: ErrorCode, message: str, node: Node | None = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code.value})


def too_deep(max_depth: int) -> GraphQLError:
    """The refusal of a document nested too deeply to parse, measure or validate at all."""
    message = f"The document is nested too deeply (the limit is {max_depth}, api.max_depth)."
    return _refusal(ErrorCode.QUERY_TOO_DEEP, message)


def check_limits(document: DocumentNode, max_depth: int, max_cost: int) -> list[GraphQLError]:
    """Errors for operations deeper than ``max_depth`` or costlier than ``max_cost``.

    Depth counts nested fields (``{ a { b } }`` is 2); nested fragments (spreads and inline
    fragments, ``{ ...A } fragment A on Query { ...B }`` is 2) are counted apart and bounded by
    ``max_depth`` too, so a long fragment chain is refused here, before validation walks it.
    Cost counts every field, alias and fragment spread once, fragments expanded where they are
    spread. Fragment cycles are refused here too, since they would make the expansion endless.
    Each error names its setting and carries its ``extensions.code``: QUERY_TOO_DEEP,
    QUERY_TOO_COSTLY (a cycle: none, the caller's GRAPHQL_VALIDATION_FAILED).
    """
    measure = _Measure(document)
    errors: list[GraphQLError] = []
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                size = measure.selection_set(definition.selection_set)
                errors += _over(size, "Query", max_depth, max_cost, definition)
        # unused fragments too, as if spread at the root: validation walks them, so they must
        # be cheap as well (the first one over a limit is refused, not one error each)
        used = set(measure.done)
        for definition in document.definitions:
            if errors:
                break
            if isinstance(definition, FragmentDefinitionNode):
                name = definition.name.value
                if name in used:
                    continue  # measured where it is spread
                size = measure.fragment(name)
                size = size._replace(nesting=size.nesting + 1)  # as if spread
                errors += _over(size, f"Fragment {name}", max_depth, max_cost, definition)
    except _FragmentCycle as cycle:
        errors.append(GraphQLError(f"Cannot spread fragment '{cycle.name}' within itself."))
    except RecursionError:
        errors.append(too_deep(max_depth))
    return errors


def _over(size: _Size, what: str, max_depth: int, max_cost: int, node: Node) -> list[GraphQLError]:
    errors = []
    if size.depth > max_depth:
        message = f"{what} depth {size.depth} exceeds the limit of {max_depth} (api.max_depth)."
        errors.append(_refusal(ErrorCode.QUERY_TOO_DEEP, message, node))
    if size.nesting > max_depth:
        message = (
            f"{what} nests fragments {size.nesting} deep, over the limit of {max_depth} "
            "(api.max_depth)."
        )
        errors.append(_refusal(ErrorCode.QUERY_TOO_DEEP, message, node))
    if size.cost > max_cost:
        message = f"{what} cost {size.cost} exceeds the limit of {max_cost} (api.max_cost)."
        errors.append(_refusal(ErrorCode.QUERY_TOO_COSTLY, message, node))
    return errors
