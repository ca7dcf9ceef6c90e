"""Session control over GraphQL (issue #6): disconnect, device limits, history.

Disconnects go through the Backend to the NAS (RFC 5176); history is the only read that touches
SQLite, through the daemon's read-only connection, never the writer's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ariadne import MutationType, QueryType
from graphql import GraphQLResolveInfo

from radtrack.api.access import RequestContext, may_see_session, visible_user
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.api.sessions import attribute_type
from radtrack.model import Session
from radtrack.radius.disconnect import DisconnectResult
from radtrack.store.history import BadCursor

HISTORY_FIELDS = {
    "sessionId": "session_id",
    "nasName": "nas_name",
    "nasIpAddress": "nas_ip",
    "userName": "user_name",
    "startTime": "start_time",
    "stopTime": "stop_time",
    "terminateCause": "terminate_cause",
    "closeReason": "close_reason",
    "framedIpAddress": "framed_ip",
    "callingStationId": "calling_station_id",
    "inputOctets": "input_octets",
    "outputOctets": "output_octets",
    "duration": "session_time",
}

history_session_type = attribute_type("HistorySession", HISTORY_FIELDS)
query = QueryType()
mutation = MutationType()


# dict keys are snake_case: the schema is built with convert_names_case
def _result(session: Session, result: DisconnectResult) -> dict[str, Any]:
    return {
        "id": session.id,
        "session_id": session.session_id,
        "nas_name": session.nas_name,
        "status": result.status,
        "error_cause": result.error_cause,
        "attempts": result.attempts,
    }


async def _disconnect(context: RequestContext, session: Session) -> dict[str, Any]:
    try:
        result = await context.backend.disconnect(session, requested_by=context.principal.name)
    except (LookupError, ValueError) as exc:
        message = f"This session cannot be disconnected: {exc}"
        raise ApiError(ErrorCode.BAD_USER_INPUT, message) from None
    return _result(session, result)


@mutation.field("disconnectSession")
async def resolve_disconnect_session(_: None, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
    context: RequestContext = info.context
    session = context.backend.index.get(id)
    if session is None or not may_see_session(context.principal, session, context.backend.users):
        # the same answer for "no such session" and "not yours": ids are not to be probed
        raise ApiError(ErrorCode.BAD_USER_INPUT, "No online session with that id")
    return await _disconnect(context, session)


@mutation.field("disconnectUserSessions")
async def resolve_disconnect_user_sessions(
    _: None, info: GraphQLResolveInfo, user_id: int
) -> list[dict[str, Any]]:
    backend = visible_user(info, user_id)
    context: RequestContext = info.context
    sessions = backend.index.for_user(user_id)
    return list(await asyncio.gather(*(_disconnect(context, s) for s in sessions)))


@query.field("deviceLimit")
def resolve_device_limit(_: None, info: GraphQLResolveInfo, user_id: int) -> dict[str, Any]:
    backend = visible_user(info, user_id)
    online = backend.index.count_for_user(user_id)
    limit = backend.device_limit(user_id)
    return {
        "user_id": user_id,
        "online": online,
        "limit": limit,
        "exceeded": bool(limit) and online > limit,
    }


@query.field("sessionHistory")
async def resolve_session_history(
    _: None,
    info: GraphQLResolveInfo,
    user_id: int,
    first: int = 50,
    after: str | None = None,
    **window: Any,
) -> dict[str, Any]:
    backend = visible_user(info, user_id)
    page_max = backend.history_page_max
    if not 1 <= first <= page_max:
        raise ApiError(ErrorCode.BAD_USER_INPUT, f"first must be 1 to {page_max}")
    since = window.get("from_", window.get("from"))
    until = window.get("to")
    try:
        sessions, cursor = await backend.session_history(
            user_id,
            since=_seconds(since),
            until=_seconds(until),
            limit=first,
            cursor=after,
        )
    except BadCursor:
        raise ApiError(ErrorCode.BAD_USER_INPUT, "after is not a cursor from this API") from None
    return {"sessions": sessions, "next_cursor": cursor}


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


bindables = (query, mutation, history_session_type)
