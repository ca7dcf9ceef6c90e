"""The single writer: owns the SQLite write connections and commits in groups.

Callers ``submit`` session snapshots and a completion callback; the writer task takes everything
queued since the last commit into one transaction (group commit) that appends the snapshots to
the journal (store/journal.py), commits, and only then calls the callbacks with ``True``
(DESIGN.md invariant 1: no ack before the write is durable). When a commit fails (disk full,
read-only, locked) the callbacks get ``False`` (no reply goes out, the NAS retransmits), the rows
stay queued, and the writer retries with backoff until the disk recovers, so the memory index and
SQLite converge again (invariant 3).

A second thread, with a connection of its own to the main database, folds the journal into
``sessions`` every ``fold_interval`` seconds or ``fold_rows`` rows, and runs the statements of
``run``/``execute`` (users, pruning). Neither waits on the other: they write different files.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import ctypes
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from radtrack.errors import StoreError
from radtrack.model import SESSION_COLUMNS, Session, SessionChange
from radtrack.store import journal, writeback
from radtrack.store.schema import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Partial:
    """What a commit's callbacks get when it stored every row but some sessions', whose values
    could not be stored (one packet's content, not the disk: journal.ROW_ERRORS). ``rejected``
    maps those session ids to why. The commit thread sent no replies: each callback knows
    whether its packet touched a rejected session, and answers the others itself."""

    rejected: Mapping[object, str]


# a commit's outcome for each of its callbacks: True (committed, replies sent), False (failed:
# nothing stored, no reply, the rows stay queued and are retried) or a Partial
Outcome = bool | Partial
Done = Callable[[Outcome], None]
# what fails a commit as a whole when it is not one row's fault (the disk, or a row error that
# storing row by row hit again)
_COMMIT_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, *journal.ROW_ERRORS)


class ReplySender(Protocol):
    """Where a commit's replies go out (transport.UdpListener): callable from any thread."""

    def send_many(self, replies: Sequence[tuple[bytes, Any]]) -> None: ...


# a reply the commit thread sends once its commit is durable: (sender, data, address)
Ack = tuple[ReplySender, bytes, Any]
# Upper bounds (seconds) of the commit duration histogram (radtrack_commit_seconds)
# The nice value of the fold thread: the scheduler gives it ~1/10 of a contended core
BACKGROUND_NICE = 10
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# a whole row of a session (True) or its counters row (False): store/journal.py
Pending = tuple[journal.Row, bool]
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


def _os_thread_name(name: str) -> None:
    """Name the calling thread for top -H, ps -L and /proc (Linux; best effort)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: a thread's nice value is its own)."""
    _os_thread_name("radtrack-fold")
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError):  # not permitted, or not Linux: run at normal priority
        pass


def _reply(acks: list[Ack]) -> None:
    """Send a commit's replies, each sender's in one call (one system call where it can)."""
    start = 0
    while start < len(acks):
        sender = acks[start][0]
        end = start + 1
        while end < len(acks) and acks[end][0] is sender:
            end += 1
        try:
            sender.send_many([(data, address) for _, data, address in acks[start:end]])
        except Exception:  # a bug in a sender: the others still get their replies
            logger.exception("event=reply_failed")
        start = end


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
        "folds",
        "folded_rows",
        "fold_failures",
        "recovered_journal_rows",
        "rejected_rows",
    )

    def __init__(self) -> None:
        self.commits = 0
        self.rows = 0
        self.failures = 0
        self.last_batch = 0
        self.commit_started: float | None = None  # monotonic time the running commit began
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_seconds_sum = 0.0
        self.folds = 0
        self.folded_rows = 0
        self.fold_failures = 0
        self.recovered_journal_rows = 0  # folded at start-up: written before a crash
        self.rejected_rows = 0  # rows whose values could not be stored (Partial)

    @property
    def pending_rows(self) -> int:
        """Journal rows written but not folded into ``sessions`` yet."""
        return self.rows - self.folded_rows


