"""What the service and the daemon need from a store, whichever database is behind it.

Two backends implement ``Store``: SQLite (store/sqlite.py, one node, the default) and
PostgreSQL (store/pg/store.py, any number of nodes sharing one database). Both commit in groups
with the machinery of store/groupcommit.py, so the promise is the same (DESIGN.md invariant 1):
a submission's callback runs, and its reply leaves, only after the commit that holds its effect.
No SQL crosses this interface: each operation is named for what the caller needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from radtrack.model import Session, SessionChange, User


@dataclass(frozen=True, slots=True)
class Partial:
    """What a commit's callbacks get when it stored every row but some sessions', whose values
    could not be stored (one packet's content, not the disk). ``rejected`` maps those session
    ids to why. The commit thread sent no replies: each callback knows whether its packet
    touched a rejected session, and answers the others itself."""

    rejected: Mapping[object, str]


def why_rejected(error: Exception) -> str:
    """A Partial's reason for one row: the error's type and message (never the row's values),
    as text that can be logged (a message may quote a lone surrogate)."""
    why = f"{type(error).__name__}: {str(error)[:120]}"
    return why.encode("utf-8", "backslashreplace").decode()


# a commit's outcome for each of its callbacks: True (committed, replies sent), False (failed:
# nothing stored, no reply, the rows stay queued and are retried) or a Partial
Outcome = bool | Partial
Done = Callable[[Outcome], None]


class ReplySender(Protocol):
    """Where a commit's replies go out (transport.UdpListener): callable from any thread."""

    def send_many(self, replies: Sequence[tuple[bytes, Any]]) -> None: ...


# a reply the commit thread sends once its commit is durable: (sender, data, address)
Ack = tuple[ReplySender, bytes, Any]
# Upper bounds (seconds) of the commit duration histogram (radtrack_commit_seconds)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# sessions other nodes committed, as the store holds them now (PostgreSQL only)
RemoteApply = Callable[[Sequence[Session]], None]


class StoreStats:
    """Counters a store keeps for metrics and the status line (the fold and feed ones stay 0
    on the backend that has none)."""

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
        "recovered_from_snapshot",
        "rejected_rows",
        "remote_sessions",
        "feed_failures",
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
        self.recovered_from_snapshot = False  # SQLite: start-up read a clean stop's snapshot
        self.rejected_rows = 0  # rows whose values could not be stored (Partial)
        self.remote_sessions = 0  # session states other nodes committed, applied here
        self.feed_failures = 0  # reads of the change feed that failed

    @property
    def pending_rows(self) -> int:
        """Journal rows written but not folded into ``sessions`` yet (SQLite; PostgreSQL
        writes ``sessions`` itself, so its rows count as folded when committed)."""
        return self.rows - self.folded_rows


@dataclass(frozen=True, slots=True)
class LiveState:
    """What start-up rebuilds memory from: every open session, then recently closed ones
    (oldest first), and the users table."""

    sessions: list[Session]
    users: list[User]
    journal_rows: int = 0  # SQLite: journal rows a crash left, folded before loading
    source: str = "table"  # SQLite: "snapshot" when read from the one a clean stop wrote


class Store(Protocol):
    """The store of the live state and the history, as the service and the daemon use it."""

    healthy: bool  # False while commits (or, on PostgreSQL, the feed) fail: /readyz 503
    stats: StoreStats

    # -- the packet path (event loop) ------------------------------------------------------
    @property
    def finished(self) -> Sequence[object]:
        """Commits done on the commit thread whose callbacks have not run yet."""
        ...

    @property
    def queued(self) -> int:
        """Packets in flight: waiting for a commit or inside the one running now."""
        ...

    def submit(
        self,
        changes: Sequence[SessionChange],
        done: Done | None = None,
        ack: Ack | None = None,
    ) -> None:
        """Queue the changed sessions' snapshots, a callback (after their commit, in submit
        order) and a reply the commit thread sends once that commit is durable."""
        ...

    def run_finished(self) -> None:
        """On the event loop: the callbacks of every commit the commit thread has finished."""
        ...

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed."""
        ...

    def stuck(self, limit: float) -> bool:
        """A commit has been running for longer than ``limit`` seconds."""
        ...

    def committed_sessions(self, ids: Sequence[str]) -> dict[str, Session]:
        """What the store holds now for these sessions (blocking; a rare repair)."""
        ...

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the schema, connect, start the commit thread."""
        ...

    async def load_state(self, closed_limit: int) -> LiveState:
        """The live state as the store holds it (start-up)."""
        ...

    def follow_remote(self, apply: RemoteApply) -> None:
        """Hand ``apply`` the sessions other nodes commit, from now on (a no-op for a store
        that only this node writes)."""
        ...

    def keep_at_close(self, online: Callable[[], list[Session]]) -> None:
        """``online`` gives the online sessions memory holds, which are the store's (DESIGN.md
        invariant 3): a store that only this node writes may keep a copy at a clean close, for
        the next start to read instead of the table (SQLite: store/snapshot.py; a no-op on
        PostgreSQL, which other nodes write too)."""
        ...

    async def maintain(self) -> None:
        """Periodic background work (SQLite: WAL checkpoints), every few seconds."""
        ...

    async def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, stop the threads and tasks, close the connections."""
        ...

    def describe(self) -> str:
        """Where the data is, for logs: a path, or a DSN without its password."""
        ...

    # -- operations of the API and the timers -------------------------------------------------
    async def upsert_users(self, users: Sequence[User]) -> None:
        """Write users durably, all or none. A username moves to another user id only when its
        holder is in the same write (with another username, or none); otherwise UsernameTaken,
        and nothing is written. StoreError when the write fails."""
        ...

    async def load_users(self) -> list[User]:
        """The users table as stored now (SIGHUP picks up `radtrack users import`)."""
        ...

    async def history_page(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        """A page of the user's stored sessions, newest first, with every acknowledged packet
        in it, and the next page's cursor."""
        ...

    async def prune_closed(self, before: float) -> int:
        """Delete sessions closed before ``before`` (POSIX seconds); returns how many."""
        ...
