"""The command line on a PostgreSQL store: `radtrack migrate` creates the schema, `radtrack
sessions` lists who is online from it, `radtrack users import` writes users a node loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pyrad.dictionary import Dictionary

from radtrack.store.pg import schema
from tests.conftest import SECRET, acct_packet, make_settings, send_pyrad, udp_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radtrack", *args], capture_output=True, text=True, check=False
    )


def write_config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "pg.toml"
    path.write_text(
        f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\nnode_name = "cli"\n'
        '[[radius.clients]]\nname = "gw"\naddress = "127.0.0.1"\n'
        f'secret = "{SECRET}"\n'
    )
    return path


@pytest.mark.asyncio
async def test_migrate_then_sessions_and_users_import_on_postgresql(
    pg_dsn: str, tmp_path: Path, daemon_factory: Any, dictionary: Dictionary
) -> None:
    config = write_config(tmp_path, pg_dsn)
    done = run("migrate", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"schema version {schema.SCHEMA_VERSION} (migrated from version 0)" in done.stdout
    again = run("migrate", "--config", str(config))
    assert "(up to date)" in again.stdout

    users = tmp_path / "users.csv"
    users.write_text("user_id,username,reseller_id,max_sessions\n4711,carol@example.net,3,2\n")
    imported = run("users", "import", str(users), "--config", str(config))
    assert imported.returncode == 0, imported.stderr

    store = {"backend": "postgresql", "dsn": pg_dsn, "node_name": "n1"}
    radius = {"clients": [{"name": "gw", "address": "127.0.0.1", "secret": SECRET}]}
    daemon = await daemon_factory(make_settings(tmp_path, store=store, radius=radius))
    assert daemon.device_limit(4711) == 2  # the imported user, loaded from PostgreSQL
    packet = acct_packet(
        dictionary,
        Acct_Status_Type="Start",
        Acct_Session_Id="cli-1",
        User_Name="carol@example.net",
        NAS_IP_Address="192.0.2.1",
        Event_Timestamp=1_700_000_000,
    )
    assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None

    listing = run("sessions", "--config", str(config), "--user", "4711", "--json")
    assert listing.returncode == 0, listing.stderr
    [row] = json.loads(listing.stdout)
    assert row["session_id"] == "cli-1" and row["nas_name"] == "gw"
    assert row["start_time"] == "2023-11-14T22:13:20Z"


def test_a_database_that_cannot_be_reached_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://radtrack@127.0.0.1:1/radtrack")
    done = run("migrate", "--config", str(config))
    assert done.returncode == 1
    assert "cannot use the database postgresql://radtrack@127.0.0.1:1/radtrack" in done.stderr


@pytest.mark.asyncio
async def test_the_schema_is_created_at_start_up(
    pg_dsn: str, tmp_path: Path, daemon_factory: Any
) -> None:
    store = {"backend": "postgresql", "dsn": pg_dsn, "node_name": "n1"}
    await daemon_factory(make_settings(tmp_path, store=store))
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await schema.schema_version(conn) == schema.SCHEMA_VERSION
    finally:
        await conn.close()
