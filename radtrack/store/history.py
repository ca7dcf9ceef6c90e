"""Session history from SQLite: a read-only connection of its own (WAL readers never block the
writer), newest first, paginated with an opaque cursor; and retention pruning."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import aiosqlite

from radtrack.model import SESSION_COLUMNS, Session

_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"

# Deletes at most this many rows per transaction, so pruning never holds the writer for long
PRUNE_CHUNK = 5_000
PRUNE = (
    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
    f"WHERE stop_time IS NOT NULL AND stop_time < ? LIMIT {PRUNE_CHUNK})"
)


class BadCursor(ValueError):
    """The cursor was not made by this server."""


def encode_cursor(session: Session) -> str:
    return base64.urlsafe_b64encode(f"{session.start_time!r}|{session.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        start, _, sid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return float(start), sid
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("the cursor is not valid") from None


class HistoryReader:
    """Reads closed and open sessions of a user, for the sessionHistory query."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def page(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None = None,
    ) -> tuple[list[Session], str | None]:
        """Sessions of ``user_id`` that overlap [since, until), newest start first; at most
        ``limit``, and the cursor of the next page (None on the last)."""
        assert self._conn is not None, "HistoryReader.open() first"
        where = ["user_id = ?"]
        params: list[object] = [user_id]
        if until is not None:
            where.append("start_time < ?")
            params.append(until)
        if since is not None:
            where.append("(stop_time IS NULL OR stop_time >= ?)")
            params.append(since)
        if cursor is not None:
            start, sid = decode_cursor(cursor)
            where.append("(start_time < ? OR (start_time = ? AND id < ?))")
            params.extend((start, start, sid))
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY start_time DESC, id DESC LIMIT ?"
        params.append(limit + 1)
        async with self._conn.execute(sql, params) as rows:
            sessions = [Session.from_row(tuple(row)) async for row in rows]
        more = len(sessions) > limit
        sessions = sessions[:limit]
        return sessions, encode_cursor(sessions[-1]) if more and sessions else None
