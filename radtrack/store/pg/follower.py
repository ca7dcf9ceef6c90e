"""Following the change feed (store/pg/feed.py): what other nodes commit reaches this node.

``FeedFollower.run`` is a task on the event loop with two connections of its own: one LISTENs
(the wake-up), one reads the feed from this node's cursor after every wake-up and at least every
``poll_interval`` seconds (a NOTIFY lost with a dropped connection costs one poll, not data).
While it cannot reach the database ``ok`` is False (the store then reports itself unhealthy:
/readyz 503 on every node when PostgreSQL is down); it reconnects with backoff and catches up
from the cursor it kept.

Every ``PRUNE_EVERY`` seconds (``maintain``) the node saves its cursor in ``feed_cursors`` and
prunes the changes below the lowest cursor of the nodes seen in the last ``LIVE_READER``; a node
whose cursor fell below what was pruned (FeedGap) reloads the online sessions and those closed
in the last ``RESYNC_CLOSED`` seconds instead, as current rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from radtrack.model import SESSION_COLUMNS, Session
from radtrack.store.base import StoreStats
from radtrack.store.pg import feed

logger = logging.getLogger(__name__)

Connection = Any  # asyncpg ships no type information
# the database: down, restarting, refusing connections, a dropped connection, a timeout
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
PRUNE_EVERY = 60.0  # seconds between saving the feed cursor and pruning the change table
LIVE_READER = "10 minutes"  # a node whose cursor is older than this does not hold back pruning
RESYNC_CLOSED = 3600.0  # seconds of closed sessions a node reloads after a gap in the feed
SAVE_CURSOR = (
    "INSERT INTO feed_cursors (node, cursor) VALUES ($1, $2::text::xid8) ON CONFLICT (node) "
    "DO UPDATE SET cursor = excluded.cursor, seen = now()"
)
LOW_CURSOR = (
    "SELECT min(cursor::text::numeric)::text FROM feed_cursors "
    f"WHERE seen > now() - '{LIVE_READER}'::interval"
)
_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"


class FeedFollower:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        node: str,
        deliver: Callable[[list[Session]], None],
        stats: StoreStats,
    ) -> None:
        self._connect = connect
        self.node = node
        self._deliver = deliver
        self.stats = stats
        self.cursor = 0  # every change below it has been delivered
        self.ok = True
        self.poll_interval = 0.5
        self.retry_delay = 0.2
        self.max_retry_delay = 2.0
        self._last_prune = time.monotonic()

    async def run(self) -> None:
        """Follow the feed until cancelled, reconnecting with backoff."""
        delay = self.retry_delay
        while True:
            try:
                await self._follow_connected()
            except Exception as exc:  # the database (or a bug: logged with its trace)
                self.stats.feed_failures += 1
                if not isinstance(exc, DATABASE_ERRORS):
                    logger.exception("event=feed_crashed")
                elif self.ok:
                    logger.error("event=feed_failed error=%r (retrying)", str(exc))
                self.ok = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
            else:
                delay = self.retry_delay

    async def _follow_connected(self) -> None:
        """Read the feed until the connection is lost (then raise)."""
        listener = feed.ChangeListener(await self._connect())
        reader = None
        try:
            await listener.start()
            reader = await self._connect()
            while True:
                await self._catch_up(reader)
                if not self.ok:
                    logger.info("event=feed_recovered cursor=%d", self.cursor)
                self.ok = True
                await listener.wait(self.poll_interval)
                if listener.closed:
                    raise ConnectionError("the LISTEN connection was lost")
        finally:
            with contextlib.suppress(Exception):
                await listener.close()
            if reader is not None:
                reader.terminate()

    async def _catch_up(self, reader: Connection) -> None:
        while True:
            try:
                rows, cursor = await feed.read_changes(reader, self.cursor, node=self.node)
            except feed.FeedGap as gap:
                logger.warning("event=feed_gap error=%r (reloading)", str(gap))
                await self._resync(reader)
                continue
            if rows:
                self._hand_over([Session.from_row(row) for row in rows])
            if cursor == self.cursor:
                return
            self.cursor = cursor

    async def _resync(self, reader: Connection) -> None:
        """After a gap: the online sessions and those closed lately, as current rows."""
        async with reader.transaction(isolation="repeatable_read", readonly=True):
            horizon = await reader.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")
            rows = await reader.fetch(
                f"{_SELECT} WHERE stop_time IS NULL OR stop_time > $1",
                time.time() - RESYNC_CLOSED,
            )
        self._hand_over([Session.from_row(tuple(row)) for row in rows])
        self.cursor = int(horizon)

    def _hand_over(self, sessions: list[Session]) -> None:
        self.stats.remote_sessions += len(sessions)
        self._deliver(sessions)

    async def maintain(self, pool: Any) -> None:
        """Every PRUNE_EVERY seconds: save this node's cursor, prune what every live node has
        read."""
        if time.monotonic() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = time.monotonic()
        async with pool.acquire() as conn:
            await conn.execute(SAVE_CURSOR, self.node, str(self.cursor))
            low = await conn.fetchval(LOW_CURSOR)
            if low:
                pruned = await feed.prune(conn, int(low))
                if pruned:
                    logger.debug("event=feed_pruned rows=%d", pruned)
