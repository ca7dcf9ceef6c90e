"""`radtrack import radacct` (issue #17): the sessions a real FreeRADIUS wrote to its radacct
table (rlm_sql sqlite, the schema and queries Debian ships), imported into radtrack's store;
radtrack started on the result has them online, and the NAS's next Interim-Update finds the
imported session instead of opening another."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from radtrack import cli
from radtrack.daemon import Daemon
from tests.conftest import ADMIN_TOKEN, SECRET, radclient, udp_port
from tests.freeradius import FreeRadius, free_udp_port, sql_module
from tests.httpclient import graphql

NAS_SECRET = "nas-secret-0123456789"
ONLINE = (
    "query ($userId: Int!) { getOnlineSessions(userId: $userId) "
    "{ id sessionId nasIpAddress framedIpAddress callingStationId startTime } }"
)
NOW = int(time.time())


def packet(user: int, session: str, status: str, nas: str = "127.0.0.1", **more: Any) -> str:
    lines = [
        f'User-Name = "{user}"',
        f'Acct-Session-Id = "{session}"',
        f"Acct-Status-Type = {status}",
        f"NAS-IP-Address = {nas}",
        'NAS-Port-Id = "tun0"',
        "NAS-Port-Type = Virtual",
        f'Calling-Station-Id = "02:00:00:00:{user % 100:02d}:01"',
        f"Framed-IP-Address = 100.64.0.{user % 250}",
    ]
    lines += [f"{name.replace('_', '-')} = {value}" for name, value in more.items()]
    return "\n".join(lines) + "\n"


# what a NAS sent FreeRADIUS: user 1001 online (Start, Interim; with a Class), 1002 came and
# went (Start, Stop), 1003 online with its Start lost (Interim only), 1004 on a NAS radtrack's
# config does not know
TRAFFIC = [
    packet(1001, "imp-a", "Start", Class="0x6162", Event_Timestamp=NOW - 600),
    packet(
        1001,
        "imp-a",
        "Interim-Update",
        Class="0x6162",
        Event_Timestamp=NOW - 300,
        Acct_Session_Time=300,
        Acct_Input_Octets=1000,
        Acct_Input_Gigawords=1,
        Acct_Output_Octets=2000,
    ),
    packet(1002, "imp-b", "Start", Event_Timestamp=NOW - 500),
    packet(
        1002,
        "imp-b",
        "Stop",
        Event_Timestamp=NOW - 400,
        Acct_Session_Time=100,
        Acct_Terminate_Cause="User-Request",
    ),
    packet(1003, "imp-c", "Interim-Update", Event_Timestamp=NOW - 200, Acct_Session_Time=60),
    packet(1004, "imp-d", "Start", nas="192.0.2.77", Event_Timestamp=NOW - 100),
]


@pytest.fixture
def radacct(tmp_path: Path) -> Iterator[Path]:
    """A radacct table FreeRADIUS filled from TRAFFIC."""
    database = tmp_path / "radacct.db"
    server = FreeRadius(
        tmp_path / "raddb",
        acct_port=free_udp_port(),
        nas_secret=NAS_SECRET,
        accounting="sql",
        modules=sql_module(tmp_path / "raddb", database),
    )
    server.start()
    try:
        for text in TRAFFIC:
            code, out = asyncio.run(radclient(server.acct_port, text, secret=NAS_SECRET))
            assert code == 0 and "Received Accounting-Response" in out, f"{out}\n{server.log()}"
    finally:
        server.stop()
    yield database


def write_config(tmp_path: Path) -> Path:
    """The config radtrack runs with (tests/conftest.py make_settings: the same client)."""
    path = tmp_path / "radtrack.toml"
    path.write_text(
        '[radius]\nlisten = ["127.0.0.1:0"]\n'
        f'[[radius.clients]]\nname = "nas-local"\naddress = "127.0.0.1"\nsecret = "{SECRET}"\n'
        f'[store]\npath = "{tmp_path / "radtrack.db"}"\n'
    )
    return path


def run_import(capsys: Any, *args: str) -> list[str]:
    assert cli.main(["import", "radacct", *args]) == 0
    return capsys.readouterr().out.splitlines()  # type: ignore[no-any-return]


@pytest.mark.asyncio
async def test_import_what_freeradius_wrote_then_the_nas_goes_on(
    tmp_path: Path, radacct: Path, capsys: Any, daemon_factory: Callable[..., Any]
) -> None:
    with sqlite3.connect(radacct) as conn:
        assert conn.execute(
            "SELECT count(*), sum(acctstoptime IS NULL) FROM radacct"
        ).fetchone() == (4, 3)
        [(klass,)] = conn.execute("SELECT class FROM radacct WHERE acctsessionid = 'imp-a'")
        assert klass == "0x6162"  # how FreeRADIUS writes an octets attribute
    config = write_config(tmp_path)
    source = ["--from", str(radacct), "--config", str(config)]

    out = run_import(capsys, *source, "--history")
    assert out[:3] == [
        "imported 3 sessions (2 online, 1 closed)",
        "already present 0",
        "skipped 1",
    ], out
    assert "NAS not covered by any [[radius.clients]] address" in out[3]
    # running it again changes nothing
    out = run_import(capsys, *source, "--history")
    assert out[:3] == ["imported 0 sessions (0 online, 0 closed)", "already present 3", "skipped 1"]

    daemon: Daemon = await daemon_factory()
    assert daemon.http_address is not None
    api = daemon.http_address[1]
    for user, session_id in ((1001, "imp-a"), (1003, "imp-c")):
        reply = (await graphql(api, ONLINE, ADMIN_TOKEN, userId=user)).json()
        [online] = reply["data"]["getOnlineSessions"]
        assert online["sessionId"] == session_id and online["nasIpAddress"] == "127.0.0.1"
        assert online["framedIpAddress"] == f"100.64.0.{user % 250}"
    reply = (await graphql(api, ONLINE, ADMIN_TOKEN, userId=1002)).json()
    assert reply["data"]["getOnlineSessions"] == []
    [imported] = daemon.index.for_user(1001)
    assert imported.start_time == NOW - 600 and imported.class_hex == "6162"
    assert imported.input_octets == 1000 + (1 << 32) and imported.output_octets == 2000

    # the NAS, now talking to radtrack, sends the next Interim of the imported session
    later = packet(
        1001,
        "imp-a",
        "Interim-Update",
        Class="0x6162",
        Event_Timestamp=NOW,
        Acct_Session_Time=600,
        Acct_Input_Octets=5000,
    )
    code, out_ = await radclient(udp_port(daemon), later)
    assert code == 0 and "Received Accounting-Response" in out_, out_
    [updated] = daemon.index.for_user(1001)
    assert updated.id == imported.id and updated.session_time == 600
    assert updated.input_octets == 5000 and updated.start_time == NOW - 600
    # the closed one is history, with FreeRADIUS's stop
    [closed] = [
        s
        for s in await daemon.store.history_page(1002, since=None, until=None, limit=5, cursor=None)
    ][0]
    assert (closed.stop_time, closed.terminate_cause) == (NOW - 400, "User-Request")

    # while radtrack runs, the import refuses to touch its database
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "radtrack",
        "import",
        "radacct",
        *source,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1 and b"stop it first" in err, err


# the columns FreeRADIUS's PostgreSQL queries.conf fills on a Start (and an Interim's counters)
PG_ROWS = """
INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, NASIPAddress, NASPortId,
    NASPortType, AcctStartTime, AcctUpdateTime, AcctStopTime, AcctSessionTime,
    AcctInputOctets, AcctOutputOctets, CalledStationId, CallingStationId, AcctTerminateCause,
    FramedIPAddress, ConnectInfo_start, Class)
