"""One GraphQL request: JSON body in, (HTTP status, JSON-able response) out.

Statuses follow ariadne: 400 when the request was refused before execution (bad JSON, parse or
validation errors, invalid variables), 200 once it ran, even if fields failed (their errors are
in ``errors`` beside ``data``).
"""

from __future__ import annotations

import json
from typing import Any

from graphql import ExecutionContext, ExecutionResult, GraphQLError, GraphQLSchema, execute

from radtrack.api.access import RequestContext
from radtrack.api.auth import Principal
from radtrack.api.backend import Backend
from radtrack.api.documents import DocumentCache
from radtrack.api.errors import (
    ErrorCode,
    error_body,
    format_execution_error,
    format_request_error,
)
from radtrack.api.settings import ApiSettings

Response = tuple[int, dict[str, Any]]


class _InvalidInput(Exception):
    """Variables or the operation name did not fit the document (raised before execution)."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__(errors)
        self.errors = errors


class _ExecutionContext(ExecutionContext):
    """Tells input errors (variable coercion, unknown operation) apart from execution errors."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> list[GraphQLError] | ExecutionContext:
        context = super().build(*args, **kwargs)
        if isinstance(context, list):
            raise _InvalidInput(context)
        return context


class GraphQLHandler:
    def __init__(self, schema: GraphQLSchema, backend: Backend, settings: ApiSettings) -> None:
        self.schema = schema
        self.backend = backend
        self.documents = DocumentCache(schema, settings)

    async def handle(self, body: bytes, principal: Principal) -> Response:
        request = _decode(body)
        if isinstance(request, str):
            return 400, error_body(ErrorCode.BAD_REQUEST, request)
        query, variables, operation_name = request
        prepared = self.documents.get(query)
        if prepared.document is None:
            return 400, {"errors": list(prepared.errors)}
        try:
            result = execute(
                self.schema,
                prepared.document,
                context_value=RequestContext(principal, self.backend),
                variable_values=variables,
                operation_name=operation_name,
                execution_context_class=_ExecutionContext,
            )
            if not isinstance(result, ExecutionResult):
                result = await result
        except _InvalidInput as invalid:
            errors = [format_request_error(e, ErrorCode.BAD_USER_INPUT) for e in invalid.errors]
            return 400, {"errors": errors}
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [format_execution_error(e) for e in result.errors]
        return 200, response


def _decode(body: bytes) -> tuple[str, dict[str, Any] | None, str | None] | str:
    """(query, variables, operationName) from a JSON body, or why the body is refused."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and too-long ints
        return "The body is not valid JSON"
    if isinstance(payload, list):
        return "Batched requests are not supported; send one operation per request"
    if not isinstance(payload, dict):
        return "The body must be a JSON object with a query"
    query = payload.get("query")
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if not isinstance(query, str) or not query:
        return "The body has no query (a non-empty string)"
    if variables is not None and not isinstance(variables, dict):
        return "variables must be a JSON object"
    if operation_name is not None and not isinstance(operation_name, str):
        return "operationName must be a string"
    return query, variables, operation_name
