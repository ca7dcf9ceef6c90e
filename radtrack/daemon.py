"""Start-up and shutdown of the whole process.

Start: load the dictionary, open and migrate the database, rebuild the live state from it, bind
every socket (a busy port is a clear error before anything runs), then start reading UDP and
serving HTTP. Stop (one way only): intake stops, queued packets are committed and answered,
HTTP stops, the database closes — all under ``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from radtrack import config as config_mod
from radtrack import gcpolicy
from radtrack.errors import ConfigError, RadtrackError, StartupError, StoreError
from radtrack.fastpath import FastAccountant
from radtrack.model import Session, User
from radtrack.radius import dictionary as dictionary_mod
from radtrack.radius.disconnect import DisconnectClient, DisconnectResult
from radtrack.radius.tls import server_context
from radtrack.radsec import RadsecIntake
from radtrack.sdnotify import Notifier, status_loop
from radtrack.service import AccountingService
from radtrack.sessioncontrol import LimitSettings, SessionControl
from radtrack.sockets import bind_all
from radtrack.store.base import Store
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.store.retention import Retention
from radtrack.store.sqlite import SqliteStore
from radtrack.transport import UdpListener
from radtrack.trend import SessionTrend
from radtrack.usersync import UserSync

if TYPE_CHECKING:  # the API is imported only when it is configured (start-up time)
    from radtrack.api.app import GraphQLApp
    from radtrack.api.thread import ThreadedServer

logger = logging.getLogger(__name__)

MAINTAIN_INTERVAL = 5.0  # seconds between the store's background rounds (checkpoints)


def make_store(settings: config_mod.Settings) -> Store:
    """The store the config names (no I/O until ``open``). Raises ConfigError (a password
    file that cannot be read)."""
    store = settings.store
    if store.backend == "postgresql":
        from radtrack.store.pg.store import PgStore  # asyncpg only when it is used

        return PgStore(
            store.dsn,
            node=store.node_name or f"{socket.gethostname()}-{os.getpid()}",
            password=config_mod.store_password(store),
            max_batch=store.max_batch,
            commit_delay=store.commit_delay,
            poll_interval=store.feed_poll_interval,
        )
    return SqliteStore(
        store.path,
        synchronous=store.synchronous,
        max_batch=store.max_batch,
        commit_delay=store.commit_delay,
        busy_timeout=store.busy_timeout,
        cache_mb=store.cache_mb,
    )


class Daemon:
    """The whole process: UDP intake, the store, the live state and the HTTP API."""

    def __init__(self, settings: config_mod.Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier("")
        self.index = SessionIndex(settings.sessions.closed_cache)
        self.users = UserDirectory(
            numeric_user_names=settings.users.numeric_user_names,
            pattern=settings.users.pattern,
            pattern_attribute=settings.users.pattern_attribute,
        )
        self.accountant = FastAccountant(
            self.index,
            self.users,
            default_interim_interval=settings.sessions.default_interim_interval,
            stale_multiple=settings.sessions.stale_multiple,
        )
        self.store: Store = make_store(settings)
        self.user_sync = UserSync(self.index, self.users, self.store)
        self.retention = Retention(self.store, lambda: self.settings.store.retention_days)
        # the dashboard's plots: the last hour of the live state, sampled on a timer
        self.trend = SessionTrend(self.index, self.accountant, settings.api.trend_interval)
        self.control = SessionControl(
            self.index,
            self.users,
            LimitSettings(settings.users.default_max_sessions, settings.users.limit_policy),
            settings.radius.clients,
        )
        self.service: AccountingService | None = None
        self.listeners: list[UdpListener] = []
        self.radsec: RadsecIntake | None = None
        self.http_server: ThreadedServer | None = None
        self.app: GraphQLApp | None = None
        self.http_address: tuple[str, int] | None = None
        self._http_socket: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._stopped = False
        self.started = False
        self.recovered_sessions = 0

    # -- Backend protocol of radtrack.api ----------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        ok = self.started
        return {"udp": bool(self.listeners) and ok, "database": self.store.healthy and ok}

    async def upsert_users(self, users: list[User]) -> None:
        await self.user_sync.upsert(users)

    def device_limit(self, user_id: int) -> int:
        return self.control.device_limit(user_id)

    async def disconnect(self, session: Session, *, requested_by: str) -> DisconnectResult:
        return await self.control.disconnect(session, requested_by=requested_by)

    @property
    def disconnect_results(self) -> Counter[str]:
        return self.control.results

    @property
    def history_page_max(self) -> int:
        return self.settings.store.history_page_max

    async def session_history(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        return await self.store.history_page(
            user_id, since=since, until=until, limit=limit, cursor=cursor
        )

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.settings
        try:
            dictionary = dictionary_mod.load(settings.radius.dictionary)
            tls = server_context(settings.radius)  # None without radius.radsec_listen
        except RadtrackError as exc:
            raise StartupError(str(exc)) from None
        bound = bind_all(settings.radius, settings.api.listen)
        self._http_socket = bound.http
        try:
            await self._open_store()
        except BaseException:
            bound.close()
            raise
        self.service = AccountingService(settings.radius, dictionary, self.accountant, self.store)
        self.service.subscribers.append(self.control.enforce_limits)
        self.control.disconnector = DisconnectClient(
            dictionary, settings.radius.disconnect_timeout, settings.radius.disconnect_attempts
        )
        for sock in bound.udp:
            listener = UdpListener(sock, self.service.on_datagram)
            listener.start()
            self.listeners.append(listener)
        if tls is not None:  # RadSec (radsec.py): the same service behind TLS
            self.radsec = RadsecIntake(settings.radius, tls, self.service)
            await self.radsec.start(bound.radsec)
        if self._http_socket is not None:
            await self._start_http(self._http_socket)
            assert self.app is not None
            # live view (issue #8): committed changes also go to the API's subscriptions
            self.service.subscribers.append(self.app.events.publish)
        # what other nodes commit (PostgreSQL), from the cursor the live state was loaded at
        self.store.follow_remote(self._apply_remote)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._expire_loop(), name="radtrack-expire"))
        self._tasks.append(loop.create_task(self._maintain_loop(), name="radtrack-maintain"))
        self._tasks.append(loop.create_task(gcpolicy.pace(), name="radtrack-gc"))
        status = status_loop(self.notifier, self.status_line, self.acknowledged, self.store.stuck)
        self._tasks.append(loop.create_task(status, name="radtrack-notify"))
        self._tasks.append(loop.create_task(self.trend.run(), name="radtrack-trend"))
        if settings.store.retention_days:
            self._tasks.append(loop.create_task(self.retention.run(), name="radtrack-retention"))
        self.started = True
        self.notifier.notify("READY=1", self.status_line())
        logger.info(
            "event=started udp=%s http=%s radsec=%s sessions_online=%d recovered=%d database=%s",
            ",".join(f"{h}:{p}" for h, p in (lst.address for lst in self.listeners)),
            f"{self.http_address[0]}:{self.http_address[1]}" if self.http_address else "off",
            ",".join(f"{h}:{p}" for h, p in self.radsec.addresses) if self.radsec else "off",
            len(self.index),
            self.recovered_sessions,
            self.store.describe(),
        )

    async def _open_store(self) -> None:
        try:
            await self.store.open()
        except Exception as exc:
            key, hint = (
                ("store.dsn", "is PostgreSQL running, and may this user connect to it?")
                if self.settings.store.backend == "postgresql"
                else ("store.path", "check the directory exists and is writable")
            )
            raise StartupError(
                f"{key}: cannot open database {self.store.describe()}: {exc} (hint: {hint})"
            ) from None
        started = time.monotonic()
        state = await self.store.load_state(self.settings.sessions.closed_cache)
        sessions, users = state.sessions, state.users
        for user in users:
            self.users.upsert(user)
        now = time.time()
        for session in sessions:
            self.accountant.restore(session, now)
        self.recovered_sessions = len(self.index)
        gc.freeze()  # recovered sessions live long: keep them out of every collection
        # a clean stop may write them down for the next start (SQLite: store/snapshot.py)
        if self.settings.store.snapshot:
            self.store.keep_at_close(lambda: list(self.index))
        logger.info(
            "event=recovered sessions_online=%d closed_kept=%d users=%d journal_rows=%d "
            "source=%s seconds=%.2f",
            len(self.index),
            len(sessions) - len(self.index),
            len(users),
            state.journal_rows,
            state.source,
            time.monotonic() - started,
        )

    async def _start_http(self, sock: socket.socket) -> None:
        """The API on a thread of its own (radtrack/api/thread.py says what crosses over)."""
        from radtrack.api.app import create_app
        from radtrack.api.guard import ConnectionGuard
        from radtrack.api.thread import HomeBackend, ThreadedServer, called_on
        from radtrack.metrics import renderer

        home = asyncio.get_running_loop()
        app = create_app(
            HomeBackend(self, home),
            self.settings.api,
            http_ready=lambda: self.started,
            metrics=called_on(home, renderer(self)),
        )
        self.app = app
        server = ThreadedServer(app, ConnectionGuard(self.settings.api))
        await server.start(sock)
        self.http_server = server
        host, port = sock.getsockname()[:2]
        self.http_address = (host, port)

    async def _expire_loop(self) -> None:
        """One pass over every online session per sessions.stale_check_interval, a slice a
        second, so the check costs the event loop a few milliseconds at a time."""
        interval = self.settings.sessions.stale_check_interval
        tick = min(1.0, interval)
        while True:
            await asyncio.sleep(tick)
            # not while the store fails: on PostgreSQL the other nodes' updates may not be
            # arriving, and a session they keep alive must not be closed here as stale
            if self.service is not None and self.store.healthy:
                budget = max(1_000, int(len(self.index) * tick / interval) + 1)
                self.service.expire(budget)

    async def _maintain_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_INTERVAL)
            try:
                await self.store.maintain()
            except Exception as exc:  # a busy or failing disk: the next round tries again
                logger.debug("event=checkpoint_failed error=%s", exc)
            gcpolicy.settle()  # sessions made since the last round: out of the GC's sight

    def _apply_remote(self, sessions: Sequence[Session]) -> None:
        """Sessions other nodes committed: into memory, and to the API's subscribers."""
        if self.service is None:
            return
        changes = self.service.apply_remote(sessions)
        if changes and self.app is not None:
            self.app.events.publish(changes)

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP): NAS clients, secrets and API tokens (the /metrics
        one too) change live; settings that need a restart are reported; a bad file is rejected
        and the old kept."""
        source = self.settings.source
        if source is None:
            logger.error("event=reload_rejected error=%r", "no config file to re-read")
            return False
        try:
            new = config_mod.load(source)
        except ConfigError as exc:
            logger.error("event=reload_rejected error=%r (the running config is kept)", str(exc))
            return False
        old = self.settings
        for key in old.needing_restart(new):
            logger.warning("event=reload_needs_restart key=%s (the running value is kept)", key)
        # users written by `radtrack users import` are read off the loop, then applied
        task = asyncio.get_running_loop().create_task(self.user_sync.reload())
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        self.settings = old.reloaded(new)
        radius = self.settings.radius
        self.control.clients = radius.clients
        if self.service is not None:
            self.service.reconfigure(radius)
        if self.radsec is not None:
            self.radsec.reconfigure(radius)
        if self.app is not None and self.http_server is not None:
            from radtrack.api.auth import TokenVerifier

            self.app.tokens = TokenVerifier(new.api.tokens)
            self.app.metrics_token = new.api.metrics_token_sha256
            self.http_server.revoke(self.app.tokens.knows)
        for warning in new.warnings():
            logger.warning("event=config_warning %s", warning)
        logger.info("event=reloaded clients=%d tokens=%d", len(radius.clients), len(new.api.tokens))
        self.notifier.notify("READY=1", self.status_line())
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    def acknowledged(self) -> int:
        return self.service.stats.acknowledged if self.service is not None else 0

    def status_line(self) -> str:
        return (
            f"STATUS=online={len(self.index)} acknowledged={self.acknowledged()}"
            f" database={'ok' if self.store.healthy else 'failing'}"
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Intake stops, queued packets are committed and answered, HTTP stops, the database
        closes; bounded by daemon.shutdown_timeout. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.started = False
        self.notifier.notify("STOPPING=1")
        timeout = self.settings.daemon.shutdown_timeout
        deadline = time.monotonic() + timeout
        for listener in self.listeners:
            listener.pause()
        if self.radsec is not None:
            self.radsec.pause()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        try:  # nothing to flush when start-up stopped before the store was open
            if self.service is not None:
                await asyncio.wait_for(self.store.flush(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            logger.error("event=shutdown_flush_timeout queued=%d", self.store.queued)
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
        if self.http_server is not None:
            await self.http_server.stop(max(0.5, deadline - time.monotonic()))
            self.http_server = None
        elif self._http_socket is not None:
            self._http_socket.close()
        self.control.cancel()
        await self.store.close(max(0.1, deadline - time.monotonic()))
        if self.radsec is not None:  # after the last commit's replies: they go out first
            await self.radsec.close(max(0.1, deadline - time.monotonic()))
        stats = self.service.stats if self.service is not None else None
        logger.info(
            "event=stopped accepted=%d acknowledged=%d unanswered=%d",
            stats.accepted if stats else 0,
            stats.acknowledged if stats else 0,
            (stats.accepted - stats.acknowledged - stats.dropped["store_failed"]) if stats else 0,
        )


async def run(settings: config_mod.Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT; a second signal forces exit. Returns an exit code."""
    notifier = Notifier()
    try:
        daemon = Daemon(settings, notifier)
    except ConfigError as exc:  # e.g. store.password_file cannot be read
        logger.error("event=startup_failed error=%r", str(exc))
        notifier.close()
        return 1
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            logger.error("event=forced_exit signal=%s", signal.Signals(signum).name)
            raise SystemExit(1)
        logger.info("event=stopping signal=%s", signal.Signals(signum).name)
        daemon.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def on_reload() -> None:
        notifier.notify("RELOADING=1")
        daemon.reload()

    loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await daemon.start()
    except (StartupError, StoreError) as exc:
        logger.error("event=startup_failed error=%r", str(exc))
        await daemon.stop()
        notifier.close()
        return 1
    await daemon.wait()
    await daemon.stop()
    notifier.close()
    return 0
