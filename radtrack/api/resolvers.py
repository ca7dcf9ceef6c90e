"""The executable schema: schema.graphql bound to resolvers and scalars.

Resolvers read the memory index through the request's Backend, never SQLite. Arguments arrive in
snake_case (``user_id``): the schema is built with ``convert_names_case``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ariadne import (
    MutationType,
    ObjectType,
    QueryType,
    ScalarType,
    load_schema_from_path,
    make_executable_schema,
)
from graphql import GraphQLResolveInfo, GraphQLSchema

from radtrack.api.auth import Principal
from radtrack.api.backend import Backend
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.api.limits import MAX_UPSERT_USERS
from radtrack.errors import StoreError
from radtrack.model import Session, User

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
MAX_USERNAME = 253  # the longest RADIUS attribute value (RFC 2865 §5)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """``info.context`` of every resolver."""

    principal: Principal
    backend: Backend


# -- scalars -----------------------------------------------------------------------------------
def serialize_datetime(value: Any) -> str:
    """POSIX seconds (or an aware datetime) -> "2024-01-15T10:30:00Z" (seconds truncated)."""
    if isinstance(value, datetime):
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"DateTime cannot represent {type(value).__name__}")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def serialize_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Long cannot represent {type(value).__name__}")
    if not LONG_MIN <= value <= LONG_MAX:
        raise ValueError("Long cannot represent a value outside 64 bits")
    return value


def parse_long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not LONG_MIN <= value <= LONG_MAX:
        raise ValueError("Long must be an integer of at most 64 bits")
    return value


def parse_datetime(value: Any) -> float:
    """ "2024-01-15T10:30:00Z" (an explicit offset is required) -> POSIX seconds."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("DateTime must look like 2024-01-15T10:30:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a time zone, e.g. a Z suffix")
    return parsed.timestamp()


datetime_scalar = ScalarType("DateTime", serializer=serialize_datetime, value_parser=parse_datetime)
long_scalar = ScalarType("Long", serializer=serialize_long, value_parser=parse_long)


# -- queries -----------------------------------------------------------------------------------
query = QueryType()
mutation = MutationType()
session_type = ObjectType("Session")


def _visible_user(info: GraphQLResolveInfo, user_id: int) -> Backend:
    context: RequestContext = info.context
    if user_id < 0:
        raise ApiError(ErrorCode.BAD_USER_INPUT, "userId must be 0 or more")
    if not context.principal.may_see(user_id, context.backend.users):
        raise ApiError(ErrorCode.FORBIDDEN, "This token may not see that user")
    return context.backend


@query.field("getOnlineSessions")
def resolve_get_online_sessions(_: None, info: GraphQLResolveInfo, user_id: int) -> list[Session]:
    return _visible_user(info, user_id).index.for_user(user_id)


@query.field("onlineSessionCount")
def resolve_online_session_count(_: None, info: GraphQLResolveInfo, user_id: int) -> int:
    return _visible_user(info, user_id).index.count_for_user(user_id)


# -- users -------------------------------------------------------------------------------------
@mutation.field("upsertUsers")
async def resolve_upsert_users(
    _: None, info: GraphQLResolveInfo, users: list[dict[str, Any]]
) -> dict[str, int]:
    context: RequestContext = info.context
    if not context.principal.is_admin:
        raise ApiError(ErrorCode.FORBIDDEN, "upsertUsers needs an admin token")
    records = users_from_input(users)
    try:
        await context.backend.upsert_users(records)
    except StoreError:
        raise ApiError(
            ErrorCode.SERVICE_UNAVAILABLE, "The users could not be stored; try again later"
        ) from None
    return {"upserted": len(records)}


def users_from_input(items: list[dict[str, Any]]) -> list[User]:
    """UserInput values -> User records; raises ApiError(BAD_USER_INPUT) naming the entry."""
    if len(items) > MAX_UPSERT_USERS:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT, f"At most {MAX_UPSERT_USERS} users per call, not {len(items)}"
        )
    records: list[User] = []
    ids: set[int] = set()
    names: set[str] = set()
    for i, item in enumerate(items):
        user = User(
            user_id=item["user_id"],
            username=item.get("username"),
            reseller_id=item.get("reseller_id"),
            max_sessions=item.get("max_sessions"),
        )
        problem = _user_problem(user, ids, names)
        if problem:
            raise ApiError(ErrorCode.BAD_USER_INPUT, f"users[{i}]: {problem}")
        ids.add(user.user_id)
        if user.username is not None:
            names.add(user.username)
        records.append(user)
    return records


def _user_problem(user: User, ids: set[int], names: set[str]) -> str | None:
    if user.user_id < 0:
        return "userId must be 0 or more"
    if user.user_id in ids:
        return f"userId {user.user_id} appears twice"
    if user.username is not None:
        if not user.username or len(user.username.encode()) > MAX_USERNAME:
            return f"username must be 1 to {MAX_USERNAME} bytes"
        if user.username in names:
            return "the same username appears twice"
    if user.reseller_id is not None and user.reseller_id < 0:
        return "resellerId must be 0 or more"
    if user.max_sessions is not None and user.max_sessions < 0:
        return "maxSessions must be 0 or more"
    return None


# -- sessions ----------------------------------------------------------------------------------
def _attribute(name: str) -> Callable[[Session, GraphQLResolveInfo], Any]:
    def resolve(session: Session, _: GraphQLResolveInfo) -> Any:
        return getattr(session, name)

    return resolve


SESSION_FIELDS = {
    "id": "id",
    "sessionId": "session_id",
    "nasIpAddress": "nas_ip",
    "nasPortId": "nas_port_id",
    "nasPortType": "nas_port_type",
    "startTime": "start_time",
    "connectInfoStart": "connect_info_start",
    "callingStationId": "calling_station_id",
    "framedIpAddress": "framed_ip",
    "nasName": "nas_name",
    "userName": "user_name",
    "userId": "user_id",
    "calledStationId": "called_station_id",
    "lastUpdate": "last_update",
    "inputOctets": "input_octets",
    "outputOctets": "output_octets",
    "inputPackets": "input_packets",
    "outputPackets": "output_packets",
    "sessionTime": "session_time",
    "disconnecting": "disconnecting",
}
for _field, _name in SESSION_FIELDS.items():
    session_type.set_field(_field, _attribute(_name))


def build_schema() -> GraphQLSchema:
    """The executable schema (schema first: schema.graphql is the source of truth)."""
    # importing these registers their fields on query and mutation (dashboard: Query.stats)
    from radtrack.api import control, dashboard, subscriptions  # noqa: F401

    type_defs = load_schema_from_path(SCHEMA_PATH)
    return make_executable_schema(
        type_defs,
        query,
        mutation,
        session_type,
        control.history_session_type,
        subscriptions.subscription_type,
        subscriptions.session_event_kind,
        subscriptions.session_event_type,
        datetime_scalar,
        long_scalar,
        convert_names_case=True,
    )
