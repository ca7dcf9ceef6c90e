"""Online sessions over GraphQL: getOnlineSessions, onlineSessionCount and the Session type.

Resolvers read the memory index through the request's Backend, never SQLite. Arguments arrive in
snake_case (``user_id``): the schema is built with ``convert_names_case``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ariadne import ObjectType, QueryType
from graphql import GraphQLResolveInfo

from radtrack.api.access import visible_user
from radtrack.model import Session


def attribute_type(name: str, fields: Mapping[str, str]) -> ObjectType:
    """An object type whose fields (GraphQL name -> attribute) read a record's attributes."""
    bindable = ObjectType(name)
    for field, attribute in fields.items():
        bindable.set_field(field, _attribute(attribute))
    return bindable


def _attribute(name: str) -> Callable[[Any, GraphQLResolveInfo], Any]:
    def resolve(record: Any, _: GraphQLResolveInfo) -> Any:
        return getattr(record, name)

    return resolve


query = QueryType()


@query.field("getOnlineSessions")
def resolve_get_online_sessions(_: None, info: GraphQLResolveInfo, user_id: int) -> list[Session]:
    return visible_user(info, user_id).index.for_user(user_id)


@query.field("onlineSessionCount")
def resolve_online_session_count(_: None, info: GraphQLResolveInfo, user_id: int) -> int:
    return visible_user(info, user_id).index.count_for_user(user_id)


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
session_type = attribute_type("Session", SESSION_FIELDS)

bindables = (query, session_type)
