"""Error codes of the API and the one place where errors become JSON.

Contract: every error the API returns carries ``extensions.code``. Resolvers raise ApiError for
what the client did wrong (or could retry); any other exception out of a resolver is a bug: it is
logged here with its traceback and the client gets INTERNAL_SERVER_ERROR with a generic message.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from graphql import GraphQLError

from radtrack.errors import RadtrackError

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no token, or one that is not configured
    FORBIDDEN = "FORBIDDEN"  # the token may not see this user, or may not do this
    BAD_USER_INPUT = "BAD_USER_INPUT"  # an argument or variable is invalid
    BAD_REQUEST = "BAD_REQUEST"  # not a GraphQL-over-HTTP request we accept
    NOT_FOUND = "NOT_FOUND"  # no such path
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # body over api.max_body_bytes
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"  # the request took over api.request_timeout to arrive
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # syntax error, or over api.max_tokens
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # not valid against the schema
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"  # fields or fragments nested over api.max_depth
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"  # more fields, fragments expanded, than api.max_cost
    USERNAME_TAKEN = "USERNAME_TAKEN"  # upsertUsers: the username is another user's
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # the store refused a write; retry later
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"  # a bug; details are in the log only


class ApiError(RadtrackError):
    """An error meant for the client: its message is shown as is, with ``code``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_body(code: ErrorCode, message: str) -> dict[str, Any]:
    """A GraphQL-style response body with one error and no data (HTTP-level refusals)."""
    return {"errors": [{"message": message, "extensions": {"code": code.value}}]}


def format_request_error(error: GraphQLError, code: ErrorCode) -> dict[str, Any]:
    """An error of parsing, validation or variable coercion: the client's, shown as is, with
    ``code`` unless it carries its own (the limits' refusals do)."""
    own = (error.extensions or {}).get("code")
    return _formatted(error, error.message, ErrorCode(own) if own else code)


def format_execution_error(error: GraphQLError) -> dict[str, Any]:
    """An error raised while resolving a field: ApiError is shown, anything else is hidden."""
    original = error.original_error
    if isinstance(original, ApiError):
        return _formatted(error, original.message, original.code)
    # a bug (or graphql-core refusing a value we produced): the details go to the log only
    logger.exception(
        "GraphQL field %s failed: %s",
        ".".join(map(str, error.path or ())),
        error.message,
        exc_info=original,
    )
    return _formatted(error, INTERNAL_MESSAGE, ErrorCode.INTERNAL_SERVER_ERROR)


def _formatted(error: GraphQLError, message: str, code: ErrorCode) -> dict[str, Any]:
    out: dict[str, Any] = {"message": message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = error.path
    out["extensions"] = {"code": code.value}
    return out
