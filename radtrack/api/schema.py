"""The executable schema: schema.graphql (the source of truth) bound to what each module binds.

Every module that resolves part of the schema lists what it binds in its ``bindables``; this
module names those modules, once. A new resolver module is added to BINDABLES here.
"""

from __future__ import annotations

from pathlib import Path

from ariadne import load_schema_from_path, make_executable_schema
from ariadne.types import SchemaBindable
from graphql import GraphQLSchema

from radtrack.api import control, dashboard, scalars, sessions, subscriptions, users

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
BINDABLES: tuple[SchemaBindable, ...] = (
    *scalars.bindables,  # DateTime, Long
    *sessions.bindables,  # getOnlineSessions, onlineSessionCount, Session
    *users.bindables,  # upsertUsers
    *control.bindables,  # disconnect mutations, deviceLimit, sessionHistory, HistorySession
    *dashboard.bindables,  # stats
    *subscriptions.bindables,  # sessionEvents, SessionEvent, SessionEventKind
)


def build_schema() -> GraphQLSchema:
    """The schema, with arguments in snake_case for the resolvers (``convert_names_case``)."""
    return make_executable_schema(
        load_schema_from_path(SCHEMA_PATH), *BINDABLES, convert_names_case=True
    )
