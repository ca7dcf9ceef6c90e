"""Slow clients get a bounded time to send a request, and a bounded number of connections.

uvicorn times out idle keep-alive connections, but nothing bounds how long a client may take to
*send* a request: 50 clients sending their headers a byte at a time (slowloris) held their
connections open as long as they liked. Here each HTTP connection has api.request_timeout
seconds to deliver a whole request, headers and body. The clock starts when the connection
opens (for its first request) and when the first byte of each next request arrives; it stops
once the request is complete, so neither the time the app takes to answer nor the idle time
between requests counts (uvicorn's keep-alive timeout covers that). When it runs out the client
gets 408 Request Timeout (just the close, if its response has begun) and the connection closes.

At most api.max_connections HTTP connections are open at once; one more is answered 503 and
closed straight away. A connection that upgrades to WebSocket (subscriptions) leaves the count
and the clock: those have their own limits (api.max_websocket_connections,
api.subscription_init_timeout).

``ConnectionGuard.protocol`` wraps uvicorn's own HTTP protocol (httptools, or h11 where
httptools is missing) in a subclass that only watches the parser's events; everything else is
uvicorn's. Its counters are the Prometheus metrics radtrack_api_connections_*.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from radtrack.api.errors import ErrorCode, error_body
from radtrack.api.settings import ApiSettings
from radtrack.logs import RateLimiter

logger = logging.getLogger(__name__)


def _response(status: bytes, code: ErrorCode, message: str) -> bytes:
    body = json.dumps(error_body(code, message), separators=(",", ":")).encode()
    head = (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    )
    return head + body


class ConnectionGuard:
    """The limits and the counters of one server's HTTP connections (the event loop's thread
    only)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.request_timeout = settings.request_timeout
        self.max_connections = settings.max_connections
        self.open = 0  # HTTP connections open now (WebSocket ones left the count)
        self.timed_out = 0  # closed because a request did not arrive in time
        self.refused = 0  # refused at max_connections
        self._warn = RateLimiter()  # a flood of connections must not flood the journal
        self.timeout_response = _response(
            b"408 Request Timeout",
            ErrorCode.REQUEST_TIMEOUT,
            f"The request did not arrive within {self.request_timeout:g} s (api.request_timeout)",
        )
        self.refusal = _response(
            b"503 Service Unavailable",
            ErrorCode.SERVICE_UNAVAILABLE,
            f"Too many connections (api.max_connections = {self.max_connections}); try again",
        )

    def protocol(self, http: str) -> type[asyncio.Protocol]:
        """uvicorn's HTTP protocol ``http`` ("httptools" or "h11"), watched by this guard."""
        return _httptools(self) if http == "httptools" else _h11(self)

    def warn(self, event: str, peer: object) -> None:
        allowed, suppressed = self._warn.allow(event)
        if allowed:
            logger.warning(
                "event=%s peer=%s open=%d%s",
                event,
                peer,
                self.open,
                f" suppressed={suppressed}" if suppressed else "",
            )


class _Watch:
    """One connection's place in the count and its request clock."""

    def __init__(
        self,
        guard: ConnectionGuard,
        transport: asyncio.Transport,
        responding: Callable[[], bool],
    ) -> None:
        self.guard = guard
        self.transport = transport
        self.responding = responding
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False
        if guard.open >= guard.max_connections:
            guard.refused += 1
            guard.warn("api_connection_refused reason=max_connections", _peer(transport))
            transport.write(guard.refusal)
            transport.close()
            return
        guard.open += 1
        self.counted = True
        self.start()  # the first request's clock runs from the connection

    def start(self) -> None:
        """A request is on its way: run the clock unless it runs already."""
        if self.timer is None and self.counted and not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.guard.request_timeout, self._expired)

    def stop(self) -> None:
        """The request has arrived whole."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def release(self) -> None:
        """The connection closed, or is a WebSocket now."""
        self.stop()
        if self.counted:
            self.counted = False
            self.guard.open -= 1

    def _expired(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        self.guard.timed_out += 1
        self.guard.warn("api_request_timeout", _peer(self.transport))
        if not self.responding():
            self.transport.write(self.guard.timeout_response)
        self.transport.close()  # the app, if it waits for the body, gets http.disconnect


def _peer(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"


def _httptools(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(HttpToolsProtocol):
        """httptools calls on_message_begin at a request's first byte and on_message_complete
        at its last."""

        watch: _Watch

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.watch = _Watch(guard, transport, self._responding)

        def _responding(self) -> bool:
            return self.cycle is not None and self.cycle.response_started

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.watch.start()

        def on_message_complete(self) -> None:
            self.watch.stop()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self.watch.release()
            super().handle_websocket_upgrade()

        def connection_lost(self, exc: Exception | None) -> None:
            self.watch.release()
            super().connection_lost(exc)

    return GuardedHttpTools


def _h11(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        """h11 has no per-byte events: after each read (and after a response, which may start a
        pipelined request) its state says whether a request is on its way."""

        watch: _Watch

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.watch = _Watch(guard, transport, self._responding)

        def _responding(self) -> bool:
            return self.cycle is not None and self.cycle.response_started

        def _follow(self) -> None:
            state = self.conn.their_state
            if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
                self.watch.start()  # the body, or headers begun and not complete
            else:
                self.watch.stop()  # complete (DONE), idle, closing, or an error answered 400

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self.watch.release()
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc: Exception | None) -> None:
            self.watch.release()
            super().connection_lost(exc)

    return GuardedH11
