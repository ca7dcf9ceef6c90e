"""The SQLite schema, migrated by ``PRAGMA user_version``.

One ``sessions`` row per session (open: stop_time IS NULL; closed: history), keyed by the
opaque session id; a ``users`` table mapping User-Names to API user ids and resellers.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable

from radtrack.model import SESSION_COLUMNS

# Each entry migrates from version i to i + 1; append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id                 TEXT PRIMARY KEY,
        nas_key            TEXT NOT NULL,
        nas_name           TEXT NOT NULL,
        nas_ip             TEXT NOT NULL,
        session_id         TEXT NOT NULL,
        class              TEXT,
        user_name          TEXT,
        user_id            INTEGER,
        nas_port_id        TEXT,
        nas_port_type      TEXT,
        calling_station_id TEXT,
        called_station_id  TEXT,
        framed_ip          TEXT,
        connect_info_start TEXT,
        start_time         REAL NOT NULL,
        last_update        REAL NOT NULL,
        stop_time          REAL,
        terminate_cause    TEXT,
        close_reason       TEXT,
        input_octets       INTEGER NOT NULL DEFAULT 0,
        output_octets      INTEGER NOT NULL DEFAULT 0,
        input_packets      INTEGER NOT NULL DEFAULT 0,
        output_packets     INTEGER NOT NULL DEFAULT 0,
        session_time       INTEGER NOT NULL DEFAULT 0,
        interim_interval   INTEGER,
        start_seen         INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX sessions_open ON sessions (nas_key) WHERE stop_time IS NULL;
    CREATE INDEX sessions_user_history ON sessions (user_id, start_time);
    CREATE INDEX sessions_stop_time ON sessions (stop_time) WHERE stop_time IS NOT NULL;
    CREATE TABLE users (
        user_id      INTEGER PRIMARY KEY,
        username     TEXT UNIQUE,
        reseller_id  INTEGER,
        max_sessions INTEGER
    );
    """,
    # 2: recovery scans the table (faster than this index plus a lookup per row), and nothing
    # else reads it, so every Start and Stop was paying for an index no query used
    """
    DROP INDEX IF EXISTS sessions_open;
    """,
    # 3: commits append to a journal of their own (store/journal.py); this is the last journal
    # row that ``sessions`` holds
    """
    CREATE TABLE journal_mark (seq INTEGER NOT NULL);
    INSERT INTO journal_mark (seq) VALUES (0);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

_ROW = f"({', '.join('?' for _ in SESSION_COLUMNS)})"
_INSERT = f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES "
_SET_ALL = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:]
)

# An Interim-Update changes no indexed column: its journal row holds only these, and the fold
# updates only these, which keeps every index untouched (store/journal.py)
COUNTER_COLUMNS = (
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
)


# Rows per multi-row upsert (tools and tests that write sessions directly): one sqlite3_step for
# the lot (26 columns x 256 rows < SQLite's 32,766 variables)
UPSERT_CHUNK = 256


@functools.lru_cache(maxsize=64)
def upsert_sessions(rows: int) -> str:
    """A multi-row upsert of ``rows`` whole sessions (Start, Stop, any first write)."""
    return f"{_INSERT}{', '.join([_ROW] * rows)} {_SET_ALL}"


# Positions in a Session.row() of the columns an Interim-Update changes (journal.merge)
COUNTER_INDEXES = tuple(SESSION_COLUMNS.index(c) for c in COUNTER_COLUMNS)
# a users write first frees the usernames of its own users (so two of them may swap names),
# never another user's: taking a username from a user outside the write is refused
# (model.taken_username; the UNIQUE constraint too, should two writers race)
FREE_OWN_USERNAME = "UPDATE users SET username = NULL WHERE user_id = ? AND username IS NOT NULL"

UPSERT_USER = (
    "INSERT INTO users (user_id, username, reseller_id, max_sessions) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, "
    "reseller_id = excluded.reseller_id, max_sessions = excluded.max_sessions"
)


def username_owners(conn: sqlite3.Connection, names: Iterable[str]) -> dict[str, int]:
    """The user id holding each of ``names`` that someone holds."""
    wanted = list(names)
    owners: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT username, user_id FROM users WHERE username IN ({marks})"
        owners.update(conn.execute(query, chunk).fetchall())
    return owners


class SchemaTooNew(sqlite3.DatabaseError):
    """The database was written by a newer radtrack."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this radtrack's {SCHEMA_VERSION}"
        )
    for target in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return int(version)
