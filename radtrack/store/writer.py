"""The single writer: owns the SQLite write connection and commits in groups.

Callers ``submit`` session rows and a completion callback; the writer task takes everything queued
since the last commit into one transaction (group commit), commits, and only then calls the
callbacks with ``True`` (DESIGN.md invariant 1: no ack before the write is durable). When a commit
fails (disk full, read-only, locked) the callbacks get ``False`` (no reply goes out, the NAS
retransmits), the rows stay queued, and the writer retries with backoff until the disk recovers,
so the memory index and SQLite converge again (invariant 3).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from radtrack.errors import StoreError
from radtrack.model import SessionChange
from radtrack.store.schema import (
    COUNTER_INDEXES,
    UPSERT_CHUNK,
    migrate,
    update_counters,
    upsert_sessions,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Done = Callable[[bool], None]
# Upper bounds (seconds) of the commit duration histogram (radtrack_commit_seconds)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
Row = tuple[object, ...]
# a snapshot of a session and whether every column must be written (else counters only)
Pending = tuple[Row, bool]
# one statement and its parameter sets (executemany)
Step = tuple[str, Sequence[Sequence[Any]]]


def _prepare(path: Path, synchronous: str, busy_timeout: float) -> None:
    """Create or migrate the database (blocking; run in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
    finally:
        conn.close()


class WriterStats:
    """Counters the writer keeps for metrics and the status line."""

    __slots__ = (
        "commits",
        "rows",
        "failures",
        "last_batch",
        "commit_started",
        "commit_buckets",
        "commit_seconds_sum",
    )

    def __init__(self) -> None:
        self.commits = 0
        self.rows = 0
        self.failures = 0
        self.last_batch = 0
        self.commit_started: float | None = None  # monotonic time the running commit began
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_seconds_sum = 0.0


class Writer:
    """One aiosqlite connection, one task, group commits."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 10_000,
        busy_timeout: float = 1.0,
        cache_mb: int = 256,
        retry_delay: float = 0.2,
        max_retry_delay: float = 2.0,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self.cache_mb = cache_mb
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.stats = WriterStats()
        self.healthy = True
        # a plain sqlite3 connection used only on the one thread of ``_executor``: a commit is
        # one hop to that thread and back (aiosqlite costs a hop per statement, each waiting
        # for the event loop; docs/performance.md)
        self._conn: sqlite3.Connection | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="radtrack-writer"
        )
        self._rows: dict[object, Pending] = {}
        self._statements: list[tuple[list[Step], asyncio.Future[int]]] = []
        self._callbacks: list[Done] = []
        self._committing = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def open(self) -> None:
        await asyncio.to_thread(_prepare, self.path, self.synchronous, self.busy_timeout)
        self._conn = await self._in_thread(self._connect)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="radtrack-writer")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # interims update rows all over the table: keep its pages in memory
            conn.execute(f"PRAGMA cache_size = -{self.cache_mb * 1024}")
            # checkpoints run on their own connection (checkpoint()), not inside a commit
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- submitting ---------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Packets in flight: waiting for a commit or inside the one running now."""
        return len(self._callbacks) + self._committing

    def submit(self, changes: Sequence[SessionChange], done: Done | None = None) -> None:
        """Queue snapshots of the changed sessions (the newest snapshot of a session wins) and a
        completion callback that runs after the commit that holds them (or a later one)."""
        if self._closing:
            raise StoreError("the writer is closed")
        pending = self._rows
        for change in changes:
            key = change.session.id
            full = not change.counters_only
            if not full:
                queued = pending.get(key)
                full = queued is not None and queued[1]
            pending[key] = (change.session.row(), full)
        if done is not None:
            self._callbacks.append(done)
        self._idle.clear()
        self._wakeup.set()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in the next group commit; returns the rows it changed, once
        committed. Raises StoreError if that commit fails (the statement is not retried)."""
        return await self.executemany(sql, [params])

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> int:
        """Run a statement for every parameter set, all in the next group commit."""
        return await self.run([(sql, params)])

    async def run(self, steps: list[Step]) -> int:
        """Run several statements in order inside the next group commit (all or none);
        returns the rows the last one changed."""
        if self._closing:
            raise StoreError("the writer is closed")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._statements.append((steps, future))
        self._idle.clear()
        self._wakeup.set()
        return await future

    def stuck(self, limit: float) -> bool:
        """A commit has been running for longer than ``limit`` seconds (a hung disk)."""
        started = self.stats.commit_started
        return started is not None and time.monotonic() - started > limit

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        await self._idle.wait()

    # -- the task -------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.retry_delay
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not (self._rows or self._callbacks or self._statements):
                self._idle.set()
                if self._closing:
                    return
                continue
            rows, self._rows = self._rows, {}
            callbacks, self._callbacks = self._callbacks, []
            statements, self._statements = self._statements, []
            if len(rows) > self.max_batch:
                # commit the oldest max_batch rows now and the rest in the next round; the
                # callbacks wait for that round, since some of their rows are in it
                keep = list(rows.items())
                rows = dict(keep[: self.max_batch])
                for key, pending in keep[self.max_batch :]:
                    self._rows.setdefault(key, pending)
                self._callbacks[:0] = callbacks
                callbacks = []
            self._committing = len(callbacks)
            try:
                ok = await self._commit(rows, statements)
            finally:
                self._committing = 0
            for done in callbacks:
                done(ok)
            if ok:
                delay = self.retry_delay
                self.healthy = True
            else:
                # keep the rows (a newer snapshot queued meanwhile wins) and retry after a pause
                for key, pending in rows.items():
                    newer = self._rows.get(key)
                    if newer is None:
                        self._rows[key] = pending
                    elif pending[1] and not newer[1]:
                        self._rows[key] = (newer[0], True)
                self.healthy = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
            self._wakeup.set()

    async def _commit(
        self,
        rows: dict[object, Pending],
        statements: list[tuple[list[Step], asyncio.Future[int]]],
    ) -> bool:
        started = time.monotonic()
        self.stats.commit_started = started
        try:
            if rows or statements:
                counts = await self._in_thread(
                    self._write, list(rows.values()), [steps for steps, _ in statements]
                )
            else:
                counts = []
        except sqlite3.Error as exc:
            self.stats.failures += 1
            logger.error(
                "event=commit_failed rows=%d error=%r (no replies sent; retrying)",
                len(rows),
                str(exc),
            )
            self.stats.commit_started = None
            error = StoreError(f"commit failed: {exc}")
            for _, future in statements:
                if not future.done():
                    future.set_exception(error)
            return False
        for (_, future), count in zip(statements, counts, strict=True):
            if not future.done():
                future.set_result(count)
        elapsed = time.monotonic() - started
        stats = self.stats
        stats.commit_started = None
        stats.commits += 1
        stats.rows += len(rows)
        stats.last_batch = len(rows)
        stats.commit_seconds_sum += elapsed
        stats.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, elapsed)] += 1
        return True

    def _write(self, rows: list[Pending], statements: list[list[Step]]) -> list[int]:
        """One transaction, on the writer thread: whole rows, counter rows, then statements.
        Raises sqlite3.Error after rolling back."""
        conn = self._conn
        assert conn is not None
        counts: list[int] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # whole rows first (a session's first write is always whole), then counters
            whole = [row for row, full in rows if full]
            for start in range(0, len(whole), UPSERT_CHUNK):
                chunk = whole[start : start + UPSERT_CHUNK]
                conn.execute(
                    upsert_sessions(len(chunk)), list(itertools.chain.from_iterable(chunk))
                )
            counters = [row for row, full in rows if not full]
            for start in range(0, len(counters), UPSERT_CHUNK):
                chunk = counters[start : start + UPSERT_CHUNK]
                values: list[object] = []
                for row in chunk:
                    values.append(row[0])
                    values.extend([row[i] for i in COUNTER_INDEXES])
                conn.execute(update_counters(len(chunk)), values)
            for steps in statements:
                count = 0
                for sql, params in steps:
                    count = conn.executemany(sql, params).rowcount
                counts.append(count)
            conn.execute("COMMIT")
        except sqlite3.Error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # no transaction left to roll back
            raise
        return counts

    async def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, stop the task, close the connection. Idempotent.

        After ``timeout`` seconds (a disk that keeps failing) the task is cancelled and what is
        still queued is lost; it was never acknowledged, so the NASes retransmit it later.
        """
        self._closing = True
        if self._task is not None:
            task, self._task = self._task, None
            self._wakeup.set()
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                logger.error("event=writer_abandoned queued_rows=%d", len(self._rows))
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # on the writer thread, after any commit still running there
            closing = asyncio.wrap_future(self._executor.submit(conn.close))
            try:
                await asyncio.wait_for(closing, max(self.busy_timeout, 1.0) + 1.0)
            except TimeoutError:
                logger.error("event=writer_close_timeout")
        self._executor.shutdown(wait=False)


async def checkpoint(path: Path) -> None:
    """A PASSIVE WAL checkpoint on a connection of its own, off the writer's commit path."""

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    await asyncio.to_thread(run)
