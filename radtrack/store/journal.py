"""The acknowledgement journal: what a commit must make durable before the replies go out.

A group commit appends the changed sessions' snapshots to ``log``, a rowid table in a SQLite
file of its own (``<store.path>.journal``): new rows land on the last pages of one B-tree, so a
commit writes a few sequential pages instead of one random page (plus index entries) per session.
A second thread folds the journal into ``sessions`` in large batches ("materialization"): the
newest snapshot of each session wins, sorted by id, so the page writes of many packets coalesce.

Every snapshot is whole (all of SESSION_COLUMNS); ``full`` says whether any indexed column may
have changed, which picks the cheaper UPDATE for counter-only batches. ``journal_mark`` (in the
main database, updated in the same transaction as the fold) is the last journal seq that
``sessions`` holds, so a crash between the fold and the journal's trim repeats nothing wrongly:
rows at or below the mark are ignored, and folding a row twice writes the same values anyway.

The current state of the store is therefore ``sessions`` overlaid with the newest journal row of
each session above the mark; ``open_current`` gives readers exactly that view, and start-up
folds everything before it loads the live state.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from radtrack.model import SESSION_COLUMNS
from radtrack.store.schema import COUNTER_COLUMNS

_COLUMNS = ", ".join(SESSION_COLUMNS)

JOURNAL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    f"full INTEGER NOT NULL, {_COLUMNS})"
)

# Rows per journal INSERT statement: sizes are powers of two so a handful of prepared statements
# serve every batch (27 values x 1024 rows < SQLite's 32,766 variables)
APPEND_CHUNK = 1024
_APPEND_ROW = f"({', '.join('?' for _ in range(len(SESSION_COLUMNS) + 1))})"
_APPEND_SQL = {
    n: f"INSERT INTO log (full, {_COLUMNS}) VALUES {', '.join([_APPEND_ROW] * n)}"
    for n in (1 << i for i in range(11))
}

# Journal rows the writer deletes per commit once they are folded, so trimming never holds an
# acknowledgement back for long
TRIM_CHUNK = 8192
TRIM = "DELETE FROM log WHERE seq <= ?"


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; on any error a ROLLBACK, then the error goes on."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to roll back
        raise


def journal_path(db: Path) -> Path:
    return db.with_name(db.name + ".journal")


def append_statements(count: int) -> list[tuple[str, int]]:
    """(statement, rows) pairs that append ``count`` rows: full chunks, then powers of two."""
    out = []
    while count >= APPEND_CHUNK:
        out.append((_APPEND_SQL[APPEND_CHUNK], APPEND_CHUNK))
        count -= APPEND_CHUNK
    size = APPEND_CHUNK
    while count:
        size >>= 1
        if count >= size:
            out.append((_APPEND_SQL[size], size))
            count -= size
    return out


def open_journal(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """The journal's connection (the writer thread's), created with its table if new."""
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(JOURNAL_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def attach(conn: sqlite3.Connection, db: Path) -> None:
    """Attach the journal of ``db`` to a connection of the main database, read-only."""
    uri = journal_path(db).resolve().as_uri() + "?mode=ro"
    conn.execute("ATTACH DATABASE ? AS journal", (uri,))


def _latest(full: bool) -> str:
    """The newest journal row of each session in (?, ?] whose batch has (or has no) whole write."""
    return (
        f"SELECT {_COLUMNS} FROM journal.log WHERE seq IN (SELECT max(seq) FROM journal.log "
        f"WHERE seq > ? AND seq <= ? GROUP BY id HAVING max(full) = {int(full)})"
    )


_FOLD_WHOLE = (
    f"INSERT INTO sessions ({_COLUMNS}) SELECT * FROM ({_latest(True)}) ORDER BY id "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:])
)
_FOLD_COUNTERS = (
    f"WITH v AS ({_latest(False)}) UPDATE sessions SET "
    + ", ".join(f"{c} = v.{c}" for c in COUNTER_COLUMNS)
    + " FROM v WHERE sessions.id = v.id"
)


def mark(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT seq FROM journal_mark").fetchone()
    return int(seq)


def fold(conn: sqlite3.Connection, limit: int) -> tuple[int, int] | None:
    """Fold up to ``limit`` journal rows above the mark into ``sessions`` in one transaction on
    ``conn`` (the main database with the journal attached). Returns (new mark, rows folded), or
    None when there was nothing to fold. Raises sqlite3.Error after rolling back."""
    with transaction(conn):
        low = mark(conn)
        (high,) = conn.execute("SELECT max(seq) FROM journal.log").fetchone()
        if high is None or high <= low:
            return None
        high = min(high, low + limit)
        conn.execute(_FOLD_WHOLE, (low, high))
        conn.execute(_FOLD_COUNTERS, (low, high))
        conn.execute("UPDATE journal_mark SET seq = ?", (high,))
    return high, high - low


def settle(db: Path, busy_timeout: float = 5.0, batch: int = 200_000) -> int:
    """Fold the whole journal into ``sessions`` and empty it (start-up, or a tool); returns the
    journal rows folded. Blocking. Safe beside a running daemon: every step is a transaction that
    keeps the mark and the journal consistent."""
    folded = 0
    jconn = open_journal(journal_path(db), busy_timeout)
    try:
        conn = sqlite3.connect(db, isolation_level=None, timeout=busy_timeout)
        try:
            attach(conn, db)
            while (step := fold(conn, batch)) is not None:
                folded += step[1]
            done = mark(conn)
        finally:
            conn.close()
        # the next seq must stay above the mark even if the journal file was lost
        jconn.execute("BEGIN IMMEDIATE")
        jconn.execute(TRIM, (done,))
        jconn.execute(
            "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('log', max(?, "
            "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)))",
            (done,),
        )
        jconn.execute("COMMIT")
        jconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        jconn.close()
    return folded


def open_current(db: Path, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only connection whose temporary view ``current_sessions`` is what the store holds
    now: ``sessions`` overlaid with the newest journal snapshot of each session not yet folded.
    For tools and tests that read the database while the daemon runs or after a crash."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    try:
        if not journal_path(db).exists():  # never written by a radtrack with a journal
            conn.execute(f"CREATE TEMP VIEW current_sessions AS SELECT {_COLUMNS} FROM sessions")
            return conn
        attach(conn, db)
        pending = (
            "SELECT max(seq) FROM journal.log WHERE seq > (SELECT seq FROM main.journal_mark) "
            "GROUP BY id"
        )
        conn.execute(
            f"CREATE TEMP VIEW current_sessions AS "
            f"SELECT {_COLUMNS} FROM journal.log WHERE seq IN ({pending}) "
            f"UNION ALL SELECT {_COLUMNS} FROM main.sessions WHERE id NOT IN "
            "(SELECT id FROM journal.log WHERE seq > (SELECT seq FROM main.journal_mark))"
        )
    except BaseException:
        conn.close()
        raise
    return conn
