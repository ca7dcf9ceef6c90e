"""The ASGI app: POST /graphql, WebSocket /graphql (subscriptions), GET /healthz, /readyz,
/metrics, and the dashboard (GET /, /dashboard and its two files), nothing else. /metrics is
open unless api.metrics_token_sha256 is set; then it needs that bearer token (401 without it).

A hand-written dispatcher (no framework): a few routes do not need one, and every refusal is
decided from the headers before the body is read, so oversized or unauthenticated requests cost
almost nothing. WebSocket upgrades go to subscriptions.LiveEndpoint (graphql-transport-ws).
Refusals are JSON in the GraphQL error shape, with ``extensions.code``:

====  ======================  ==================================================================
405   BAD_REQUEST             not POST (GET queries are off; GET serves the explorer when on)
415   BAD_REQUEST             Content-Type is not application/json (multipart, form, ...)
413   PAYLOAD_TOO_LARGE       body over api.max_body_bytes (Content-Length, or counted as read)
401   UNAUTHENTICATED         no bearer token, or one that is not configured
400   BAD_REQUEST             not JSON, a batch (array), no query, bad variables/operationName
====  ======================  ==================================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from radtrack.api import explorer
from radtrack.api.auth import Principal, TokenVerifier, bearer_matches
from radtrack.api.backend import Backend
from radtrack.api.dashboard import StaticFiles
from radtrack.api.documents import DocumentCache
from radtrack.api.errors import INTERNAL_MESSAGE, ErrorCode, error_body
from radtrack.api.events import EventHub
from radtrack.api.handler import GraphQLHandler
from radtrack.api.limits import BodyTooLarge, Receive, is_json, read_body
from radtrack.api.schema import build_schema
from radtrack.api.settings import ApiSettings
from radtrack.api.subscriptions import LiveEndpoint

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]
# renders GET /metrics: the text, or an awaitable of it (rendered on another loop)
Metrics = Callable[[], bytes | Awaitable[bytes]]

GRAPHQL_PATH = "/graphql"
CLOSE = ((b"connection", b"close"),)
METRICS_HEADERS = ((b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),)


class GraphQLApp:
    """The API as an ASGI 3 application; ``documents`` exposes the document cache counters."""

    def __init__(
        self,
        backend: Backend,
        settings: ApiSettings,
        http_ready: Callable[[], bool] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.http_ready = http_ready
        self.tokens = TokenVerifier(settings.tokens)
        schema = build_schema()
        self.handler = GraphQLHandler(schema, backend, settings)
        # the daemon appends events.publish to its AccountingService's subscribers
        self.events = EventHub(backend.users, settings.subscription_queue)
        self.live = LiveEndpoint(
            schema,
            backend,
            settings,
            self._authenticate,
            self.events,
            still_valid=lambda principal: self.tokens.knows(principal),
        )
        self.static = StaticFiles()
        self.metrics = metrics
        # the SHA-256 of the token GET /metrics needs (b"": none); a reload may replace it
        self.metrics_token = settings.metrics_token_sha256
        self.requests = 0  # POST /graphql requests answered
        self.errors: Counter[str] = Counter()  # their errors, by extensions.code

    @property
    def documents(self) -> DocumentCache:
        return self.handler.documents

    def _authenticate(self, authorization: bytes | None) -> Principal | None:
        return self.tokens.authenticate(authorization)  # the tokens of the last reload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        if scope["type"] == "websocket":
            if path == GRAPHQL_PATH:
                await self.live(scope, receive, send)
            else:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})  # answered 403
            return
        if scope["type"] != "http":
            return
        try:
            if path == GRAPHQL_PATH:
                await self._graphql(scope, receive, send)
            elif (page := self.static.get(path, self.tokens.example_token)) is not None:
                await self._page(scope, send, *page)
            elif path == "/metrics" and self.metrics is not None:
                await self._metrics(scope, send, self.metrics)
            elif path == "/healthz":
                await self._health(scope, send, {"status": "ok"}, ok=True)
            elif path == "/readyz":
                checks = dict(self.backend.readiness())
                checks["http"] = self.http_ready() if self.http_ready is not None else True
                await self._health(scope, send, checks, ok=all(checks.values()))
            else:
                await send_json(send, 404, error_body(ErrorCode.NOT_FOUND, "Not found"))
        except Exception:
            logger.exception("API request to %s failed", path)
            body = error_body(ErrorCode.INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
            with contextlib.suppress(Exception):  # the response may have started already
                await send_json(send, 500, body, CLOSE)

    async def _graphql(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        headers = _headers(scope["headers"])
        if scope["method"] != "POST":
            if settings.explorer and scope["method"] == "GET" and _wants_html(headers):
                await _send(send, 200, explorer.HEADERS, explorer.PAGE)
                return
            allow = b"GET, POST" if settings.explorer else b"POST"
            message = "Send GraphQL requests as POST with a JSON body"
            await send_json(
                send, 405, error_body(ErrorCode.BAD_REQUEST, message), [(b"allow", allow)]
            )
            return
        if not is_json(headers.get(b"content-type")):
            message = "Content-Type must be application/json"
            await self._respond(send, 415, error_body(ErrorCode.BAD_REQUEST, message))
            return
        too_large = error_body(
            ErrorCode.PAYLOAD_TOO_LARGE, f"The body exceeds {settings.max_body_bytes} bytes"
        )
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():  # the HTTP parser refuses these first; to be sure
                bad = error_body(ErrorCode.BAD_REQUEST, "Invalid Content-Length")
                await self._respond(send, 400, bad, CLOSE)
                return
            if len(length) > 18 or int(length) > settings.max_body_bytes:
                await self._respond(send, 413, too_large, CLOSE)
                return
        principal = self.tokens.authenticate(headers.get(b"authorization"))
        if principal is None:
            logger.debug("API request without a valid token from %s", scope.get("client"))
            body = error_body(ErrorCode.UNAUTHENTICATED, "A valid bearer token is required")
            await self._respond(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        try:
            request_body = await read_body(receive, settings.max_body_bytes)
        except BodyTooLarge:
            await self._respond(send, 413, too_large, CLOSE)
            return
        if request_body is None:
            return  # the client went away
        status, payload = await self.handler.handle(request_body, principal)
        await self._respond(send, status, payload)

    async def _respond(
        self, send: Send, status: int, payload: dict[str, Any], headers: Headers = ()
    ) -> None:
        self.requests += 1
        for error in payload.get("errors") or ():
            self.errors[str(error.get("extensions", {}).get("code", "UNKNOWN"))] += 1
        await send_json(send, status, payload, headers)

    async def _metrics(self, scope: Scope, send: Send, render: Metrics) -> None:
        expected = self.metrics_token
        authorization = _headers(scope["headers"]).get(b"authorization")
        if expected and not bearer_matches(authorization, expected):
            message = "GET /metrics needs its bearer token (api.metrics_token_sha256)"
            body = error_body(ErrorCode.UNAUTHENTICATED, message)
            await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        text = render()
        if not isinstance(text, bytes):  # rendered on the ingest loop (api/thread.py)
            text = await text
        await _send(send, 200, METRICS_HEADERS, text)

    async def _page(self, scope: Scope, send: Send, headers: Headers, body: bytes) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            message = "Use GET"
            await send_json(
                send, 405, error_body(ErrorCode.BAD_REQUEST, message), [(b"allow", b"GET")]
            )
            return
        await _send(send, 200, headers, body, cache=None)  # the headers carry their own

    async def _health(self, scope: Scope, send: Send, body: dict[str, Any], *, ok: bool) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            message = "Use GET"
            await send_json(
                send, 405, error_body(ErrorCode.BAD_REQUEST, message), [(b"allow", b"GET")]
            )
            return
        await send_json(send, 200 if ok else 503, body)


def create_app(
    backend: Backend,
    settings: ApiSettings,
    *,
    http_ready: Callable[[], bool] | None = None,
    metrics: Metrics | None = None,
) -> GraphQLApp:
    """The ASGI app of the API; ``http_ready`` adds the "http" entry of /readyz (default: up);
    ``metrics`` renders GET /metrics (Prometheus text format)."""
    return GraphQLApp(backend, settings, http_ready, metrics)


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: Headers = ()
) -> None:
    # ensure_ascii: session strings may hold surrogate escapes, which UTF-8 cannot encode
    body = json.dumps(payload, separators=(",", ":")).encode()
    await _send(send, status, [(b"content-type", b"application/json"), *headers], body)


async def _send(
    send: Send, status: int, headers: Headers, body: bytes, cache: bytes | None = b"no-store"
) -> None:
    """A whole response; ``cache`` None: ``headers`` have a Cache-Control of their own."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                *(() if cache is None else ((b"cache-control", cache),)),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _headers(raw: Headers) -> dict[bytes, bytes]:
    """The first value of each header (ASGI names are lower-case already)."""
    out: dict[bytes, bytes] = {}
    for name, value in raw:
        out.setdefault(name, value)
    return out


def _wants_html(headers: dict[bytes, bytes]) -> bool:
    return b"text/html" in headers.get(b"accept", b"")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Only when a server runs us with lifespan on (EmbeddedServer turns it off)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
