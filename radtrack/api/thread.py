"""The API on a thread and event loop of its own, beside the ingest loop (issue 15).

Why: on the ingest loop a query waited for whatever the loop was doing when it arrived: a UDP
batch of up to 256 datagrams (~11 ms), a commit's bookkeeping, the stale check's slice. On a
thread of its own it waits at most for the interpreter's switch interval (0.5 ms, set by
``radtrack serve``), and for a collection of the cyclic GC, which holds the GIL wherever it runs
(docs/performance.md, 3b).

What crosses between the two loops, and how:

- Reads of the live state (``SessionIndex``, ``UserDirectory``) run on the API thread, under
  the GIL: each is a dict lookup or a walk of a user's chain of sessions, which ingest only
  ever links at its head (``next_of_user`` always points to an older session, so a walk ends,
  and one that meets a session moved or closed meanwhile filters it out by its fields:
  ``SessionIndex.for_user``). So does the dashboard's trend (``SessionTrend.read`` copies
  the ring the ingest loop appends to).
- Everything that writes, or that uses what the ingest loop owns (the store's connections, the
  Disconnect client's socket, the metrics' view of the service), runs there:
  ``HomeBackend`` sends those calls to the ingest loop and awaits them from the API loop.
- Committed changes go the other way: ``EventHub.publish`` runs on the ingest loop (the
  snapshot is taken there, as the commit left the session) and hands the queueing to the API
  loop (``EventHub.deliver_on``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from radtrack.api.app import GraphQLApp
from radtrack.api.auth import Principal
from radtrack.api.backend import Backend
from radtrack.api.guard import ConnectionGuard
from radtrack.api.server import EmbeddedServer
from radtrack.model import Session, User
from radtrack.radius.disconnect import DisconnectResult
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.trend import SessionTrend

logger = logging.getLogger(__name__)

T = TypeVar("T")

THREAD_NAME = "radtrack-api"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # the daemon's event loop, on both threads
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ApiThread:
    """An event loop running on a thread of its own until ``stop``."""

    def __init__(self, name: str = THREAD_NAME) -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # what is left (a request cut by stop) is cancelled and unwound here, on its loop
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> None:
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coroutine`` on the API loop (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the API loop and await its result from the caller's loop."""
        return await on_loop(self.loop, coroutine)

    def post(self, callback: Callable[..., object], *args: object) -> None:
        """Call ``callback(*args)`` soon on the API loop (from any thread)."""
        self.loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and wait for the thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("API thread did not stop within %.1f s", timeout)


async def on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    """Await, from the running loop, ``coroutine`` run on ``loop``."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


async def _call(function: Callable[[], T]) -> T:
    return function()


def called_on(
    loop: asyncio.AbstractEventLoop, function: Callable[[], T]
) -> Callable[[], Awaitable[T]]:
    """``function`` made an awaitable call that runs it on ``loop`` (e.g. /metrics, which reads
    the service's counters where they change)."""

    def call() -> Awaitable[T]:
        return on_loop(loop, _call(function))

    return call


class HomeBackend:
    """A Backend whose calls that write or that use the ingest loop's resources run on that
    loop (``home``); reads of the live state go straight to the daemon's index and users."""

    def __init__(self, backend: Backend, home: asyncio.AbstractEventLoop) -> None:
        self._backend = backend
        self._home = home

    @property
    def index(self) -> SessionIndex:
        return self._backend.index

    @property
    def users(self) -> UserDirectory:
        return self._backend.users

    @property
    def trend(self) -> SessionTrend:
        return self._backend.trend  # sampled on the ingest loop; read copies (trend.py)

    @property
    def history_page_max(self) -> int:
        return self._backend.history_page_max

    def readiness(self) -> dict[str, bool]:
        return self._backend.readiness()

    def device_limit(self, user_id: int) -> int:
        return self._backend.device_limit(user_id)

    async def upsert_users(self, users: list[User]) -> None:
        await on_loop(self._home, self._backend.upsert_users(users))

    async def disconnect(self, session: Session, *, requested_by: str) -> DisconnectResult:
        return await on_loop(
            self._home, self._backend.disconnect(session, requested_by=requested_by)
        )

    async def session_history(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        return await on_loop(
            self._home,
            self._backend.session_history(
                user_id, since=since, until=until, limit=limit, cursor=cursor
            ),
        )


class ThreadedServer:
    """The API's uvicorn server (``EmbeddedServer``) serving ``app`` on an ``ApiThread``;
    ``start`` and ``stop`` are awaited from the ingest loop."""

    def __init__(self, app: GraphQLApp, guard: ConnectionGuard | None = None) -> None:
        self.app = app
        self.thread = ApiThread()
        self.server = EmbeddedServer(app, guard=guard)
        app.events.deliver_on(self.thread.loop)

    @property
    def guard(self) -> ConnectionGuard:
        """The server's connection counts and limits (read by /metrics)."""
        return self.server.guard

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (from bind_tcp); returns once accepting. The server owns it."""
        self.thread.start()
        try:
            await self.thread.run(self.server.start(sock))
        except BaseException:
            self.thread.stop()
            raise

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (api/server.py: running requests get ``timeout``), then the thread."""
        try:
            await self.thread.run(self.server.stop(timeout))
        finally:
            await asyncio.to_thread(self.thread.stop)  # the join never blocks the ingest loop

    def revoke(self, still_valid: Callable[[Principal], bool]) -> None:
        """End, on the API's loop, the subscriptions whose token is no longer valid."""

        def revoke() -> None:
            revoked = self.app.events.revoke(still_valid)
            if revoked:
                logger.info("event=subscriptions_revoked count=%d", revoked)

        self.thread.post(revoke)
