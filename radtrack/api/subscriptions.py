"""Live view (issue #8): GraphQL subscriptions over WebSocket, protocol graphql-transport-ws.

The path of an event::

    writer commits -> AccountingService calls its subscribers -> EventHub.publish
        -> a snapshot of the session, put_nowait into the bounded queue of every subscriber
           that may see it -> that subscription's task sends it on its socket

Ingest never waits on a reader (DESIGN.md invariant 4): ``publish`` only does ``put_nowait``. A
subscriber whose queue is full is dropped on the spot: its queue is emptied and its subscription
ends with a "too slow" error (code SERVICE_UNAVAILABLE: subscribe again, then re-read the state).
Each queue is FIFO and ``publish`` runs in commit order, so every subscriber sees its events in
commit order. A burst larger than a queue in one commit (an Accounting-On that closes a big NAS's
sessions) drops every subscriber it concerns: that is the bound on memory, not a bug.

The protocol is ariadne's GraphQLTransportWSHandler, with what it lacks added here:

- authentication by the connection_init payload (``{"Authorization": "Bearer <token>"}`` or
  ``{"token": "<token>"}``) or else the Authorization header of the upgrade request; without a
  valid token the socket is closed with 4401 (graphql-ws clients do not retry 4401);
- subscription operations only (queries and mutations are POST /graphql), prepared by a
  DocumentCache with the same token, depth, cost and introspection rules as HTTP;
- at most ``max_subscriptions`` operations per connection and ``max_connections`` connections
  (beyond that a new socket is closed at once with 1013, "try again later"); a client that does
  not ask for the subprotocol gets 4406;
- frames that are not a JSON object with a "type" close the socket with 4400 instead of raising
  out of the handler; sends after the socket closed are dropped instead of raising.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ariadne import EnumType, ObjectType, SubscriptionType
from ariadne.asgi.handlers import GraphQLTransportWSHandler
from ariadne.asgi.handlers.graphql_transport_ws import ClientContext
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)
from starlette.websockets import WebSocket, WebSocketDisconnected

from radtrack.api.access import RequestContext, require_admin, visible_user
from radtrack.api.auth import Principal
from radtrack.api.backend import Backend
from radtrack.api.documents import DocumentCache
from radtrack.api.errors import (
    ErrorCode,
    format_execution_error,
    format_request_error,
)
from radtrack.api.events import EventHub, SessionEvent, Subscription
from radtrack.api.settings import ApiSettings
from radtrack.model import ChangeKind

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SUBPROTOCOL = "graphql-transport-ws"
# The limits (connections, subscriptions per connection, queue per subscriber, seconds to send
# connection_init) are [api] settings: max_websocket_connections (more are closed with 1013),
# max_subscriptions_per_connection, subscription_queue, subscription_init_timeout (then 4408).

UNAUTHORIZED = "Unauthorized: a valid bearer token is required"
_PRINCIPAL = "radtrack.principal"  # scope keys of one connection
_CLIENT = "radtrack.client_context"


# -- schema: Subscription.sessionEvents ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveContext(RequestContext):
    """``info.context`` of subscription resolvers: a RequestContext plus the hub."""

    hub: EventHub


subscription_type = SubscriptionType()
session_event_kind = EnumType("SessionEventKind", ChangeKind)
session_event_type = ObjectType("SessionEvent")  # fields resolve by attribute name


# ariadne's annotation wants a generator; any async iterator works (graphql-core checks that)
@subscription_type.source("sessionEvents")  # type: ignore[arg-type]
def source_session_events(
    _: None, info: GraphQLResolveInfo, user_id: int | None = None
) -> Subscription:
    context: LiveContext = info.context
    if user_id is None:
        require_admin(info, "Only an admin token may follow every user; pass a userId")
    else:
        visible_user(info, user_id)
    return context.hub.subscribe(context.principal, user_id)


@subscription_type.field("sessionEvents")
def resolve_session_events(event: SessionEvent, _: GraphQLResolveInfo, **__: Any) -> SessionEvent:
    return event


bindables = (subscription_type, session_event_kind, session_event_type)


def format_live_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """ariadne's error_formatter: like HTTP, every error carries extensions.code.

    Without a path and with no exception of ours behind it, graphql-core refused the request
    itself (variables, operation name): the client's input. ApiError shows as is; anything else
    is a bug (logged).
    """
    original = error.original_error
    if not error.path and (original is None or isinstance(original, GraphQLError)):
        return format_request_error(error, ErrorCode.BAD_USER_INPUT)
    return format_execution_error(error)


class _QuietErrors(logging.LoggerAdapter):  # type: ignore[type-arg]
    """ariadne logs every GraphQL error at ERROR with a traceback. Here they are the client's
    (ApiError, validation, "too slow") or bugs that format_execution_error has logged already."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.debug("event=subscription_error error=%r", str(msg))


