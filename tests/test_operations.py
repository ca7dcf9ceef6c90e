"""Operations: sd_notify on a real Unix socket, SIGHUP reload under load, the systemd unit, CLI.

The daemon runs as a child process (``python -m radtrack serve``), as systemd would run it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary

from radtrack.store import journal
from tests.conftest import acct_packet

SECRET = "operations-secret-0123"
TOKEN_A = "token-a-for-reload-test"
TOKEN_B = "token-b-for-reload-test"
ROOT = Path(__file__).resolve().parents[1]


def config_text(db: Path, *, clients: list[str], tokens: list[str], extra: str = "") -> str:
    parts = ['[radius]\nlisten = ["127.0.0.1:0"]\n']
    for i, address in enumerate(clients):
        parts.append(
            f'[[radius.clients]]\nname = "nas-{i}"\naddress = "{address}"\nsecret = "{SECRET}"\n'
        )
    parts.append(f'[store]\npath = "{db}"\nbusy_timeout = 30.0\n')
    parts.append('[api]\nlisten = "127.0.0.1:0"\n')
    for token in tokens:
        digest = hashlib.sha256(token.encode()).hexdigest()
        parts.append(
            f'[[api.tokens]]\nname = "{token[:7]}"\nsha256 = "{digest}"\nscopes = ["admin"]\n'
        )
    return "\n".join(parts) + extra


class Child:
    """radtrack serve in a child process; reads the bound ports from its start-up log line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radtrack", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
        )
        self.log: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            assert line, f"radtrack exited: {''.join(self.log)}"
            self.log.append(line)
            match = re.search(r"event=started udp=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+)", line)
            if match:
                self.udp_port, self.http_port = int(match.group(1)), int(match.group(2))
                return
        raise AssertionError("radtrack did not start")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        self.log.append(err)
        return "".join(self.log)


