"""Group commit: one thread commits whatever the event loop queued since the last commit.

Callers ``submit`` session snapshots, a completion callback and a reply; the commit thread takes
everything queued (under a lock) into one transaction, commits, sends the replies itself
(``ReplySender.send_many``, one call per sender) and only then hands the callbacks back to the
event loop, which runs them in submit order (DESIGN.md invariant 1: no ack before the write is
durable). When a commit fails (disk full, database down) the callbacks get ``False`` (no reply
goes out, the NAS retransmits), the rows stay queued, and the thread retries with backoff until
the database recovers, so memory and the store converge again (invariant 3).

``GroupCommit`` is the machinery both backends share; a backend supplies the transaction
(``_write_rows``, ``_write_each``) and what counts as one row's fault (``row_errors``) rather
than the database's (``commit_errors``).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import ctypes
import logging
import threading
import time
from collections.abc import Sequence

from radtrack.errors import StoreError
from radtrack.model import SessionChange
from radtrack.store import journal
from radtrack.store.base import COMMIT_BUCKETS, Ack, Done, Outcome, Partial, StoreStats

logger = logging.getLogger(__name__)

# a whole row of a session (True) or its counters row (False): store/journal.py
Pending = tuple[journal.Row, bool]


def os_thread_name(name: str) -> None:
    """Name the calling thread for top -H, ps -L and /proc (Linux; best effort)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def send_replies(acks: list[Ack]) -> None:
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


# A commit of fewer rows than this makes the commit thread wait commit_delay before the next one
# (as PostgreSQL's commit_delay): under a steady moderate load (5,000 packets/s) commits back to
# back hold 2-4 packets each, an fsync and a round of replies and callbacks apiece; 1 ms of
# gathering makes them ~10 packets, and halves the writer's CPU (docs/performance.md). Under a
# heavier load commits are larger and never wait; after an idle spell the first packet is
# committed at once (the wait comes after a small commit, not before one).
SMALL_COMMIT = 64