class _SubscriptionDocuments(DocumentCache):
    """The HTTP document cache and its limits, for subscription operations only."""

    def _check_operation_types(self, document: DocumentNode) -> list[GraphQLError]:
        errors = []
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if definition.operation is not OperationType.SUBSCRIPTION:
                kind = definition.operation.value.capitalize()
                message = f"{kind} operations are not available over WebSocket; use POST /graphql."
                errors.append(GraphQLError(message, definition))
        return errors


# -- the WebSocket endpoint ----------------------------------------------------------------------
class LiveEndpoint:
    """WebSocket scopes at /graphql: limits and guards, then ariadne's handler."""

    def __init__(
        self,
        schema: GraphQLSchema,
        backend: Backend,
        settings: ApiSettings,
        authenticate: Callable[[bytes | None], Principal | None],
        hub: EventHub,
        still_valid: Callable[[Principal], bool] = lambda _: True,
    ) -> None:
        self.backend = backend
        self.authenticate = authenticate  # reads the app's current tokens (SIGHUP reloads them)
        self.still_valid = still_valid
        self.hub = hub
        self.max_connections = settings.max_websocket_connections
        self.max_subscriptions = settings.max_subscriptions_per_connection
        self.connections = 0
        self.documents = _SubscriptionDocuments(schema, settings)
        self.handler = _TransportWSHandler(
            self, connection_init_wait_timeout=timedelta(seconds=settings.subscription_init_timeout)
        )
        self.handler.configure(
            schema,
            context_value=self._context,
            query_parser=self._parse,
            query_validator=_already_validated,
            introspection=True,  # the document cache applies api.introspection
            logger=_QuietErrors(logger, {}),
            error_formatter=format_live_error,
            debug=False,
        )

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if SUBPROTOCOL not in scope.get("subprotocols", ()):
            await _refuse(receive, send, None, 4406, "Subprotocol not acceptable")
            return
        if self.connections >= self.max_connections:
            # 1013 Try Again Later: graphql-ws clients retry it with their back-off
            await _refuse(receive, send, SUBPROTOCOL, 1013, "Too many WebSocket connections")
            return
        self.connections += 1
        guard = _Guard(receive, send)
        try:
            await self.handler.handle(scope, guard.receive, guard.send)
        except WebSocketDisconnected:
            pass  # starlette refusing a send after the handler closed the socket itself
        finally:
            self.connections -= 1
            _cancel_init_timer(scope.pop(_CLIENT, None))

    def refusal(self, data: Any, running: int) -> list[dict[str, Any]]:
        """Why a subscribe message cannot start (formatted errors), or [] when it can."""
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            return _errors(ErrorCode.BAD_REQUEST, "The payload needs a query")
        if not isinstance(data.get("variables") or {}, dict):
            return _errors(ErrorCode.BAD_REQUEST, "variables must be a JSON object")
        if not isinstance(data.get("operationName") or "", str):
            return _errors(ErrorCode.BAD_REQUEST, "operationName must be a string")
        prepared = self.documents.get(data["query"])
        if prepared.document is None:
            return list(prepared.errors)
        if running >= self.max_subscriptions:
            message = f"At most {self.max_subscriptions} subscriptions per connection"
            return _errors(ErrorCode.BAD_REQUEST, message)
        return []

    def _context(self, websocket: WebSocket, _: Any) -> LiveContext:
        return LiveContext(websocket.scope[_PRINCIPAL], self.backend, self.hub)

    def _parse(self, _: Any, data: dict[str, Any]) -> DocumentNode:
        document = self.documents.get(data["query"]).document
        if document is None:  # refusal() let it through a moment ago: cannot happen
            raise GraphQLError("The document was refused")
        return document


def _errors(code: ErrorCode, message: str) -> list[dict[str, Any]]:
    return [{"message": message, "extensions": {"code": code.value}}]


def _already_validated(*_: Any, **__: Any) -> list[GraphQLError]:
    return []  # the document cache validated it, with the API's rules