def exchange(
    port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 1.0
) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def graphql(port: int, token: str, query: str = "{ onlineSessionCount(userId: 1) }") -> dict:
    body = json.dumps({"query": query}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + body
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def start(dictionary: Dictionary, sid: str) -> bytes:
    return acct_packet(
        dictionary,
        secret=SECRET,
        User_Name="1",
        Acct_Status_Type="Start",
        Acct_Session_Id=sid,
        NAS_IP_Address="192.0.2.1",
    ).RequestPacket()


@pytest.fixture
def notify_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def read_notifications(sock: socket.socket, seconds: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            continue
    return out


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(0.2)


def test_sd_notify_ready_watchdog_stopping(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], dictionary: Dictionary
) -> None:
    path, sock = notify_socket
    db = tmp_path / "n.db"
    config = tmp_path / "n.toml"
    config.write_text(config_text(db, clients=["127.0.0.1"], tokens=[TOKEN_A]))
    child = Child(config, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    try:
        first = read_notifications(sock, 1.0)
        assert first[0] == "READY=1", first
        assert any(m.startswith("STATUS=online=0") for m in first)
        assert first.count("WATCHDOG=1") >= 3  # every 0.2 s while healthy

        # a commit that hangs on a lock held elsewhere: the watchdog pings stop
        lock = sqlite3.connect(journal.journal_path(db), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            assert exchange(child.udp_port, start(dictionary, "stuck"), timeout=0.2) is None
            time.sleep(0.6)  # longer than WatchdogSec: the commit counts as hung now
            drain(sock)  # what was sent before that moment
            stuck = read_notifications(sock, 1.0)
            assert "WATCHDOG=1" not in stuck, stuck
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        resumed = read_notifications(sock, 1.0)
        assert "WATCHDOG=1" in resumed
    finally:
        child.stop()
    assert "STOPPING=1" in read_notifications(sock, 0.5)


def test_sighup_adds_nas_and_revokes_token_without_losing_packets(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "r.db"
    config = tmp_path / "r.toml"
    config.write_text(config_text(db, clients=["127.0.0.1"], tokens=[TOKEN_A]))
    child = Child(config)
    try:
        assert graphql(child.http_port, TOKEN_A)["data"] == {"onlineSessionCount": 0}
        assert exchange(child.udp_port, start(dictionary, "new-nas-0"), "127.0.0.2") is None

        answered = 0
        sent = 0

        async def keep_sending(stop: asyncio.Event) -> None:
            nonlocal answered, sent
            while not stop.is_set():
                sent += 1
                data = start(dictionary, f"flow-{sent}")
                reply = await asyncio.to_thread(exchange, child.udp_port, data, "127.0.0.1", 3.0)
                answered += reply is not None

        async def scenario() -> None:
            stop = asyncio.Event()
            flow = asyncio.create_task(keep_sending(stop))
            await asyncio.sleep(0.3)
            config.write_text(config_text(db, clients=["127.0.0.1", "127.0.0.2"], tokens=[TOKEN_B]))
            child.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            stop.set()
            await flow

        asyncio.run(scenario())
        assert sent > 5 and answered == sent  # not one packet lost across the reload
        assert exchange(child.udp_port, start(dictionary, "new-nas-1"), "127.0.0.2") is not None
        refused = graphql(child.http_port, TOKEN_A)
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert graphql(child.http_port, TOKEN_B)["data"] == {"onlineSessionCount": 1 + sent}

        # a broken config is rejected and the running one kept
        config.write_text(config.read_text() + "\n[radius.bogus]\n")
        child.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert exchange(child.udp_port, start(dictionary, "still-there"), "127.0.0.2") is not None
        assert graphql(child.http_port, TOKEN_B)["data"] is not None
    finally:
        log = child.stop()
    assert "event=reloaded clients=2 tokens=1" in log
    assert "event=reload_rejected" in log and "radius.bogus" in log
    assert TOKEN_A not in log and TOKEN_B not in log and SECRET not in log


def test_reload_reports_settings_that_need_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    config = tmp_path / "x.toml"
    config.write_text(config_text(db, clients=["127.0.0.1"], tokens=[TOKEN_A]))
    child = Child(config)
    try:
        config.write_text(
            config_text(tmp_path / "other.db", clients=["127.0.0.1"], tokens=[TOKEN_A])
        )
        child.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        log = child.stop()
    assert "event=reload_needs_restart key=store" in log
    assert not (tmp_path / "other.db").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "radtrack.service").read_text()
    radtrack = shutil.which("radtrack") or sys.executable
    local = tmp_path / "radtrack.service"
    local.write_text(unit.replace("/usr/local/bin/radtrack", radtrack))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(
        r"Overall exposure level for radtrack.service: ([\d.]+) (\w+)", security.stdout
    )
    assert match, security.stdout[-2000:]
    assert match.group(2) == "OK", match.group(0)  # the best band
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=radtrack"):
        assert line in unit


def test_cli_token_create_prints_config_lines() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "radtrack", "token", "create", "--name", "ops", "--scope", "admin"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    token = re.search(r"token \(shown once.*\): (\S+)", out).group(1)  # type: ignore[union-attr]
    digest = re.search(r'sha256 = "([0-9a-f]{64})"', out).group(1)  # type: ignore[union-attr]
    assert hashlib.sha256(token.encode()).hexdigest() == digest
    assert 'scopes = ["admin"]' in out


def test_cli_check_config(tmp_path: Path) -> None:
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "radtrack",
            "check-config",
            "--config",
            str(ROOT / "config.example.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[radius.clients]]\nname = "a"\naddress = "nope"\nsecret = "short"\n')
    result = subprocess.run(
        [sys.executable, "-m", "radtrack", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "radius.clients[0].address" in result.stderr
    weak = tmp_path / "weak.toml"
    weak.write_text('[[radius.clients]]\nname = "a"\naddress = "127.0.0.1"\nsecret = "short"\n')
    result = subprocess.run(
        [sys.executable, "-m", "radtrack", "check-config", "--config", str(weak)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "shorter than 16 characters" in result.stderr


def test_cli_secret_is_strong() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "radtrack", "secret"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert len(out) >= 24


def test_users_import_sessions_listing_and_reload(tmp_path: Path, dictionary: Dictionary) -> None:
    db = tmp_path / "u.db"
    config = tmp_path / "u.toml"
    reseller = "reseller-token-for-import"
    digest = hashlib.sha256(reseller.encode()).hexdigest()
    config.write_text(
        config_text(db, clients=["127.0.0.1"], tokens=[TOKEN_A])
        + f'[[api.tokens]]\nname = "r7"\nsha256 = "{digest}"\nscopes = ["reseller"]\n'
        + "reseller_id = 7\n"
    )
    child = Child(config)
    try:
        packet = acct_packet(
            dictionary,
            secret=SECRET,
            User_Name="carol@example.net",
            Acct_Status_Type="Start",
            Acct_Session_Id="carol-1",
            NAS_IP_Address="192.0.2.1",
        ).RequestPacket()
        assert exchange(child.udp_port, packet) is not None
        csv_file = tmp_path / "users.csv"
        csv_file.write_text("user_id,username,reseller_id\n4711,carol@example.net,7\n")
        imported = subprocess.run(
            [
                sys.executable,
                "-m",
                "radtrack",
                "users",
                "import",
                str(csv_file),
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
        )
        assert imported.returncode == 0, imported.stderr
        assert "imported 1 users" in imported.stdout
        child.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        query = "{ getOnlineSessions(userId: 4711) { sessionId } }"
        assert graphql(child.http_port, reseller, query)["data"] == {
            "getOnlineSessions": [{"sessionId": "carol-1"}]
        }
        listing = subprocess.run(
            [
                sys.executable,
                "-m",
                "radtrack",
                "sessions",
                "--config",
                str(config),
                "--user",
                "4711",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        [row] = json.loads(listing)
        assert row["session_id"] == "carol-1" and row["user_name"] == "carol@example.net"
        table = subprocess.run(
            [sys.executable, "-m", "radtrack", "sessions", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "carol-1" in table and "(1 online)" in table
    finally:
        log = child.stop()
    assert "event=users_reloaded changed=1" in log


def test_users_import_rejects_a_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "b.toml"
    config.write_text(config_text(tmp_path / "b.db", clients=["127.0.0.1"], tokens=[TOKEN_A]))
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,username\nseven,alice\n")
    result = subprocess.run(
        [sys.executable, "-m", "radtrack", "users", "import", str(bad), "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "bad.csv:2" in result.stderr and "'seven'" in result.stderr
