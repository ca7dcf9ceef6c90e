"""The SQLite writer: group commits to the journal, folds into ``sessions`` on a second thread.

The commit thread (store/groupcommit.py) appends each group commit's session snapshots to the
journal (store/journal.py), a file of its own written sequentially, and commits; only then do
the replies go out. A second thread, with a connection of its own to the main database, folds
the journal into ``sessions`` every ``fold_interval`` seconds or ``fold_rows`` rows, runs
checkpoints, and runs the statements of ``run`` (users, pruning: store/sqlite.py names them).
Neither waits on the other: they write different files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from radtrack.errors import StoreError
from radtrack.model import SESSION_COLUMNS, Session
from radtrack.store import journal, writeback
from radtrack.store.base import Outcome
from radtrack.store.groupcommit import GroupCommit, Pending, os_thread_name
from radtrack.store.schema import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The nice value of the fold thread: the scheduler gives it ~1/10 of a contended core
BACKGROUND_NICE = 10
# seconds a clean close gives _last_words besides closing the connection (the snapshot's seal:
# one transaction that reads the closed sessions and the users)
LAST_WORDS_SECONDS = 10.0
# one statement and its parameter sets (executemany)
Step = tuple[str, Sequence[Sequence[Any]]]


def _prepare(path: Path, synchronous: str, busy_timeout: float) -> int:
    """Create or migrate the database and fold what the journal holds from before (a crash)
    into ``sessions``; returns the journal rows folded (blocking; run in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
    finally:
        conn.close()
    return journal.settle(path, busy_timeout)


def _background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: a thread's nice value is its own)."""
    os_thread_name("radtrack-fold")
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError):  # not permitted, or not Linux: run at normal priority
        pass