class _TransportWSHandler(GraphQLTransportWSHandler):
    """ariadne's handler with authentication at connection_init (close 4401 when refused: its
    own on_connect can only close with 1000, ariadne issue #1122) and the endpoint's checks."""

    def __init__(self, endpoint: LiveEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def handle_connection_init_timeout(
        self, websocket: WebSocket, client_context: ClientContext
    ) -> Coroutine[Any, Any, None]:
        # not async, so that this runs as the connection starts: ariadne never cancels the
        # timer's task, the endpoint does when the socket ends (or connection_init arrives)
        websocket.scope[_CLIENT] = client_context
        return super().handle_connection_init_timeout(websocket, client_context)

    async def handle_websocket_connection_init_message(
        self, websocket: WebSocket, message: dict[str, Any], client_context: ClientContext
    ) -> None:
        if client_context.connection_init_received:
            await websocket.close(code=4429, reason="Too many initialisation requests")
            return
        client_context.connection_init_received = True
        _cancel_init_timer(client_context)
        principal = self.endpoint.authenticate(_authorization(message.get("payload"), websocket))
        if principal is None:
            logger.debug("WebSocket without a valid token from %s", websocket.scope.get("client"))
            await websocket.close(code=4401, reason=UNAUTHORIZED)
            return
        websocket.scope[_PRINCIPAL] = principal
        await websocket.send_json({"type": self.GQL_CONNECTION_ACK})
        client_context.connection_acknowledged = True

    async def handle_websocket_subscribe(
        self, websocket: WebSocket, data: Any, operation_id: str, client_context: ClientContext
    ) -> None:
        if client_context.connection_acknowledged:
            if not self.endpoint.still_valid(websocket.scope[_PRINCIPAL]):
                await websocket.close(code=4401, reason=UNAUTHORIZED)  # revoked by a reload
                return
            if not isinstance(operation_id, str) or not operation_id:
                await websocket.close(code=4400, reason="A subscribe message needs an id")
                return
            if operation_id not in client_context.operations:
                errors = self.endpoint.refusal(data, len(client_context.operations))
                if errors:
                    await websocket.send_json(
                        {"type": self.GQL_ERROR, "id": operation_id, "payload": errors}
                    )
                    return
        # not acknowledged (4401) or a duplicate id (4409): ariadne closes the socket
        await super().handle_websocket_subscribe(websocket, data, operation_id, client_context)


def _cancel_init_timer(client_context: ClientContext | None) -> None:
    if client_context is not None and client_context.connection_init_timeout_task is not None:
        client_context.connection_init_timeout_task.cancel()


def _authorization(payload: Any, websocket: WebSocket) -> bytes | None:
    """The Authorization value to check: from the connection_init payload, else the upgrade's."""
    if isinstance(payload, dict):
        value = payload.get("Authorization", payload.get("authorization"))
        if isinstance(value, str):
            return value.encode("utf-8", "replace")
        token = payload.get("token")
        if isinstance(token, str):
            return b"Bearer " + token.encode("utf-8", "replace")
    for name, value in websocket.scope.get("headers", ()):
        if name == b"authorization":
            return bytes(value)
    return None


class _Guard:
    """Between ariadne (through starlette's WebSocket) and uvicorn, for what ariadne does not
    handle: a frame that is not a JSON object with a "type" closes the socket with 4400 (ariadne
    would raise); sends after the socket closed or the peer left are dropped (a subscription
    task may still be sending); text that UTF-8 cannot encode (session strings with surrogate
    escapes) is sent with JSON escapes instead."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.closed = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
        elif message["type"] == "websocket.receive" and not self.closed:
            problem = _frame_problem(message)
            if problem:
                await self.send({"type": "websocket.close", "code": 4400, "reason": problem})
                return {"type": "websocket.disconnect", "code": 4400}
        return message

    async def send(self, message: Message) -> None:
        if self.closed:
            return
        if message["type"] == "websocket.close":
            self.closed = True
        elif message["type"] == "websocket.send" and message.get("text") is not None:
            message = _encodable(message)
        try:
            await self._send(message)
        except OSError:  # uvicorn's ClientDisconnected: the peer is gone
            self.closed = True


def _frame_problem(message: Message) -> str | None:
    text = message.get("text")
    if text is None:
        return "Binary frames are not part of graphql-transport-ws"
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return "The message is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return "The message must be a JSON object with a type"
    return None


def _encodable(message: Message) -> Message:
    text: str = message["text"]
    if text.isascii():
        return message
    try:
        text.encode()
    except UnicodeEncodeError:
        return {**message, "text": json.dumps(json.loads(text), separators=(",", ":"))}
    return message


async def _refuse(
    receive: Receive, send: Send, subprotocol: str | None, code: int, reason: str
) -> None:
    """Accept the upgrade and close at once with ``code``: a WebSocket client sees the reason,
    which an HTTP refusal of the upgrade would hide from browsers."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.close", "code": code, "reason": reason})
