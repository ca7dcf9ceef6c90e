"""Schema migrations by PRAGMA user_version: an older database is brought forward in place,
and a database from a newer radtrack is refused instead of misread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from radtrack.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate


def indexes(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}


def test_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "v1.db", isolation_level=None)
    try:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO sessions (id, nas_key, nas_name, nas_ip, session_id, start_time,"
            " last_update) VALUES ('a', 'n/1', 'n', '192.0.2.1', 's', 1, 1)"
        )
        assert "sessions_open" in indexes(conn)
        assert migrate(conn) == 1
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION == 3
        assert "sessions_open" not in indexes(conn)
        assert conn.execute("SELECT session_id FROM sessions").fetchall() == [("s",)]
        assert migrate(conn) == SCHEMA_VERSION  # idempotent
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    try:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(SchemaTooNew):
            migrate(conn)
    finally:
        conn.close()
