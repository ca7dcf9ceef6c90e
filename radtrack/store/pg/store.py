"""The PostgreSQL store: any number of radtrack nodes sharing one database (issue 13).

Commits. The commit thread of store/groupcommit.py runs an asyncio loop of its own with one
asyncpg connection (``synchronous_commit = on``): a group commit is one statement
(feed.write_newer: the unnest upsert into ``sessions`` plus its ``session_changes`` row), so
an Accounting-Response leaves only after the COMMIT that holds the packet's effect, as on
SQLite. A session's row never goes back to an older state: a node that wrote from a stale state
(a NAS that failed over while the other node's commit was in flight) has its row refused, and
reads the session's stored state back into memory (``follow_remote``'s callback gets it).

Other nodes' commits. store/pg/follower.py follows the change feed on the event loop and hands
the sessions other nodes wrote to ``follow_remote``'s callback, which applies them to the
memory index.

Faults. While commits fail, or the feed cannot reach the database, ``healthy`` is False
(/readyz 503, Status-Server unanswered, no Accounting-Response): the NAS retransmits, and once
PostgreSQL is back the queued rows commit and the feed catches up from its cursor.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg

from radtrack import gcpolicy
from radtrack.errors import StoreError
from radtrack.model import SESSION_COLUMNS, Session, User, taken_username
from radtrack.store.base import LiveState, Outcome, RemoteApply, why_rejected
from radtrack.store.groupcommit import GroupCommit, Pending
from radtrack.store.history import PRUNE_CHUNK, decode_cursor, encode_cursor
from radtrack.store.pg import feed, schema
from radtrack.store.pg.follower import DATABASE_ERRORS, FeedFollower

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection = Any  # asyncpg ships no type information

# one row's values, not the database: a text PostgreSQL cannot hold (a NUL), an integer past 64
# bits, a value of the wrong type (asyncpg's DataError covers its own encoding errors too)
ROW_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    UnicodeError,
    OverflowError,
    ValueError,
    TypeError,
)
_COLUMNS = ", ".join(SESSION_COLUMNS)
LOAD_BATCH = 100_000  # sessions a round trip at start-up
_SELECT = f"SELECT {_COLUMNS} FROM sessions"
# as on SQLite (store/schema.py): a write frees its own users' usernames, never another's
USERNAME_OWNERS = "SELECT username, user_id FROM users WHERE username = ANY($1::text[])"
FREE_OWN_USERNAMES = (
    "UPDATE users SET username = NULL WHERE user_id = ANY($1::bigint[]) AND username IS NOT NULL"
)
UPSERT_USER = (
    "INSERT INTO users (user_id, username, reseller_id, max_sessions) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, "
    "reseller_id = excluded.reseller_id, max_sessions = excluded.max_sessions"
)


def public_dsn(dsn: str) -> str:
    """The DSN for logs: without a password, should one be in it."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


async def connect(dsn: str, password: str | None, node: str, timeout: float = 5.0) -> Connection:
    """One connection, durable commits whatever the server's default."""
    return await asyncpg.connect(
        dsn,
        password=password,
        timeout=timeout,
        command_timeout=30.0,
        server_settings={"application_name": f"radtrack {node}"[:63], "synchronous_commit": "on"},
    )


