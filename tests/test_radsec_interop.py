"""RadSec against a client nobody here wrote: FreeRADIUS's radclient sends UDP accounting to
Debian's radsecproxy, which forwards it over TLS (RFC 6614) to ``radtrack serve`` (a child
process, on uvloop, as systemd runs it). radsecproxy answers accounting only with what its
server answers (``AccountingResponse`` is off), so radclient's Accounting-Response is radtrack's.

Certificates are made by the test (tests/tlscerts.py). Without radsecproxy these tests skip;
with CI=true they fail instead (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from radtrack.store import journal
from tests.conftest import ADMIN_TOKEN, SECRET, radclient
from tests.test_ingest import locked, rows
from tests.test_operations import Child
from tests.tlscerts import Pair, Pki, make_pki

RADSECPROXY = shutil.which("radsecproxy") or "/usr/sbin/radsecproxy"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if not os.path.exists(RADSECPROXY):
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("CI: radsecproxy is missing (apt-get install radsecproxy)")
        pytest.skip("radsecproxy is not installed (Debian: apt-get install radsecproxy)")
    return make_pki(tmp_path_factory.mktemp("pki"))


def radtrack_config(folder: Path, pki: Pki, store: str = "") -> Path:
    digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    path = folder / "radtrack.toml"
    path.write_text(
        f"""
[radius]
listen = ["127.0.0.1:0"]
radsec_listen = ["127.0.0.1:0"]
radsec_certificate = "{pki.server.certificate}"
radsec_key = "{pki.server.key}"
radsec_ca = "{pki.ca}"

[[radius.clients]]
name = "radsecproxy"
address = "127.0.0.1"
radsec = true
certificate_name = "nas1.example.net"

[store]
path = "{folder / "radtrack.db"}"
{store}

[api]
listen = "127.0.0.1:0"

[[api.tokens]]
name = "admin"
sha256 = "{digest}"
scopes = ["admin"]
"""
    )
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Radsecproxy:
    """radsecproxy in the foreground: UDP from radclient in, TLS to radtrack out."""

    def __init__(self, folder: Path, pki: Pki, pair: Pair, radsec_port: int) -> None:
        self.port = free_udp_port()
        self.log = folder / "radsecproxy.log"
        config = folder / "radsecproxy.conf"
        config.write_text(
            f"""
ListenUDP 127.0.0.1:{self.port}
LogLevel 4

tls radtrack {{
    CACertificateFile {pki.ca}
    CertificateFile {pair.certificate}
    CertificateKeyFile {pair.key}
}}

client nas {{
    host 127.0.0.1
    type udp
    secret {SECRET}
}}

server radtrack {{
    host 127.0.0.1
    port {radsec_port}
    type tls
    tls radtrack
    # no secret: "radsec" over TLS (RFC 6614 §2.3); the certificate is checked for 127.0.0.1
}}

realm * {{
    accountingServer radtrack
}}
"""
        )
        with self.log.open("wb") as log:  # -f: in the foreground, logging to stderr
            self.proc = subprocess.Popen(
                [RADSECPROXY, "-f", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def radtrack(tmp_path: Path, pki: Pki) -> Iterator[Child]:
    child = Child(radtrack_config(tmp_path, pki, "busy_timeout = 0.1"))
    try:
        yield child
    finally:
        child.stop()


def radsec_port(child: Child) -> int:
    match = re.search(r"radsec=127\.0\.0\.1:(\d+)", child.log[-1])
    assert match, child.log[-1]
    return int(match.group(1))


def metrics(child: Child) -> str:
    url = f"http://127.0.0.1:{child.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
        return reply.read().decode()


ACCOUNTING = (
    'User-Name = "4242"\nAcct-Session-Id = "rsp-1"\nNAS-IP-Address = 192.0.2.9\n'
    "NAS-Port-Type = Virtual\nFramed-IP-Address = 100.64.1.2\n"
)


def test_radclient_through_radsecproxy_start_interim_stop(
    tmp_path: Path, pki: Pki, radtrack: Child
) -> None:
    proxy = Radsecproxy(tmp_path, pki, pki.nas, radsec_port(radtrack))
    try:
        for status, extra in (
            ("Start", 'Connect-Info = "ocserv"\n'),
            ("Interim-Update", "Acct-Session-Time = 60\nAcct-Input-Octets = 1000\n"),
            ("Stop", "Acct-Session-Time = 120\nAcct-Terminate-Cause = Idle-Timeout\n"),
        ):
            text = f"{ACCOUNTING}Acct-Status-Type = {status}\n{extra}"
            code, out = asyncio.run(radclient(proxy.port, text, extra=("-r", "3", "-t", "3")))
            assert code == 0 and "Received Accounting-Response" in out, (out, proxy.stop())
            # radtrack answered after its COMMIT: the row is there when radclient has the reply
            [row] = rows(tmp_path / "radtrack.db")
            assert (row["nas_name"], row["session_id"]) == ("radsecproxy", "rsp-1")
        assert row["terminate_cause"] == "Idle-Timeout"
        assert row["connect_info_start"] == "ocserv"
        assert row["stop_time"] is not None
        text = metrics(radtrack)
        assert "radtrack_radsec_connections_accepted_total 1.0" in text
        assert "radtrack_radsec_packets_received_total 3.0" in text
        assert "radtrack_packets_acknowledged_total 3.0" in text
    finally:
        proxy.stop()


def test_radsecproxy_with_a_certificate_of_another_ca_gets_nothing(
    tmp_path: Path, pki: Pki, radtrack: Child
) -> None:
    proxy = Radsecproxy(tmp_path, pki, pki.rogue, radsec_port(radtrack))
    try:
        text = f"{ACCOUNTING}Acct-Status-Type = Start\n"
        code, out = asyncio.run(radclient(proxy.port, text, extra=("-r", "2", "-t", "2")))
        assert "Received Accounting-Response" not in out
        assert code != 0
        assert rows(tmp_path / "radtrack.db") == []
        refused = re.search(
            r'radtrack_radsec_refused_total\{reason="handshake_failed"\} (\d+)', metrics(radtrack)
        )
        assert refused and int(refused.group(1)) >= 1
    finally:
        proxy.stop()


@pytest.mark.slow
def test_a_write_that_fails_is_answered_when_the_nas_sends_it_again(
    tmp_path: Path, pki: Pki, radtrack: Child
) -> None:
    """DESIGN.md invariant 1 end to end: while the journal is locked nothing is answered;
    radsecproxy gives up on radtrack's answer (~10 s), takes the NAS's next retransmission as
    new and sends it again over TLS, and that one is stored and answered."""
    proxy = Radsecproxy(tmp_path, pki, pki.nas, radsec_port(radtrack))
    db = tmp_path / "radtrack.db"

    async def scenario() -> tuple[int, str]:
        text = f"{ACCOUNTING}Acct-Status-Type = Start\n"
        with locked(journal.journal_path(db)):
            sending = asyncio.ensure_future(
                radclient(proxy.port, text, extra=("-r", "8", "-t", "3"))
            )
            await asyncio.sleep(4)
            assert not sending.done()  # no answer while the write cannot be durable
        return await sending

    try:
        code, out = asyncio.run(scenario())
        assert code == 0 and "Received Accounting-Response" in out, (out, proxy.stop())
        assert [r["session_id"] for r in rows(db)] == ["rsp-1"]
        assert re.search(
            r'radtrack_packets_dropped_total\{reason="store_failed"\} [1-9]', metrics(radtrack)
        )
    finally:
        proxy.stop()
