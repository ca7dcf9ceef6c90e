"""Shared fixtures: a real daemon on loopback (port 0), a temp database, RADIUS clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.client import Client, Timeout
from pyrad.dictionary import Dictionary
from pyrad.packet import AcctPacket

from radtrack import config
from radtrack.api.settings import token_digest
from radtrack.daemon import Daemon
from radtrack.radius.dictionary import load as load_dictionary
from tests.pgserver import PgCluster, PostgresMissing

SECRET = "test-secret-0123456789"
ADMIN_TOKEN = "admin-token-for-tests"
RESELLER_TOKEN = "reseller-1-token-for-tests"
RESELLER2_TOKEN = "reseller-2-token-for-tests"


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> config.Settings:
    """Settings for a test daemon: loopback, port 0, a database in tmp_path. ``sections``
    override or add keys per TOML table (``radius={"queue_size": 2}``)."""
    data: dict[str, Any] = {
        "radius": {
            "listen": ["127.0.0.1:0"],
            "clients": [{"name": "nas-local", "address": "127.0.0.1", "secret": SECRET}],
        },
        "store": {"path": str(tmp_path / "radtrack.db")},
        "api": {
            "listen": "127.0.0.1:0",
            "tokens": [
                {
                    "name": "admin",
                    "sha256": token_digest(ADMIN_TOKEN).hex(),
                    "scopes": ["admin"],
                },
                {
                    "name": "reseller-1",
                    "sha256": token_digest(RESELLER_TOKEN).hex(),
                    "scopes": ["reseller"],
                    "reseller_id": 1,
                },
                {
                    "name": "reseller-2",
                    "sha256": token_digest(RESELLER2_TOKEN).hex(),
                    "scopes": ["reseller"],
                    "reseller_id": 2,
                },
            ],
        },
        "daemon": {"shutdown_timeout": 5.0},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config.parse(data)


EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "config.example.toml"


def example_config(folder: Path, **replace: str) -> Path:
    """config.example.toml as a first user runs it, written to ``folder``: the same NAS, secret
    and tokens, its database beside it, but free ports (port 0). ``replace`` maps more lines of
    the example to what they become (each must be there)."""
    text = EXAMPLE_CONFIG.read_text()
    lines = {
        'listen = ["127.0.0.1:1813"]': 'listen = ["127.0.0.1:0"]',
        'listen = "127.0.0.1:8080"': 'listen = "127.0.0.1:0"',
        **replace,
    }
    for line, new in lines.items():
        assert f"\n{line}\n" in text, f"config.example.toml has no line {line!r}"
        text = text.replace(f"\n{line}\n", f"\n{new}\n")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "radtrack.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def dictionary() -> Dictionary:
    return load_dictionary()


@pytest_asyncio.fixture
async def daemon_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """Start daemons (in this event loop) and stop every one of them at the end."""
    started: list[Daemon] = []

    async def start(settings: config.Settings | None = None, **sections: Any) -> Daemon:
        daemon = Daemon(settings or make_settings(tmp_path, **sections))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.stop()


@pytest_asyncio.fixture
async def daemon(daemon_factory: Callable[..., Any]) -> Daemon:
    return await daemon_factory()  # type: ignore[no-any-return]


def udp_port(daemon: Daemon) -> int:
    return daemon.listeners[0].address[1]


def acct_packet(dictionary: Dictionary, secret: str = SECRET, **attributes: Any) -> AcctPacket:
    """An Accounting-Request built by pyrad (attribute names with '_' for '-')."""
    packet = AcctPacket(dict=dictionary, secret=secret.encode())
    for name, value in attributes.items():
        packet[name.replace("_", "-")] = value
    return packet


async def send_pyrad(
    port: int,
    packet: AcctPacket,
    *,
    dictionary: Dictionary,
    secret: str = SECRET,
    timeout: float = 2.0,
    retries: int = 1,
) -> AcctPacket | None:
    """Send with pyrad's own client (in a thread: it blocks); None when nothing answered."""

    def run() -> AcctPacket | None:
        client = Client(
            server="127.0.0.1",
            acctport=port,
            secret=secret.encode(),
            dict=dictionary,
            retries=retries,
            timeout=timeout,
        )
        try:
            return client.SendPacket(packet)  # type: ignore[no-any-return]
        except Timeout:
            return None
        finally:
            client._CloseSocket()

    return await asyncio.to_thread(run)


async def send_raw(
    port: int, data: bytes, *, timeout: float = 0.5, source: str = "127.0.0.1"
) -> bytes | None:
    """One datagram out, the first datagram back (or None after ``timeout``)."""

    def run() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(timeout)
            sock.sendto(data, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                return sock.recv(65535)
            return None

    return await asyncio.to_thread(run)


async def radclient(
    port: int,
    text: str,
    *,
    command: str = "acct",
    secret: str = SECRET,
    extra: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Run FreeRADIUS's radclient with ``text`` as its attribute list; (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        "radclient",
        "-x",
        "-r",
        "1",
        "-t",
        "2",
        *extra,
        f"127.0.0.1:{port}",
        command,
        secret,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    return proc.returncode or 0, out.decode(errors="replace")


# --- PostgreSQL (tests/pgserver.py): one cluster for the run, started by the first test that
# needs it; a fresh database per test. Without PostgreSQL those tests skip and the run's summary
# says so in red; under CI (CI=true) they fail instead: CI must not skip them.

_PG_MISSING: list[str] = []


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster()
    except PostgresMissing as missing:
        if _ci():
            pytest.fail(f"CI: {missing}", pytrace=False)
        _PG_MISSING.append(str(missing))
        pytest.skip(f"PostgreSQL missing: {missing}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """The DSN of a new, empty database on the test cluster, dropped after the test."""
    name = pg_cluster.create_database()
    yield pg_cluster.dsn(name)
    pg_cluster.drop_database(name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _PG_MISSING:
        skipped = [
            r for r in terminalreporter.stats.get("skipped", []) if "PostgreSQL" in str(r.longrepr)
        ]
        terminalreporter.write_sep(
            "!",
            f"PostgreSQL NOT TESTED: {len(skipped)} tests skipped: {_PG_MISSING[0]}",
            red=True,
            bold=True,
        )