class GroupCommit:
    """The commit thread, its queue and the callbacks; subclasses write the rows."""

    # errors that one row's values cause (the batch is then stored row by row), and errors
    # that fail a commit as a whole (the database): set by each backend
    row_errors: tuple[type[Exception], ...] = ()
    commit_errors: tuple[type[Exception], ...] = ()
    # whether an Interim-Update is queued as a counters row (SQLite's journal) or whole
    counter_rows = True
    thread_name = "radtrack-writer"

    def __init__(
        self,
        *,
        max_batch: int = 10_000,
        commit_delay: float = 0.0,
        retry_delay: float = 0.2,
        max_retry_delay: float = 2.0,
    ) -> None:
        self.max_batch = max_batch
        self.commit_delay = commit_delay
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.stats = StoreStats()
        self.healthy = True
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
        # commits the commit thread finished, for the event loop: (callbacks, ok, chore).
        # Filled before the replies go out, so a NAS's next packet never overtakes its
        # callbacks (run_finished() runs them; the service calls it before each datagram)
        self.finished: collections.deque[tuple[list[Done], Outcome, int]] = collections.deque()
        self._closing = False
        self._abandoned = False  # close() gave up on a failing database: the thread ends

    # -- hooks of a backend ------------------------------------------------------------------
    def _write_rows(self, rows: list[Pending], chore: int) -> None:
        """One transaction, on the commit thread: store the rows (and do the chore). Raises
        one of ``row_errors`` or ``commit_errors`` after rolling back."""
        raise NotImplementedError

    def _write_each(self, rows: list[Pending], chore: int) -> dict[int, str]:
        """The commit again, row by row: every row that can be stored is; returns the
        positions of the rows that cannot be, with why (never the values)."""
        raise NotImplementedError

    def _chore(self) -> int:
        """Work the next commit should do besides the rows (SQLite: trim the journal up to
        this seq); 0 for none. Called on the commit thread, under the lock."""
        return 0

    def _committed(self, ok: Outcome, chore: int) -> None:
        """On the event loop, after a commit's callbacks ran."""

    # -- the thread ----------------------------------------------------------------------------
    def _start_thread(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._commit_loop, name=self.thread_name, daemon=True
        )
        self._thread.start()

    async def _stop_thread(self, timeout: float | None) -> bool:
        """Commit what is queued (retried while the database fails, up to ``timeout``), then
        end the thread. Returns False if the thread is stuck in a commit."""
        self._closing = True
        if self._thread is None:
            return True
        thread, self._thread = self._thread, None
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.1, deadline - time.monotonic())

        try:
            await asyncio.wait_for(self.flush(), left())
        except TimeoutError:
            logger.error("event=writer_abandoned queued_rows=%d", len(self._rows))
            self._abandoned = True
        with self._lock:
            self._work.notify()
        await asyncio.to_thread(thread.join, left())
        if thread.is_alive():  # a commit hangs on the database: leave it, a daemon thread
            logger.error("event=writer_thread_stuck")
            return False
        return True

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
        counter_rows = self.counter_rows
        with self._lock:
            pending = self._rows
            for change in changes:
                session = change.session
                key = session.id
                if change.counters_only and counter_rows:
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

    def stuck(self, limit: float) -> bool:
        """A commit has been running for longer than ``limit`` seconds (a hung database)."""
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
        """Wake the commit thread (it has a chore to do)."""
        with self._lock:
            if self._sleeping:
                self._work.notify()

    # -- the commit thread ------------------------------------------------------------------------
    def _take(self) -> tuple[dict[object, Pending], list[Done], list[Ack], int] | None:
        """Under the lock: wait for work, then take it (None: the thread ends)."""
        while True:
            if self._abandoned:
                return None
            chore = self._chore()
            if self._rows or self._callbacks or chore:
                break
            if self._closing:
                return None
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
        return rows, callbacks, acks, chore

    def _commit_loop(self) -> None:
        """The commit thread: group commits while there is work (after a small one, it
        gathers for commit_delay first)."""
        os_thread_name(self.thread_name)
        delay = self.retry_delay
        small = False
        while True:
            if small and not self._closing:
                # the last commit was small: gather for commit_delay before the next one
                time.sleep(self.commit_delay)
            with self._lock:
                work = self._take()
            if work is None:
                return
            rows, callbacks, acks, chore = work
            small = len(rows) < SMALL_COMMIT and self.commit_delay > 0
            try:
                ok = self._commit(rows, chore)
            except Exception:  # a bug, not the database: keep the thread (and daemon) alive
                logger.exception("event=writer_crashed")
                ok = False
            if ok is not True and ok is not False:
                acks = []  # a Partial: the callbacks answer the packets that were stored
            if ok is False:
                self._requeue(rows)
            self._committing = 0
            self._hand_back(callbacks, ok, chore)
            if ok and acks:
                send_replies(acks)
            if ok:
                delay = self.retry_delay
            else:
                time.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    def _requeue(self, rows: dict[object, Pending]) -> None:
        """Keep a failed commit's rows (a newer snapshot queued meanwhile wins)."""
        with self._lock:
            for key, pending in rows.items():
                newer = self._rows.get(key)
                if newer is None:
                    self._rows[key] = pending
                elif pending[1] and not newer[1]:
                    # the newer counters on top of the whole row that failed
                    self._rows[key] = (journal.merge(pending[0], newer[0]), True)

    def _hand_back(self, callbacks: list[Done], ok: Outcome, chore: int) -> None:
        loop = self._loop
        assert loop is not None
        self.finished.append((callbacks, ok, chore))
        try:
            loop.call_soon_threadsafe(self.run_finished)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def run_finished(self) -> None:
        """On the event loop: the callbacks of every commit the commit thread has finished."""
        finished = self.finished
        while finished:
            callbacks, ok, chore = finished.popleft()
            self.healthy = ok is not False
            for done in callbacks:
                done(ok)
            self._committed(ok, chore)

    def _commit(self, rows: dict[object, Pending], chore: int) -> Outcome:
        started = time.monotonic()
        stats = self.stats
        stats.commit_started = started
        outcome: Outcome = True
        try:
            try:
                self._write_rows(list(rows.values()), chore)
            except self.row_errors:
                # a value of some row, not the database: store the others and reject that
                # one, so that one packet never stops the writer for every NAS
                outcome = self._rejected(list(rows), self._write_each(list(rows.values()), chore))
        except self.commit_errors as exc:
            stats.failures += 1
            logger.error(
                "event=commit_failed rows=%d error=%r (no replies sent; retrying)",
                len(rows),
                str(exc),
            )
            stats.commit_started = None
            return False
        elapsed = time.monotonic() - started
        stats.commit_started = None
        stats.commits += 1
        stats.rows += len(rows)
        stats.last_batch = len(rows)
        stats.commit_seconds_sum += elapsed
        stats.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, elapsed)] += 1
        return outcome

    def _rejected(self, keys: list[object], failed: dict[int, str]) -> Outcome:
        if not failed:
            return True  # it did not fail again: the error was not a row's after all
        rejected = {keys[at]: why for at, why in failed.items()}
        self.stats.rejected_rows += len(rejected)
        for key, why in rejected.items():
            logger.warning("event=row_rejected session=%s error=%r", key, why)
        return Partial(rejected)
