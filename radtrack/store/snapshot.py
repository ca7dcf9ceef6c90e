"""The snapshot: the live state written at a clean stop, so the next start reads one file
instead of a million rows (issue #15, target 4b). The table stays the truth: the snapshot is
used only when it is exactly what the table would give, and anything else reads the table.

Written at a clean stop (store/sqlite.py), after the last commit is folded: the online sessions
memory holds (equal to the table's, DESIGN.md invariant 3), then the closed ones and the users
as the table gives them (read in the same transaction as the seal). The file is
``<store.path>.snapshot``: a header (marshal of a dict: the stamp, counts, a CRC-32 of the
payload), then the payload, marshal of column lists. marshal keeps an object that repeats as
one object (a reference), so the values sessions share (ports, callers, start times: interned
here as recovery.py interns them) come back shared, with no lookups.

Valid only for the exact store it was written from (``Stamp``):

- **the seal**: a random token, written in the stop's last transaction into
  ``radtrack_snapshot``, with triggers that delete it on any INSERT, UPDATE or DELETE of
  ``sessions`` or ``users``, whoever writes (a radtrack CLI tool, an sqlite3 shell, the journal
  folded at start after a crash): the file's token must be the table's;
- the database file's size, mtime and inode, as they were after the stop's last checkpoint
  (a file copied or restored over it), before this start opened it;
- the schema version, the format version and the closed-session limit (sessions.closed_cache)
  it was written for.

Start-up removes the seal (in a durable transaction, before any write of its own) and the file,
whether it used them or not: a later crash never starts from a stale snapshot.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import marshal
import os
import secrets
import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radtrack import gcpolicy
from radtrack.model import Session, User
from radtrack.store import columnar, journal, recovery

logger = logging.getLogger(__name__)

MAGIC = b"RTSNAP\r\n"  # the \r\n: a file mangled by a text-mode copy fails here
FORMAT = 1  # bump on any change of the payload's layout
_LENGTH = 4  # bytes of the header's length, after MAGIC

_TABLES = ("sessions", "users")
_TRIGGERS = [(t, op) for t in _TABLES for op in ("INSERT", "UPDATE", "DELETE")]


class SnapshotInvalid(Exception):
    """The snapshot cannot be used: why, for the log (the table is read instead)."""


def path_of(db: Path) -> Path:
    return db.with_name(db.name + ".snapshot")


def discard(db: Path) -> None:
    """Remove the snapshot of ``db``, if any (radtrack's own writers, when they open it)."""
    try:
        path_of(db).unlink()
    except FileNotFoundError:
        pass


def file_stamp(db: Path) -> tuple[int, int, int] | None:
    """What identifies the database file's content without reading it: size, mtime, inode."""
    try:
        st = db.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class Stamp:
    token: str | None  # the seal's (None: not sealed)
    schema_version: int
    closed_limit: int
    db_file: tuple[int, int, int] | None

    def mismatch(self, other: Stamp) -> str | None:
        """Why a snapshot stamped ``self`` is not the store stamped ``other`` (None: it is)."""
        for name in ("token", "schema_version", "closed_limit", "db_file"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} differs"
        return None


# -- the seal in the database --------------------------------------------------------------
def seal(conn: sqlite3.Connection, token: str) -> None:
    """Inside the caller's transaction: the token, and the triggers that delete it."""
    conn.execute("CREATE TABLE IF NOT EXISTS radtrack_snapshot (token TEXT NOT NULL)")
    conn.execute("DELETE FROM radtrack_snapshot")
    conn.execute("INSERT INTO radtrack_snapshot (token) VALUES (?)", (token,))
    for table, op in _TRIGGERS:
        conn.execute(
            f"CREATE TRIGGER IF NOT EXISTS radtrack_snapshot_{table}_{op.lower()} "
            f"AFTER {op} ON {table} BEGIN DELETE FROM radtrack_snapshot; END"
        )


def sealed_token(conn: sqlite3.Connection) -> str | None:
    """The token of the seal, None if there is none (or a write since deleted it)."""
    try:
        row = conn.execute("SELECT token FROM main.radtrack_snapshot").fetchone()
    except sqlite3.OperationalError:  # no such table: never sealed, or unsealed
        return None
    return None if row is None else str(row[0])


def unseal(conn: sqlite3.Connection) -> None:
    """Inside the caller's transaction: no token, no triggers (they cost every fold)."""
    for table, op in _TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS radtrack_snapshot_{table}_{op.lower()}")
    conn.execute("DROP TABLE IF EXISTS radtrack_snapshot")


@dataclass(frozen=True, slots=True)
class Sealed:
    """What the stop's last transaction read and sealed: the rest of the snapshot."""

    token: str
    schema_version: int
    closed: list[Session]
    users: list[User]


def take_seal(conn: sqlite3.Connection, unchanged_since: int, closed_limit: int) -> Sealed | str:
    """The stop's last transaction, on the writer's connection to the main database (the
    journal attached), which closes next: unless another connection wrote the database since
    ``unchanged_since`` (its ``data_version`` then) or the journal holds rows not folded, read
    the closed sessions and the users, and seal them. Durable when it returns; else why not."""
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if data_version(conn) != unchanged_since:
            return "the database was written by another connection while the daemon ran"
        (mark,) = conn.execute("SELECT seq FROM main.journal_mark").fetchone()
        (last,) = conn.execute("SELECT max(seq) FROM journal.log").fetchone()
        if last is not None and last > mark:
            return "the journal holds rows not folded"
        closed = recovery.load_closed(conn, closed_limit)
        users = recovery.users_of(conn)
        (schema_version,) = conn.execute("PRAGMA main.user_version").fetchone()
        token = secrets.token_hex(16)
        seal(conn, token)
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:  # an error, or one of the returns above: nothing written
            conn.execute("ROLLBACK")
    return Sealed(token, int(schema_version), closed, users)


def break_seal(conn: sqlite3.Connection, synchronous: str) -> tuple[str | None, int, int]:
    """Start-up, before any write: the seal's token (None: none) and the schema version, then
    no seal (durably), and the ``data_version`` the database is at after that. ``synchronous``:
    the connection's setting, put back after."""
    conn.execute("PRAGMA synchronous = FULL")
    try:
        with journal.transaction(conn):
            token = sealed_token(conn)
            (schema_version,) = conn.execute("PRAGMA main.user_version").fetchone()
            unseal(conn)
    finally:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return token, int(schema_version), data_version(conn)


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits to (or checkpoints) the main database."""
    (version,) = conn.execute("PRAGMA main.data_version").fetchone()
    return int(version)


# -- the file ---------------------------------------------------------------------------------
def write(db: Path, stamp: Stamp, sessions: Sequence[Session], users: Sequence[User]) -> int:
    """Encode and write the snapshot durably (a temporary name, fsync, rename, fsync of the
    directory); returns its size. Raises SnapshotInvalid (a value the table would not give
    back as it is) or OSError."""
    try:
        with gcpolicy.paused(long_lived=False):  # millions of short-lived tuples, no cycle
            payload = columnar.encode(sessions, users)
    except columnar.Unencodable as exc:
        raise SnapshotInvalid(str(exc)) from None
    header = marshal.dumps(
        {
            "format": FORMAT,
            "token": stamp.token,
            "schema_version": stamp.schema_version,
            "closed_limit": stamp.closed_limit,
            "db_file": stamp.db_file,
            "sessions": len(sessions),
            "users": len(users),
            "payload_bytes": len(payload),
            "crc32": zlib.crc32(payload),
        }
    )
    path = path_of(db)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as out:
            out.write(MAGIC + len(header).to_bytes(_LENGTH, "little") + header)
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):  # a full disk: leave no part of it behind
            temporary.unlink()
        raise
    _sync_directory(path.parent)
    return len(MAGIC) + _LENGTH + len(header) + len(payload)


def _sync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(db: Path, expected: Stamp) -> tuple[list[Session], list[User]] | None:
    """Start-up, after ``break_seal``: the snapshot's sessions and users if it is valid for
    ``expected``, else None (a warning says why, when there was a file). The file is removed
    either way. Blocking."""
    path = path_of(db)
    if not path.exists():
        return None
    try:
        if expected.token is None:
            raise SnapshotInvalid("the database is not sealed: written since, or a stop cut short")
        try:
            with gcpolicy.paused(long_lived=True):  # a million new sessions, as recovery's
                return read(db, expected)
        finally:
            release_freed_memory()
    except (SnapshotInvalid, OSError) as exc:
        logger.warning(
            "event=snapshot_ignored path=%s reason=%r (reading the table)", path, str(exc)
        )
        return None
    finally:
        discard(db)
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        _sync_directory(path.parent)


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim). Decoding leaves
    ~130 MB of column lists freed a million sessions in, below the sessions that live on: glibc
    keeps such pages, ~90 bytes a session of RSS that a table start does not hold."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do, or nothing that can
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def read(db: Path, expected: Stamp) -> tuple[list[Session], list[User]]:
    """The sessions (in the order recovery.load_sessions gives them) and users of the snapshot
    of ``db``, if it was written for ``expected``; raises SnapshotInvalid (FileNotFoundError
    when there is none). Blocking."""
    data = path_of(db).read_bytes()
    if data[: len(MAGIC)] != MAGIC:
        raise SnapshotInvalid("not a radtrack snapshot")
    start = len(MAGIC) + _LENGTH
    end = start + int.from_bytes(data[len(MAGIC) : start], "little")
    try:
        header = marshal.loads(data[start:end])
        if header["format"] != FORMAT:
            raise SnapshotInvalid(f"format {header['format']}, not {FORMAT}")
        found = Stamp(
            header["token"],
            header["schema_version"],
            header["closed_limit"],
            None if header["db_file"] is None else tuple(header["db_file"]),
        )
        length, crc = header["payload_bytes"], header["crc32"]
    except (EOFError, ValueError, TypeError, KeyError) as exc:
        raise SnapshotInvalid(f"unreadable header: {exc}") from None
    why = found.mismatch(expected)
    if why is not None:
        raise SnapshotInvalid(f"not this store's: {why}")
    payload = memoryview(data)[end:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise SnapshotInvalid(f"payload damaged ({len(payload)} bytes, {length} written)")
    try:
        sessions, users = columnar.decode(payload)
    except (EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise SnapshotInvalid(f"unreadable payload: {exc}") from None
    if len(sessions) != header["sessions"] or len(users) != header["users"]:
        raise SnapshotInvalid("counts differ from the header's")
    return sessions, users
