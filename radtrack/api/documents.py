"""Parsed and validated documents, cached by query text.

Validation costs milliseconds, execution of a small query a fraction of that, so a client that
sends the same query again (the usual case) skips parse, limits and validation entirely. Refusals
are cached too, already formatted, so a repeated bad query is as cheap as a good one.

A cache belongs to one app and is built with that app's schema, limits and validation rules
(introspection on or off), which never change afterwards: a cached verdict is never reused under
other rules.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from graphql.validation import (
    ASTValidationRule,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)

from radtrack.api.errors import ErrorCode, format_request_error
from radtrack.api.limits import check_limits, too_deep
from radtrack.api.settings import ApiSettings

HTTP_OPERATIONS = (OperationType.QUERY, OperationType.MUTATION)


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A document ready to execute, or the formatted errors that refuse it."""

    document: DocumentNode | None
    errors: tuple[dict[str, Any], ...] = ()


def validation_rules(introspection: bool) -> tuple[type[ASTValidationRule], ...]:
    rules = tuple(specified_rules)
    if MaxIntrospectionDepthRule not in rules:  # in specified_rules since graphql-core 3.2.6
        rules += (MaxIntrospectionDepthRule,)
    if not introspection:
        rules += (NoSchemaIntrospectionCustomRule,)
    return rules


class DocumentCache:
    """A bounded LRU of PreparedDocument by query text; ``hits`` and ``misses`` count lookups."""

    def __init__(self, schema: GraphQLSchema, settings: ApiSettings) -> None:
        self.schema = schema
        self.capacity = settings.document_cache
        self.max_tokens = settings.max_tokens
        self.max_depth = settings.max_depth
        self.max_cost = settings.max_cost
        self.rules = validation_rules(settings.introspection)
        self.hits = 0
        self.misses = 0  # how many times a document was parsed and validated
        self._entries: OrderedDict[str, PreparedDocument] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str) -> PreparedDocument:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            self.hits += 1
            return entry
        self.misses += 1
        entry = self.prepare(query)
        self._entries[query] = entry
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry

    def prepare(self, query: str) -> PreparedDocument:
        """Parse (token limit), check depth and cost, then validate against the schema."""
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLSyntaxError as error:
            return _refused(ErrorCode.GRAPHQL_PARSE_FAILED, [error])
        except RecursionError:
            return _refused(ErrorCode.GRAPHQL_PARSE_FAILED, [too_deep(self.max_depth)])
        errors = check_limits(document, self.max_depth, self.max_cost)
        if not errors:
            try:
                errors = validate(self.schema, document, self.rules)
            except RecursionError:
                errors = [too_deep(self.max_depth)]
        if not errors:
            errors = self._check_operation_types(document)
        if errors:  # the limits' own codes (QUERY_TOO_DEEP...) win over this one
            return _refused(ErrorCode.GRAPHQL_VALIDATION_FAILED, errors)
        return PreparedDocument(document)

    def _check_operation_types(self, document: DocumentNode) -> list[GraphQLError]:
        """Queries and mutations only: subscriptions are not served over HTTP POST.

        graphql-core's validation lets an operation whose root type the schema lacks through
        (``subscription { x }``); execution would then fail as if it were our bug.
        """
        errors = []
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            kind = definition.operation
            if kind not in HTTP_OPERATIONS or self.schema.get_root_type(kind) is None:
                message = f"{kind.value.capitalize()} operations are not available here."
                errors.append(GraphQLError(message, definition))
        return errors


def _refused(code: ErrorCode, errors: list[GraphQLError]) -> PreparedDocument:
    return PreparedDocument(None, tuple(format_request_error(e, code) for e in errors))