class PgStore(GroupCommit):
    """store/base.py's Store on PostgreSQL."""

    row_errors = ROW_ERRORS
    commit_errors = (*DATABASE_ERRORS, *ROW_ERRORS)
    counter_rows = False  # an upsert writes whole rows
    thread_name = "radtrack-pg"

    def __init__(
        self,
        dsn: str,
        *,
        node: str,
        password: str | None = None,
        max_batch: int = 10_000,
        commit_delay: float = 0.0,
        poll_interval: float = 0.5,
        retry_delay: float = 0.2,
        max_retry_delay: float = 2.0,
    ) -> None:
        super().__init__(
            max_batch=max_batch,
            commit_delay=commit_delay,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
        )
        self.dsn = dsn
        self.node = node
        self._password = password
        self.poll_interval = poll_interval
        self._commits_ok = True
        self._conn: Connection | None = None  # the commit thread's
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._pool: Any = None  # asyncpg.Pool, for the event loop's reads and statements
        self._remote: RemoteApply | None = None
        self.follower = FeedFollower(self._connect, node, self._deliver, self.stats)
        self.follower.poll_interval = poll_interval
        self._following: asyncio.Task[None] | None = None
        # sessions whose rows a commit refused (another node's state is newer): read back by
        # the commit thread, applied on the event loop after that commit's callbacks
        self._refused: collections.deque[list[Session]] = collections.deque()

    # -- health: commits and the feed both -------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._commits_ok and self.follower.ok

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._commits_ok = value

    def describe(self) -> str:
        return public_dsn(self.dsn)

    async def _connect(self) -> Connection:
        return await connect(self.dsn, self._password, self.node)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        conn = await self._connect()
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            password=self._password,
            min_size=1,
            max_size=3,
            timeout=5.0,
            command_timeout=30.0,
            server_settings={"application_name": f"radtrack {self.node}"[:63]},
        )
        self._start_thread()

    async def load_state(self, closed_limit: int) -> LiveState:
        """One snapshot: the online sessions, the ``closed_limit`` most recently closed, the
        users, and the feed cursor to follow from."""
        from_row = Session.from_row
        with gcpolicy.paused(long_lived=True):  # a million new sessions
            async with self._pool.acquire() as conn:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")
                    # through a cursor, in batches: each batch of records is gone once it
                    # is sessions (1,000,000: 1.2 GB at the peak instead of 1.4)
                    online = await conn.cursor(f"{_SELECT} WHERE stop_time IS NULL")
                    sessions: list[Session] = []
                    while batch := await online.fetch(LOAD_BATCH):
                        sessions += [from_row(tuple(r)) for r in batch]
                    closed = await conn.fetch(
                        f"SELECT * FROM ({_SELECT} WHERE stop_time IS NOT NULL "
                        "ORDER BY stop_time DESC LIMIT $1) AS c ORDER BY stop_time",
                        closed_limit,
                    )
                    sessions += [from_row(tuple(r)) for r in closed]
                    users = await conn.fetch(
                        "SELECT user_id, username, reseller_id, max_sessions FROM users"
                    )
        self.follower.cursor = int(horizon)
        return LiveState(sessions, [User(*r) for r in users])

    def keep_at_close(self, online: Callable[[], list[Session]]) -> None:
        """Other nodes write this store too: no copy of one node's memory is ever the truth."""

    def follow_remote(self, apply: RemoteApply) -> None:
        self._remote = apply
        if self._following is None and self._pool is not None:
            self._following = asyncio.get_running_loop().create_task(
                self.follower.run(), name="radtrack-feed"
            )

    def _deliver(self, sessions: list[Session]) -> None:
        if self._remote is not None:
            self._remote(sessions)

    async def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, stop the feed and the commit thread, close the connections.
        Idempotent; after ``timeout`` what is still queued is left (never acknowledged)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._following is not None:
            task, self._following = self._following, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_thread(timeout)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            left = None if deadline is None else max(0.5, deadline - time.monotonic())
            try:
                await asyncio.wait_for(pool.close(), left)
            except TimeoutError:
                pool.terminate()

    # -- the commit thread ---------------------------------------------------------------------
    def _commit_loop(self) -> None:
        loop = self._thread_loop = asyncio.new_event_loop()
        try:
            super()._commit_loop()
        finally:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.wait_for(conn.close(), 2.0))
            loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._thread_loop is not None
        return self._thread_loop.run_until_complete(coroutine)

    async def _write(self, rows: list[Pending]) -> None:
        if not rows:
            return  # a flush with nothing queued: nothing to commit
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await self._connect()
        try:
            refused = await feed.write_newer(conn, self.node, [row for row, _ in rows])
            if refused:
                found = await conn.fetch(f"{_SELECT} WHERE id = ANY($1::text[])", refused)
                self._refused.append([Session.from_row(tuple(r)) for r in found])
        except BaseException:
            if conn.is_closed():
                self._conn = None
            raise

    def _write_rows(self, rows: list[Pending], chore: int) -> None:
        self._run(self._write(rows))

    def _write_each(self, rows: list[Pending], chore: int) -> dict[int, str]:
        rejected: dict[int, str] = {}
        for at, pending in enumerate(rows):
            try:
                self._run(self._write([pending]))
            except ROW_ERRORS as exc:
                rejected[at] = why_rejected(exc)
        return rejected

    def _committed(self, ok: Outcome, chore: int) -> None:
        stats = self.stats
        stats.folded_rows = stats.rows  # ``sessions`` is written by the commit itself
        while self._refused:
            sessions = self._refused.popleft()
            logger.info("event=rows_superseded count=%d", len(sessions))
            if self._remote is not None and sessions:
                self._remote(sessions)

    def committed_sessions(self, ids: Sequence[str]) -> dict[str, Session]:
        """A blocking read on a connection of its own, in a thread with its own loop (the rare
        repair after a rejected row; the service calls it on the event loop)."""

        async def read() -> list[Any]:
            conn = await self._connect()
            try:
                return list(await conn.fetch(f"{_SELECT} WHERE id = ANY($1::text[])", list(ids)))
            finally:
                await conn.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            found = pool.submit(asyncio.run, read()).result(timeout=30)
        return {row[0]: Session.from_row(tuple(row)) for row in found}

    async def maintain(self) -> None:
        if self._pool is not None:
            await self.follower.maintain(self._pool)

    # -- operations of the API and the timers ---------------------------------------------------
    async def upsert_users(self, users: Sequence[User]) -> None:
        async def write() -> None:
            async with self._pool.acquire() as conn:
                await write_users(conn, users)

        await _stored(asyncio.shield(write()))

    async def load_users(self) -> list[User]:
        rows = await _stored(
            self._pool.fetch("SELECT user_id, username, reseller_id, max_sessions FROM users")
        )
        return [User(*row) for row in rows]

    async def history_page(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        # what this node acknowledged is committed already: flush what is queued
        await self.flush()
        where = ["user_id = $1"]
        params: list[object] = [user_id]
        if until is not None:
            params.append(until)
            where.append(f"start_time < ${len(params)}")
        if since is not None:
            params.append(since)
            where.append(f"(stop_time IS NULL OR stop_time >= ${len(params)})")
        if cursor is not None:
            start, sid = decode_cursor(cursor)
            params += [start, sid]
            n = len(params)
            where.append(f"(start_time < ${n - 1} OR (start_time = ${n - 1} AND id < ${n}))")
        params.append(limit + 1)
        sql = (
            f"{_SELECT} WHERE {' AND '.join(where)} "
            f"ORDER BY start_time DESC, id DESC LIMIT ${len(params)}"
        )
        rows = await _stored(self._pool.fetch(sql, *params))
        sessions = [Session.from_row(tuple(row)) for row in rows]
        more = len(sessions) > limit
        sessions = sessions[:limit]
        return sessions, encode_cursor(sessions[-1]) if more and sessions else None

    async def prune_closed(self, before: float) -> int:
        total = 0
        while True:
            done = await _stored(
                self._pool.execute(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE "
                    f"stop_time IS NOT NULL AND stop_time < $1 LIMIT {PRUNE_CHUNK})",
                    before,
                )
            )
            changed = int(done.split()[-1])
            total += changed
            if changed < PRUNE_CHUNK:
                return total


async def write_users(conn: Connection, users: Sequence[User]) -> None:
    """Upsert users in one transaction; UsernameTaken (nothing written) when one would take a
    username from a user the write leaves alone (what every node and `radtrack users import`
    have written counts, not only what this node has loaded)."""
    async with conn.transaction():
        names = [u.username for u in users if u.username is not None]
        owners = {row[0]: row[1] for row in await conn.fetch(USERNAME_OWNERS, names)}
        taken = taken_username(users, owners.get)
        if taken is not None:
            raise taken
        await conn.execute(FREE_OWN_USERNAMES, [u.user_id for u in users])
        await conn.executemany(
            UPSERT_USER, [(u.user_id, u.username, u.reseller_id, u.max_sessions) for u in users]
        )


async def _stored(awaitable: Any) -> Any:
    """Await a statement; the database's errors become StoreError (the API's contract)."""
    try:
        return await awaitable
    except DATABASE_ERRORS as exc:
        raise StoreError(f"the database failed: {exc}") from None
