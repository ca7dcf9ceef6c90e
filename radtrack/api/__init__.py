"""The GraphQL API: schema.graphql, resolvers over the memory index, auth, limits, ASGI app.

The daemon builds it with ``app.create_app(backend, settings.api)``, binds with
``server.bind_tcp`` and serves it with ``server.EmbeddedServer`` in its own event loop. This
file imports nothing: importing ``radtrack.api.settings`` (as config.py does) costs no GraphQL.
"""