class Writer:
    """Group commits to the journal on one thread; folds and statements on another."""

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
        fold_interval: float = 10.0,
        fold_rows: int = 150_000,
        fold_chunk: int = 50_000,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self.cache_mb = cache_mb
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        # the longer the interval, the more packets of one session (and rows of one page) a
        # fold merges into one write: at 5,000 packets/s over 100,000 sessions, 10 s instead of
        # 5 s halves the fold's CPU a packet; a sessionHistory query waits for one fold
        self.fold_interval = fold_interval
        self.fold_rows = fold_rows
        # journal rows per fold transaction: one transaction writes each page it touches once
        self.fold_chunk = fold_chunk
        self.stats = WriterStats()
        self.healthy = True
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
        # the commit thread: it takes what the event loop queued (under ``_lock``), commits,
        # sends the replies itself and hands the callbacks back to the loop, then goes again at
        # once; so an acknowledgement never waits for the loop to finish a batch of datagrams
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._rows: dict[object, Pending] = {}
        self._callbacks: list[Done] = []
        self._acks: list[Ack] = []
        self._sleeping = False
        self._committing = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # commits the commit thread finished, for the event loop: (callbacks, ok, trim). Filled
        # before the replies go out, so a NAS's next packet never overtakes its callbacks
        # (run_finished() runs them; the service calls it before handling a datagram)
        self.finished: collections.deque[tuple[list[Done], Outcome, int]] = collections.deque()
        self._statements: list[tuple[list[Step], asyncio.Future[int]]] = []
        self._closing = False
        self._abandoned = False  # close() gave up on a failing disk: the commit thread ends
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
        loop = self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._commit_loop, name="radtrack-writer", daemon=True
        )
        self._thread.start()
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

    # -- submitting ---------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Packets in flight: waiting for a commit or inside the one running now."""
        return len(self._callbacks) + self._committing

    def submit(
        self,
        changes: Sequence[SessionChange],
        done: Done | None = None,
        ack: Ack | None = None,
    ) -> None:
        """Queue snapshots of the changed sessions (the newest snapshot of a session wins), a
        completion callback that runs on the event loop after the commit that holds them (or a
        later one), and a reply the commit thread sends as soon as that commit is durable:
        ``ack = (sender, data, address)``; the commit thread hands each sender the replies of
        a commit in one ``sender.send_many`` call. Callbacks run in the order they were
        submitted (the service keeps its own FIFO of submissions and relies on it), and a
        failed commit calls exactly its own callbacks with ``False``."""
        if self._closing:
            raise StoreError("the writer is closed")
        whole, counters = journal.whole_row, journal.counters_row
        with self._lock:
            pending = self._rows
            for change in changes:
                session = change.session
                key = session.id
                if change.counters_only:
                    queued = pending.get(key)
                    if queued is None or not queued[1]:
                        pending[key] = (counters(session), False)
                        continue
                pending[key] = (whole(session), True)
            if done is not None:
                self._callbacks.append(done)
            if ack is not None:
                self._acks.append(ack)
            if self._sleeping:
                self._work.notify()

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

    def stuck(self, limit: float) -> bool:
        """A commit has been running for longer than ``limit`` seconds (a hung disk)."""
        started = self.stats.commit_started
        return started is not None and time.monotonic() - started > limit

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (a failed commit is retried:
        this waits for the retry that succeeds)."""
        loop = asyncio.get_running_loop()
        while True:
            committed: asyncio.Future[bool] = loop.create_future()

            def done(ok: Outcome, committed: asyncio.Future[bool] = committed) -> None:
                if not committed.done():
                    committed.set_result(ok is not False)

            with self._lock:
                self._callbacks.append(done)
                if self._sleeping:
                    self._work.notify()
            if await committed:
                return

    def _kick(self) -> None:
        """Wake the commit thread (it has trimming to do)."""
        with self._lock:
            if self._sleeping:
                self._work.notify()

    # -- the commit thread ------------------------------------------------------------------------
    def _trim_step(self) -> int:
        """The journal seq this commit may delete up to (0: none)."""
        if self._trimmed >= self._trim_to:
            return 0
        return min(self._trim_to, self._trimmed + journal.TRIM_CHUNK)

    def _commit_loop(self) -> None:
        """The commit thread: group commits back to back while there is work."""
        _os_thread_name("radtrack-commit")
        delay = self.retry_delay
        while True:
            with self._lock:
                while True:
                    if self._abandoned:
                        return
                    trim = self._trim_step()
                    if self._rows or self._callbacks or trim:
                        break
                    if self._closing:
                        return
                    self._sleeping = True
                    self._work.wait()
                    self._sleeping = False
                rows, self._rows = self._rows, {}
                callbacks, self._callbacks = self._callbacks, []
                acks, self._acks = self._acks, []
                if len(rows) > self.max_batch:
                    # commit the oldest max_batch rows now and the rest in the next round; the
                    # callbacks and replies wait for that round, since some of their rows are in it
                    keep = list(rows.items())
                    rows = dict(keep[: self.max_batch])
                    for key, pending in keep[self.max_batch :]:
                        self._rows.setdefault(key, pending)
                    self._callbacks[:0] = callbacks
                    self._acks[:0] = acks
                    callbacks, acks = [], []
                self._committing = len(callbacks)
            try:
                ok = self._commit(rows, trim)
            except Exception:  # a bug, not the disk: keep the thread (and the daemon) alive
                logger.exception("event=writer_crashed")
                ok = False
            if ok is not True and ok is not False:
                acks = []  # a Partial: the callbacks answer the packets that were stored
            if ok is False:
                # keep the rows (a newer snapshot queued meanwhile wins) and retry after a pause
                with self._lock:
                    for key, pending in rows.items():
                        newer = self._rows.get(key)
                        if newer is None:
                            self._rows[key] = pending
                        elif pending[1] and not newer[1]:
                            # the newer counters on top of the whole row that failed
                            self._rows[key] = (journal.merge(pending[0], newer[0]), True)
            self._committing = 0
            self._hand_back(callbacks, ok, trim)
            if ok and acks:
                _reply(acks)
            if ok:
                delay = self.retry_delay
            else:
                time.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    def _hand_back(self, callbacks: list[Done], ok: Outcome, trim: int) -> None:
        loop = self._loop
        assert loop is not None
        self.finished.append((callbacks, ok, trim))
        try:
            loop.call_soon_threadsafe(self.run_finished)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def run_finished(self) -> None:
        """On the event loop: the callbacks of every commit the commit thread has finished."""
        finished = self.finished
        while finished:
            callbacks, ok, trim = finished.popleft()
            self._completed(callbacks, ok, trim)

    def _completed(self, callbacks: list[Done], ok: Outcome, trim: int) -> None:
        """On the event loop, after a commit: run its callbacks."""
        self.healthy = ok is not False
        if ok and trim:
            self._trimmed = trim
        for done in callbacks:
            done(ok)
        if ok and self.stats.pending_rows >= self.fold_rows:
            self._fold_wakeup.set()

    def _commit(self, rows: dict[object, Pending], trim: int) -> Outcome:
        started = time.monotonic()
        self.stats.commit_started = started
        outcome: Outcome = True
        try:
            try:
                self._write(list(rows.values()), trim)
            except journal.ROW_ERRORS:
                # a value of some row, not the disk: store the others and reject that one,
                # so that one packet never stops the writer for every NAS
                outcome = self._write_each(rows, trim)
        except _COMMIT_ERRORS as exc:
            self.stats.failures += 1
            logger.error(
                "event=commit_failed rows=%d error=%r (no replies sent; retrying)",
                len(rows),
                str(exc),
            )
            self.stats.commit_started = None
            return False
        elapsed = time.monotonic() - started
        stats = self.stats
        stats.commit_started = None
        stats.commits += 1
        stats.rows += len(rows)
        stats.last_batch = len(rows)
        stats.commit_seconds_sum += elapsed
        stats.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, elapsed)] += 1
        return outcome

    def _write(self, rows: list[Pending], trim: int) -> None:
        """One transaction on the journal, on the commit thread: append the rows, delete folded
        ones. Raises sqlite3.Error after rolling back."""
        conn = self._conn
        assert conn is not None
        whole = [row for row, full in rows if full]
        counters = [row for row, full in rows if not full]
        with journal.transaction(conn):
            journal.append(conn, whole, True)
            journal.append(conn, counters, False)
            if trim:
                conn.execute(journal.TRIM, (trim,))

    def _write_each(self, rows: dict[object, Pending], trim: int) -> Outcome:
        """The commit again, row by row: every row that can be stored is, in one transaction;
        the sessions whose rows cannot be are rejected (their packets go unanswered)."""
        conn = self._conn
        assert conn is not None
        keys = list(rows)
        with journal.transaction(conn):
            failed = journal.append_each(conn, list(rows.values()))
            if trim:
                conn.execute(journal.TRIM, (trim,))
        if not failed:
            return True  # it did not fail again: the error was not a row's after all
        rejected = {keys[at]: why for at, why in failed.items()}
        self.stats.rejected_rows += len(rejected)
        for key, why in rejected.items():
            logger.warning("event=row_rejected session=%s error=%r", key, why)
        return Partial(rejected)

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
        self._closing = True

        def left() -> float | None:
            return None if deadline is None else max(0.1, deadline - time.monotonic())

        if self._thread is not None:
            thread, self._thread = self._thread, None
            try:
                # everything queued is committed first (retried while the disk fails)
                await asyncio.wait_for(self.flush(), left())
            except TimeoutError:
                logger.error("event=writer_abandoned queued_rows=%d", len(self._rows))
                self._abandoned = True
            with self._lock:
                self._work.notify()
            await asyncio.to_thread(thread.join, left())
            if thread.is_alive():  # a commit hangs on the disk: leave it, it is a daemon thread
                logger.error("event=writer_thread_stuck")
                self._conn = None
        if self._fold_task is not None:
            task, self._fold_task = self._fold_task, None
            self._fold_wakeup.set()
            try:
                await asyncio.wait_for(task, left())
            except TimeoutError:
                logger.error("event=fold_abandoned pending_rows=%d", self.stats.pending_rows)
        if self._conn is not None:
            self._conn.close()  # the commit thread has ended
            self._conn = None
        if self._main is not None:
            conn, self._main = self._main, None
            # on the fold thread, after any fold still running there
            closing = asyncio.wrap_future(self._folder.submit(conn.close))
            try:
                await asyncio.wait_for(closing, max(self.busy_timeout, 1.0) + 1.0)
            except TimeoutError:
                logger.error("event=writer_close_timeout")
        self._folder.shutdown(wait=False)
