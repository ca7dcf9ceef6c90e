"""The GraphQL API: schema.graphql, resolvers over the memory index, auth, limits, ASGI app.

The daemon builds it with ``create_app(backend, settings.api)``, binds with ``bind_tcp`` and
serves it with ``EmbeddedServer`` in its own event loop.
"""

from radtrack.api.app import GraphQLApp, create_app
from radtrack.api.backend import Backend
from radtrack.api.errors import ApiError, ErrorCode
from radtrack.api.server import EmbeddedServer, bind_tcp

__all__ = [
    "ApiError",
    "Backend",
    "EmbeddedServer",
    "ErrorCode",
    "GraphQLApp",
    "bind_tcp",
    "create_app",
]
