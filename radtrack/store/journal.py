"""The acknowledgement journal: what a commit must make durable before the replies go out.

A group commit appends the changed sessions' snapshots to ``log``, a rowid table in a SQLite
file of its own (``<store.path>.journal``): new rows land on the last pages of one B-tree, so a
commit writes a few sequential pages instead of one random page (plus index entries) per session.
A second thread folds the journal into ``sessions`` in large batches ("materialization"): the
newest snapshot of each session wins, sorted by id, so the page writes of many packets coalesce.

A row is either whole (``full`` = 1: every column of SESSION_COLUMNS, for a Start, a Stop or any
change to an indexed column) or, for an Interim-Update, the id and COUNTER_COLUMNS only
(``full`` = 0, the other columns NULL): half the values to bind and store for 80 % of the
traffic. A session's state is its newest whole row (or its ``sessions`` row) with the counters
of its newest row on top, if that one is a counters row. ``journal_mark`` (in the main
database, updated in the same transaction as the fold) is the last journal seq that ``sessions``
holds, so a crash between the fold and the journal's trim repeats nothing wrongly: rows at or
below the mark are ignored, and folding a row twice writes the same values anyway.

The current state of the store is therefore ``sessions`` overlaid with the journal rows above
the mark; ``open_current`` gives readers exactly that view, and start-up folds everything before
it loads the live state.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from radtrack.model import SESSION_COLUMNS, Session
from radtrack.store.base import why_rejected
from radtrack.store.schema import COUNTER_COLUMNS, COUNTER_INDEXES

_COLUMNS = ", ".join(SESSION_COLUMNS)
_COUNTERS = ", ".join(("id", *COUNTER_COLUMNS))

Row = tuple[object, ...]
# A session's whole row (``start_seen`` a bool, as PostgreSQL's column wants it; SQLite stores
# 1) and its counters row; the event loop takes one per packet. Python code that names each
# slot, not operator.attrgetter: Python 3.11 specializes a slot's load in a function, while
# attrgetter looks each attribute up generically (valgrind: a counters row ~1,600 instructions
# instead of ~3,200, a whole row ~3,100 instead of ~5,800)
whole_row = Session.row


def counters_row(session: Session) -> Row:
    """The id and COUNTER_COLUMNS of a session, in that order."""
    s = session
    return (
        s.id,
        s.last_update,
        s.input_octets,
        s.output_octets,
        s.input_packets,
        s.output_packets,
        s.session_time,
        s.nas_port_id,
        s.nas_port_type,
        s.calling_station_id,
        s.called_station_id,
        s.framed_ip,
        s.interim_interval,
    )


# a column added to or moved in COUNTER_COLUMNS must be added or moved in counters_row too
assert COUNTER_COLUMNS == (
    "last_update",
    "input_octets",
    "output_octets",
    "input_packets",
    "output_packets",
    "session_time",
    "nas_port_id",
    "nas_port_type",
    "calling_station_id",
    "called_station_id",
    "framed_ip",
    "interim_interval",
), "COUNTER_COLUMNS changed"

JOURNAL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    f"full INTEGER NOT NULL, {_COLUMNS})"
)

# Rows per journal INSERT statement: sizes are powers of two so a handful of prepared statements
# serve every batch (26 values x 1024 rows < SQLite's 32,766 variables); ``full`` is a literal
APPEND_CHUNK = 1024


def _appends(full: int, names: str, width: int) -> dict[int, str]:
    row = f"({full}, {', '.join('?' for _ in range(width))})"
    return {
        n: f"INSERT INTO log (full, {names}) VALUES {', '.join([row] * n)}"
        for n in (1 << i for i in range(11))
    }


_APPEND_WHOLE = _appends(1, _COLUMNS, len(SESSION_COLUMNS))
_APPEND_COUNTERS = _appends(0, _COUNTERS, len(COUNTER_COLUMNS) + 1)

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


def append(conn: sqlite3.Connection, rows: Sequence[Row], full: bool) -> None:
    """Append whole rows (``full``) or counters rows, in statements of up to APPEND_CHUNK rows
    whose sizes are powers of two."""
    statements = _APPEND_WHOLE if full else _APPEND_COUNTERS
    flatten = itertools.chain.from_iterable
    start, left, size = 0, len(rows), APPEND_CHUNK
    while left:
        while size > left:
            size >>= 1
        conn.execute(statements[size], list(flatten(rows[start : start + size])))
        start += size
        left -= size


# Errors that one row's values cause, not the disk: a string UTF-8 cannot encode, an integer
# past 64 bits, a value of a type SQLite does not take, a constraint. The writer then stores
# the batch row by row and rejects only the rows that fail (append_each); anything else
# (sqlite3.OperationalError: disk full, I/O error, locked, read-only) fails the whole commit
ROW_ERRORS: tuple[type[Exception], ...] = (
    UnicodeError,
    OverflowError,
    ValueError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)


def append_each(conn: sqlite3.Connection, rows: Sequence[tuple[Row, bool]]) -> dict[int, str]:
    """Inside a transaction: append (row, full) pairs one at a time, each under a savepoint,
    so that a row whose values cannot be stored is rolled back alone. Returns the positions of
    the rows rejected, with why (the error's type and message: never the values). An error that
    is not one of ROW_ERRORS goes on (the caller rolls the transaction back)."""
    rejected: dict[int, str] = {}
    for at, (row, full) in enumerate(rows):
        conn.execute("SAVEPOINT one_row")
        try:
            append(conn, [row], full)
        except ROW_ERRORS as exc:
            conn.execute("ROLLBACK TO one_row")
            rejected[at] = why_rejected(exc)
        conn.execute("RELEASE one_row")
    return rejected


def merge(whole: Row, counters: Row) -> Row:
    """A whole row with the counters of a newer counters row of the same session."""
    merged = list(whole)
    for at, value in zip(COUNTER_INDEXES, counters[1:], strict=True):
        merged[at] = value
    return tuple(merged)


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


# the newest whole row of each session in (?, ?], upserted in id order; then the counters of
# each session whose newest row in (?, ?] is a counters row (newer than any whole row)
_FOLD_WHOLE = (
    f"INSERT INTO sessions ({_COLUMNS}) SELECT {_COLUMNS} FROM journal.log WHERE seq IN "
    "(SELECT max(seq) FROM journal.log WHERE seq > ? AND seq <= ? AND full = 1 GROUP BY id) "
    "ORDER BY id ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:])
)
# (v sorted by id: the updates walk the sessions B-tree in order, ~20 % less CPU than in seq order)
_FOLD_COUNTERS = (
    f"WITH v AS MATERIALIZED (SELECT {_COUNTERS} FROM journal.log WHERE seq IN (SELECT max(seq) "
    "FROM journal.log WHERE seq > ? AND seq <= ? GROUP BY id) AND full = 0 ORDER BY id) "
    "UPDATE sessions SET "
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


# p: each session with journal rows above the mark, its newest row and its newest whole row;
# base: that whole row, else the session's ``sessions`` row; then the counters of the newest
# row on top where that is a counters row; and every session without journal rows as it is
_CURRENT = (
    "CREATE TEMP VIEW current_sessions AS WITH p AS (SELECT id, max(seq) AS last, "
    "max(CASE WHEN full = 1 THEN seq END) AS whole FROM journal.log "
    "WHERE seq > (SELECT seq FROM main.journal_mark) GROUP BY id), "
    f"base AS (SELECT p.last, {', '.join(f'l.{c}' for c in SESSION_COLUMNS)} "
    "FROM p JOIN journal.log AS l ON l.seq = p.whole "
    f"UNION ALL SELECT p.last, {', '.join(f's.{c}' for c in SESSION_COLUMNS)} "
    "FROM p JOIN main.sessions AS s ON s.id = p.id WHERE p.whole IS NULL) "
    "SELECT "
    + ", ".join(
        f"CASE WHEN c.seq IS NULL THEN b.{n} ELSE c.{n} END AS {n}"
        if n in COUNTER_COLUMNS
        else f"b.{n} AS {n}"
        for n in SESSION_COLUMNS
    )
    + " FROM base AS b LEFT JOIN journal.log AS c ON c.seq = b.last AND c.full = 0 "
    f"UNION ALL SELECT {_COLUMNS} FROM main.sessions WHERE id NOT IN (SELECT id FROM p)"
)


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
        conn.execute(_CURRENT)
    except BaseException:
        conn.close()
        raise
    return conn
