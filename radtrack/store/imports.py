"""Writing imported sessions (radtrack/importer.py) into the configured store.

SQLite: only while no other process has the database open. A running daemon keeps the live
state in memory and would neither see rows written beside it nor keep them from being
overwritten, so the import refuses (DatabaseInUse) and says to stop radtrack first; it folds the
journal a stopped daemon left, then reads and writes in one transaction.

PostgreSQL: beside running nodes too. The rows go in through the change feed (store/pg/feed.py,
written by the node "radtrack-import"), so every running node applies them within a second, and
a session a node has written meanwhile keeps the newer state (feed.write_newer).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from radtrack.errors import StoreError
from radtrack.model import KEY_LENGTH, Session, User
from radtrack.store import journal, snapshot
from radtrack.store.recovery import load_users
from radtrack.store.schema import UPSERT_CHUNK, migrate, upsert_sessions

# a stored session as the importer needs it: (id, start_time, online)
Known = tuple[str, float, bool]
# the keys of the sessions to import -> what the store holds of each; then the sessions to write
Decide = Callable[[Mapping[str, list[Known]]], list[Session]]
IMPORT_NODE = "radtrack-import"
# SQLite's unix VFS: every connection to a database in WAL mode holds a read lock on this byte
# of the "-shm" file for as long as it is open (os_unix.c, UNIX_SHM_DMS)
_SHM_DMS = 128


class DatabaseInUse(StoreError):
    """Another process (a running radtrack) has the SQLite database open."""


def _open_elsewhere(path: Path) -> int | None:
    """The pid of a process holding a connection to the WAL database ``path``, or None."""
    shm = path.with_name(path.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no connection in WAL mode has it open
    try:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (Linux, native alignment)
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS, 1, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


def sqlite_users(db: Path) -> list[User]:
    """The users table of ``db`` (none yet if the database is new)."""
    if not db.exists():
        return []
    try:
        return load_users(db)
    except sqlite3.OperationalError:
        return []  # no users table: a database never migrated


def _rows(sessions: Sequence[Session]) -> list[tuple[object, ...]]:
    return [s.row() for s in sessions]


def import_sqlite(db: Path, keys: Sequence[str], decide: Decide) -> list[Session]:
    """Look the keys up, ``decide``, write its sessions: one transaction. Raises DatabaseInUse,
    or sqlite3.Error / OSError."""
    for path in (db, journal.journal_path(db)):
        pid = _open_elsewhere(path)
        if pid is not None:
            raise DatabaseInUse(
                f"{path} is open in process {pid} (a running radtrack?): stop it first"
            )
    db.parent.mkdir(parents=True, exist_ok=True)
    snapshot.discard(db)  # no longer the store's (its seal breaks too)
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        migrate(conn)
    finally:
        conn.close()
    journal.settle(db)  # what a stopped daemon left in the journal, into sessions
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        with journal.transaction(conn):
            stored: dict[str, list[Known]] = {}
            for key in keys:
                found = conn.execute(
                    "SELECT id, start_time, stop_time IS NULL FROM sessions "
                    "WHERE id >= ? AND id < ?",
                    (key, key + "/"),  # the key and its incarnations, "<key>.<hash>"
                ).fetchall()
                if found:
                    stored[key] = [(i, float(s), bool(o)) for i, s, o in found]
            sessions = decide(stored)
            rows = _rows(sessions)
            for at in range(0, len(rows), UPSERT_CHUNK):
                chunk = rows[at : at + UPSERT_CHUNK]
                conn.execute(upsert_sessions(len(chunk)), [v for row in chunk for v in row])
    finally:
        conn.close()
    return sessions


async def postgresql_users(dsn: str, password: str | None) -> list[User]:
    from radtrack.store.pg import schema
    from radtrack.store.pg.store import connect

    conn = await connect(dsn, password, IMPORT_NODE)
    try:
        await schema.migrate(conn)
        records = await conn.fetch("SELECT user_id, username, reseller_id, max_sessions FROM users")
    finally:
        await conn.close()
    return [User(*record) for record in records]


async def import_postgresql(
    dsn: str, password: str | None, keys: Sequence[str], decide: Decide
) -> tuple[list[Session], int]:
    """As import_sqlite, through the change feed; (sessions written, sessions a running node
    wrote a newer state of meanwhile, left as they are)."""
    from radtrack.store.pg import feed, schema
    from radtrack.store.pg.store import connect

    conn = await connect(dsn, password, IMPORT_NODE)
    try:
        await schema.migrate(conn)
        async with conn.transaction():
            stored: dict[str, list[Known]] = {}
            for record in await conn.fetch(
                "SELECT id, start_time, stop_time IS NULL AS online FROM sessions "
                f"WHERE left(id, {KEY_LENGTH}) = ANY($1::text[])",  # one scan for all keys
                list(keys),
            ):
                known = (record["id"], float(record["start_time"]), bool(record["online"]))
                stored.setdefault(record["id"][:KEY_LENGTH], []).append(known)
            sessions = decide(stored)
            rows = [(*row[:-1], bool(row[-1])) for row in _rows(sessions)]
            refused = set(await feed.write_newer(conn, IMPORT_NODE, rows)) if rows else set()
    finally:
        await conn.close()
    return [s for s in sessions if s.id not in refused], len(refused)