class Writer(GroupCommit):
    """Group commits to the journal on one thread; folds and statements on another."""

    row_errors = journal.ROW_ERRORS
    commit_errors = (sqlite3.Error, *journal.ROW_ERRORS)

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 10_000,
        commit_delay: float = 0.0,
        busy_timeout: float = 1.0,
        cache_mb: int = 256,
        retry_delay: float = 0.2,
        max_retry_delay: float = 2.0,
        fold_interval: float = 10.0,
        fold_rows: int = 150_000,
        fold_chunk: int = 50_000,
    ) -> None:
        super().__init__(
            max_batch=max_batch,
            commit_delay=commit_delay,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
        )
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.cache_mb = cache_mb
        # the longer the interval, the more packets of one session (and rows of one page) a
        # fold merges into one write: at 5,000 packets/s over 100,000 sessions, 10 s instead of
        # 5 s halves the fold's CPU a packet; a sessionHistory query waits for one fold
        self.fold_interval = fold_interval
        self.fold_rows = fold_rows
        # journal rows per fold transaction: one transaction writes each page it touches once
        self.fold_chunk = fold_chunk
        # plain sqlite3 connections, each used only on the one thread of its executor: a commit
        # is one hop to that thread and back (aiosqlite costs a hop per statement, each waiting
        # for the event loop; docs/performance.md)
        self._conn: sqlite3.Connection | None = None  # the journal's, on the writer thread
        self._main: sqlite3.Connection | None = None  # the main database's, on the fold thread
        # folds and checkpoints are background work: on a small box they must not take the
        # cores from the event loop and the commits that acknowledgements wait for
        self._folder = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="radtrack-fold", initializer=_background_priority
        )
        self._statements: list[tuple[list[Step], asyncio.Future[int]]] = []
        # folding: the journal seq ``sessions`` holds (the mark). The fold commits without an
        # fsync (synchronous=NORMAL on the main database): what it wrote is durable once a
        # checkpoint has completed, which syncs the database file. The journal is trimmed up to
        # the mark of the completed checkpoint before the last one (``_trim_to``), so a power
        # loss never takes a fold whose journal rows are gone, and a reader that took its
        # snapshot of the main database a moment before still finds the rows it needs
        self._mark = 0
        self._durable = 0  # the mark at the last completed checkpoint
        self._trimmed = 0
        self._trim_to = 0
        self._fold_wakeup = asyncio.Event()
        self._fold_task: asyncio.Task[None] | None = None
        self._fold_waiters: list[asyncio.Future[None]] = []
        self._last_fold = time.monotonic()

    async def open(self) -> None:
        self.stats.recovered_journal_rows = await asyncio.to_thread(
            _prepare, self.path, self.synchronous, self.busy_timeout
        )
        self._conn = await asyncio.to_thread(self._connect)
        self._main = await self._in_folder(self._connect_main)
        self._mark = self._durable = self._trimmed = self._trim_to = journal.mark(self._main)
        self._start_thread()
        loop = asyncio.get_running_loop()
        self._fold_task = loop.create_task(self._fold_run(), name="radtrack-fold")

    def _connect(self) -> sqlite3.Connection:
        conn = journal.open_journal(journal.journal_path(self.path), self.busy_timeout)
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # checkpoints run on their own connection (checkpoint()), not inside a commit
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_main(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
        )
        try:
            # folds need no fsync of their own: the journal keeps their rows until a completed
            # checkpoint has synced the database file (see _trim_to), so a fold's tens of MB
            # reach the disk at checkpoints, not in the way of every acknowledgement's fsync
            conn.execute(f"PRAGMA synchronous = {self._main_synchronous}")
            # folds update rows all over the table: keep its pages in memory
            conn.execute(f"PRAGMA cache_size = -{self.cache_mb * 1024}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            journal.attach(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _in_folder(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._folder, fn, *args)

    async def on_main(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the main database's connection, on the fold thread (between folds)."""
        main = self._main
        if main is None:
            raise StoreError("the writer is closed")
        return await self._in_folder(fn, main)

    def _last_words(self, conn: sqlite3.Connection) -> None:
        """At a clean close (everything queued committed and folded, every callback run), on
        the main database's connection before it closes, on the fold thread: nothing here."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement on the main database; returns the rows it changed, once committed.
        Raises StoreError if that commit fails (the statement is not retried)."""
        return await self.executemany(sql, [params])

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> int:
        """Run a statement for every parameter set, all in one transaction."""
        return await self.run([(sql, params)])

    async def run(self, steps: list[Step]) -> int:
        """Run several statements in order in one transaction on the main database (all or
        none), after folding what the journal holds; returns the rows the last one changed."""
        if self._closing:
            raise StoreError("the writer is closed")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._statements.append((steps, future))
        self._fold_wakeup.set()
        return await future

    async def sync(self) -> None:
        """Wait until everything committed so far is folded into ``sessions`` (readers of the
        main database, such as the history, call this first). Raises StoreError if folding
        fails."""
        if self._closing:
            raise StoreError("the writer is closed")
        await self.flush()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fold_waiters.append(future)
        self._fold_wakeup.set()
        await future

    # -- the commit thread (store/groupcommit.py) --------------------------------------------
    def _chore(self) -> int:
        """The journal seq this commit may delete up to (0: none)."""
        if self._trimmed >= self._trim_to:
            return 0
        return min(self._trim_to, self._trimmed + journal.TRIM_CHUNK)

    def _committed(self, ok: Outcome, chore: int) -> None:
        if ok and chore:
            self._trimmed = chore
        if ok and self.stats.pending_rows >= self.fold_rows:
            self._fold_wakeup.set()

    def _write_rows(self, rows: list[Pending], chore: int) -> None:
        """One transaction on the journal, on the commit thread: append the rows, delete folded
        ones. Raises sqlite3.Error after rolling back."""
        conn = self._conn
        assert conn is not None
        whole = [row for row, full in rows if full]
        counters = [row for row, full in rows if not full]
        with journal.transaction(conn):
            journal.append(conn, whole, True)
            journal.append(conn, counters, False)
            if chore:
                conn.execute(journal.TRIM, (chore,))

    def _write_each(self, rows: list[Pending], chore: int) -> dict[int, str]:
        conn = self._conn
        assert conn is not None
        with journal.transaction(conn):
            failed = journal.append_each(conn, rows)
            if chore:
                conn.execute(journal.TRIM, (chore,))
        return failed

    def committed_sessions(self, ids: Sequence[str]) -> dict[str, Session]:
        """What the store holds now for these sessions (``sessions`` overlaid with the journal):
        the state a restart would rebuild. A blocking read of a few rows on a connection of its
        own, for the rare repair after a rejected row (the service calls it on the loop)."""
        conn = journal.open_current(self.path, timeout=self.busy_timeout)
        try:
            marks = ", ".join("?" for _ in ids)
            found = conn.execute(
                f"SELECT {', '.join(SESSION_COLUMNS)} FROM current_sessions WHERE id IN ({marks})",
                list(ids),
            ).fetchall()
        finally:
            conn.close()
        return {row[0]: Session.from_row(row) for row in found}

    # -- the fold task ---------------------------------------------------------------------------
    async def _fold_run(self) -> None:
        delay = self.retry_delay
        while True:
            timeout = max(0.0, self._last_fold + self.fold_interval - time.monotonic())
            try:
                await asyncio.wait_for(self._fold_wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self._fold_wakeup.clear()
            statements, self._statements = self._statements, []
            waiters, self._fold_waiters = self._fold_waiters, []
            try:
                await self._fold_all()
            except sqlite3.Error as exc:
                self.stats.fold_failures += 1
                logger.error("event=fold_failed error=%r (retrying)", str(exc))
                error = StoreError(f"fold failed: {exc}")
                for _, future in statements:
                    if not future.done():
                        future.set_exception(error)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                if self._closing:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            delay = self.retry_delay
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            for steps, future in statements:
                try:
                    count = await self._in_folder(self._statements_txn, steps)
                except sqlite3.Error as exc:
                    logger.error("event=statement_failed error=%r", str(exc))
                    if not future.done():
                        future.set_exception(StoreError(f"commit failed: {exc}"))
                else:
                    if not future.done():
                        future.set_result(count)
            if self._closing and not (self._statements or self._fold_waiters):
                return

    async def _fold_all(self) -> None:
        """Fold the journal into ``sessions`` until caught up with what was committed."""
        self._last_fold = time.monotonic()
        while True:
            step = await self._in_folder(self._fold_step)
            if step is None:
                return
            mark, count = step
            stats = self.stats
            stats.folds += 1
            stats.folded_rows += count
            self._mark = mark
            if count < self.fold_chunk:
                return

    def _fold_step(self) -> tuple[int, int] | None:
        assert self._main is not None
        return journal.fold(self._main, self.fold_chunk)

    def _statements_txn(self, steps: list[Step]) -> int:
        """One transaction on the main database, on the fold thread."""
        conn = self._main
        assert conn is not None
        count = 0
        with journal.transaction(conn):
            for sql, params in steps:
                count = conn.executemany(sql, params).rowcount
        return count

    async def checkpoint(self) -> bool:
        """PASSIVE WAL checkpoints of the database and the journal, on the fold thread (at
        background priority, never beside a fold), off the commit path. When the database's
        completes (every frame copied and the file synced), the journal rows folded before the
        previous one completed may go. Returns whether it completed."""
        if self._main is None:
            return False
        mark = self._mark  # committed by the last fold, which ran on the fold thread before
        complete = await self._in_folder(self._checkpoint)
        if complete:
            self._trim_to, self._durable = self._durable, mark
            self._kick()
        return complete

    @property
    def _main_synchronous(self) -> str:
        return "OFF" if self.synchronous.upper() == "OFF" else "NORMAL"

    def _checkpoint(self) -> bool:
        main = self._main
        if main is None:
            return False
        if self._main_synchronous == "OFF":
            busy, frames, copied = main.execute("PRAGMA main.wal_checkpoint(PASSIVE)").fetchone()
        else:
            # the syncs synchronous=NORMAL makes around a checkpoint (the WAL before it, the
            # database file after it), done here with the pages written back in slices
            # (store/writeback.py). Nothing writes the database between them: folds and
            # statements run on this thread too.
            wal = self.path.with_name(self.path.name + "-wal")
            main.execute("PRAGMA synchronous = OFF")
            try:
                writeback.write_back(wal)
                busy, frames, copied = main.execute(
                    "PRAGMA main.wal_checkpoint(PASSIVE)"
                ).fetchone()
                writeback.write_back(self.path)
            finally:
                main.execute(f"PRAGMA synchronous = {self._main_synchronous}")
        conn = sqlite3.connect(journal.journal_path(self.path), isolation_level=None, timeout=0.1)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
        return bool(busy == 0 and frames >= 0 and copied == frames)

    async def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, fold the journal, stop the tasks, close the connections.
        Idempotent.

        After ``timeout`` seconds (a disk that keeps failing) the tasks are cancelled and what is
        still queued is lost; it was never acknowledged, so the NASes retransmit it later. What
        was committed but not folded stays in the journal: the next start-up folds it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.1, deadline - time.monotonic())

        # everything queued is committed first (retried while the disk fails)
        stopped = await self._stop_thread(left())
        if not stopped:
            self._conn = None  # a commit hangs on the disk: its connection stays with it
        if self._fold_task is not None:
            task, self._fold_task = self._fold_task, None
            self._fold_wakeup.set()
            try:
                await asyncio.wait_for(task, left())
            except TimeoutError:
                logger.error("event=fold_abandoned pending_rows=%d", self.stats.pending_rows)
        else:
            task = None
        if self._conn is not None:
            self._conn.close()  # the commit thread has ended
            self._conn = None
        clean = (
            stopped
            and not self._abandoned
            and (task is None or (task.done() and not task.cancelled()))
            and not self.finished
        )
        if self._main is not None:
            conn, self._main = self._main, None

            def finish() -> None:
                try:
                    if clean:
                        self._last_words(conn)
                finally:
                    conn.close()

            # on the fold thread, after any fold still running there
            closing = asyncio.wrap_future(self._folder.submit(finish))
            try:
                await asyncio.wait_for(
                    closing,
                    max(self.busy_timeout, 1.0) + 1.0 + (LAST_WORDS_SECONDS if clean else 0.0),
                )
            except TimeoutError:
                logger.error("event=writer_close_timeout")
        self._folder.shutdown(wait=False)
