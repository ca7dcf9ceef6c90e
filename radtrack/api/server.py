"""uvicorn embedded in the daemon: same event loop, our socket, our signals, our shutdown.

uvicorn's own ``serve()`` installs signal handlers that re-raise SIGTERM after it stops (which
would skip the daemon's ordered shutdown) and calls ``sys.exit(1)`` when it cannot bind. Here the
daemon binds the socket itself with ``bind_tcp`` (a busy port is an OSError it can report), then
``start`` serves on it and ``stop`` shuts down gracefully, then forcibly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
import websockets

from radtrack.api.guard import ConnectionGuard
from radtrack.api.settings import ApiSettings

logger = logging.getLogger(__name__)

# Refreshes uvicorn's Date header (its main loop would do it; we run no main loop).
TICK_SECONDS = 1.0
# How long cancelled requests get to unwind when ``stop`` forces them.
FORCE_SECONDS = 1.0
# The largest WebSocket message a client may send (a subscribe message is a few hundred bytes).
WS_MAX_SIZE = 65_536


def bind_tcp(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening, non-blocking TCP socket on host:port (IPv4 or IPv6; port 0 picks one).

    SO_REUSEADDR (a restart does not wait for TIME_WAIT) but never SO_REUSEPORT, so a second
    radtrack on the same port fails here. Raises OSError with the OS's errno and strerror and
    the address as ``filename``: "[Errno 98] Address already in use: '127.0.0.1:8080'".
    """
    endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, endpoint) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, exc.strerror, endpoint) from exc
    return sock


class _NoWebSocketDebug(logging.Filter):
    """websockets, under uvicorn's logger, logs every upgrade header and every frame at DEBUG:
    Authorization headers and connection_init tokens included. Tokens are never logged."""

    directory = os.path.dirname(websockets.__file__)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO or not record.pathname.startswith(self.directory)


def _hide_websocket_debug() -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _NoWebSocketDebug) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_NoWebSocketDebug())


def _http_protocol() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that runs in the caller's event loop on a pre-bound socket.

    ``guard`` bounds the time to send a request and the connections (api/guard.py; default: the
    default api settings); ``http`` picks uvicorn's HTTP parser (default: httptools if present).
    """

    def __init__(
        self,
        app: Any,
        *,
        timeout_keep_alive: int = 5,
        guard: ConnectionGuard | None = None,
        http: str | None = None,
    ) -> None:
        self.guard = guard if guard is not None else ConnectionGuard(ApiSettings())
        config = uvicorn.Config(
            app,
            log_config=None,
            lifespan="off",
            access_log=False,
            loop="none",
            http=self.guard.protocol(http or _http_protocol()),
            # subscriptions (graphql-transport-ws): websockets' sans-I/O protocol, whose sends
            # wait while the socket's buffer is full, so a slow reader fills its own bounded
            # queue (subscriptions.EventHub) and never the process's memory
            ws="websockets-sansio",
            ws_max_size=WS_MAX_SIZE,
            ws_per_message_deflate=False,  # no per-connection compressor on the ingest loop
            interface="asgi3",
            proxy_headers=False,  # X-Forwarded-For is not trusted: nothing here needs the peer
            server_header=False,
            timeout_keep_alive=timeout_keep_alive,
        )
        super().__init__(config)
        _hide_websocket_debug()
        self._sockets: list[socket.socket] = []
        self._ticker: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """The daemon owns signals; uvicorn's would re-raise SIGTERM after stopping."""
        yield

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (from bind_tcp) in the running loop; returns once accepting.

        The server owns the socket from here on: ``stop`` closes it, and so does a failed start.
        """
        if self._sockets:
            raise RuntimeError("EmbeddedServer.start called twice")
        self._sockets = [sock]
        try:
            if not self.config.loaded:
                self.config.load()
            self.lifespan = self.config.lifespan_class(self.config)
            await self.startup(sockets=self._sockets)
        except BaseException:
            sock.close()
            raise
        self._ticker = asyncio.create_task(self._tick(), name="radtrack-api-tick")
        logger.info("GraphQL API listening on %s", _name(sock))

    async def _tick(self) -> None:
        while True:
            await self.on_tick(0)
            await asyncio.sleep(TICK_SECONDS)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let running requests finish for up to ``timeout`` s, then cut them.

        Idempotent; safe to call when ``start`` was never called or failed. (uvicorn's own
        ``shutdown`` polls every 0.1 s; this waits on the request tasks themselves.)
        """
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if not self.started:
            for sock in self._sockets:
                sock.close()
            return
        self.started = False
        self.should_exit = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        state = self.server_state
        for server in self.servers:
            server.close()  # no new connections
        for sock in self._sockets:
            sock.close()  # asyncio closed it already; uvloop may have its own copy
        for connection in list(state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        if state.tasks:
            _, pending = await asyncio.wait(set(state.tasks), timeout=timeout)
            if pending:
                logger.warning(
                    "API stop: cutting %d request(s) after %.1f s", len(pending), timeout
                )
                self.force_exit = True
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=FORCE_SECONDS)
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)  # responses still being flushed: nothing to await on
        for connection in list(state.connections):
            connection.transport.abort()
        for server in self.servers:
            await server.wait_closed()
        logger.info("GraphQL API stopped")


def _name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