VALUES
 ('pg-a', 'u1', '2001', '127.0.0.1', 'tun1', 'Virtual', TO_TIMESTAMP($1 - 900),
  TO_TIMESTAMP($1 - 60), NULL, 840, 123, 456, '', '02:00:00:00:00:aa', '',
  '100.64.9.1', 'ocserv', NULL),
 ('pg-b', 'u2', '2002', '127.0.0.1', 'tun2', 'Virtual', TO_TIMESTAMP($1 - 900),
  TO_TIMESTAMP($1 - 800), TO_TIMESTAMP($1 - 800), 100, 1, 2, '', '', 'Idle-Timeout',
  NULL, '', NULL)
"""


@pytest.mark.asyncio
async def test_import_from_postgresql_beside_a_running_node(
    pg_dsn: str, tmp_path: Path, daemon_factory: Callable[..., Any]
) -> None:
    """radacct in PostgreSQL (FreeRADIUS's schema) into a PostgreSQL store while a node runs:
    the import writes through the change feed, so the node shows the session at once, and
    its next Interim finds it."""
    import asyncpg

    from tests.freeradius import POSTGRESQL_SCHEMA

    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(POSTGRESQL_SCHEMA.read_text())
        await conn.execute(PG_ROWS.replace("$1", str(NOW)))
    finally:
        await conn.close()
    store = {"backend": "postgresql", "dsn": pg_dsn, "node_name": "node-a"}
    daemon: Daemon = await daemon_factory(store=store)
    config = tmp_path / "pg.toml"
    config.write_text(
        f'[store]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n'
        f'[[radius.clients]]\nname = "nas-local"\naddress = "127.0.0.1"\nsecret = "{SECRET}"\n'
    )

    async def cli_import() -> str:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "radtrack", "import", "radacct", "--from", pg_dsn),
            *("--config", str(config), "--history"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        return out.decode()

    assert (await cli_import()).startswith("imported 2 sessions (1 online, 1 closed)\n")
    assert "already present 2\n" in await cli_import()
    deadline = time.monotonic() + 5
    while not daemon.index.for_user(2001) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the feed: NOTIFY, then the node reads the change
    [imported] = daemon.index.for_user(2001)
    assert (imported.start_time, imported.framed_ip) == (NOW - 900, "100.64.9.1")
    later = packet(2001, "pg-a", "Interim-Update", Event_Timestamp=NOW, Acct_Session_Time=900)
    code, out = await radclient(udp_port(daemon), later)
    assert code == 0 and "Received Accounting-Response" in out, out
    [updated] = daemon.index.for_user(2001)
    assert updated.id == imported.id and updated.session_time == 900
    assert daemon.index.for_user(2002) == []
