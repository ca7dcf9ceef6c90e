"""Start-up recovery: the live state rebuilt from SQLite (DESIGN.md invariant 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from radtrack.model import SESSION_COLUMNS, Session, User

_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"


def load_sessions(path: Path, closed_limit: int) -> Iterator[Session]:
    """Every open session, then the ``closed_limit`` most recently closed ones (oldest first),
    which the accounting core keeps so late packets do not reopen them. Blocking."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    share: dict[object, object] = {}
    try:
        conn.execute("BEGIN")  # one snapshot for both queries
        # a sequential scan beats a partial-index walk plus a B-tree lookup per row here
        for row in conn.execute(f"{_SELECT} NOT INDEXED WHERE stop_time IS NULL"):
            yield Session.from_row(row, share)
        if closed_limit:
            recent = conn.execute(
                f"SELECT * FROM ({_SELECT} WHERE stop_time IS NOT NULL "
                "ORDER BY stop_time DESC LIMIT ?) ORDER BY stop_time",
                (closed_limit,),
            )
            for row in recent:
                yield Session.from_row(row, share)
        conn.execute("COMMIT")
    finally:
        conn.close()


def load_users(path: Path) -> list[User]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        rows = conn.execute("SELECT user_id, username, reseller_id, max_sessions FROM users")
        return [User(*row) for row in rows]
    finally:
        conn.close()
