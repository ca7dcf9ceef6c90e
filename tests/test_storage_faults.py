"""Storage faults (issue #5): the database on a full filesystem and on one made read-only.

While writes fail: no Accounting-Response leaves, the daemon stays up and says so (/readyz 503,
radtrack_database_healthy 0, an ERROR log line); when the fault clears, the retransmitted packets
are stored and answered. A small tmpfs is the disk (needs root to mount; skipped otherwise).
The lock held by another process is in tests/test_ingest.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radtrack.daemon import Daemon, StartupError
from radtrack.store import journal
from tests.conftest import acct_packet, make_settings, send_raw, udp_port
from tests.httpclient import http


def _mount(path: Path, *options: str) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not _mount(disk, "size=1m", "mode=0700"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def start(dictionary: Any, sid: str) -> bytes:
    return acct_packet(  # type: ignore[no-any-return]
        dictionary,
        User_Name="42",
        Acct_Status_Type="Start",
        Acct_Session_Id=sid,
        NAS_IP_Address="192.0.2.1",
        Connect_Info="x" * 200,  # rows big enough to need new pages
    ).RequestPacket()


async def readyz(daemon: Daemon) -> int:
    assert daemon.http_address is not None
    return (await http(daemon.http_address[1], "GET", "/readyz")).status


def stored(db: Path) -> set[str]:
    conn = journal.open_current(db)
    try:
        return {row[0] for row in conn.execute("SELECT session_id FROM current_sessions")}
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_full_disk_means_no_answer_until_space_returns(
    small_disk: Path, daemon_factory: Any, dictionary: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(small_disk, store={"path": str(small_disk / "radtrack.db")})
    daemon = await daemon_factory(settings)
    port = udp_port(daemon)
    assert await send_raw(port, start(dictionary, "before"), timeout=2) is not None
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # take every free block of the filesystem
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    waiting = [start(dictionary, f"full-{n}") for n in range(30)]
    answers = await asyncio.gather(*(send_raw(port, p, timeout=1.0) for p in waiting))
    assert all(a is None for a in answers)  # nothing acknowledged while nothing is stored
    assert daemon.store.healthy is False
    assert await readyz(daemon) == 503
    assert "event=commit_failed" in caplog.text
    filler.unlink()
    # the NAS retransmits: every packet is now stored and answered
    answers = await asyncio.gather(*(send_raw(port, p, timeout=5.0) for p in waiting))
    assert all(a is not None and a[0] == 5 for a in answers)
    assert stored(settings.store.path) >= {"before"} | {f"full-{n}" for n in range(30)}
    assert await readyz(daemon) == 200


@pytest.mark.asyncio
async def test_read_only_disk_is_a_clear_startup_error(
    small_disk: Path, daemon_factory: Any, dictionary: Any
) -> None:
    # Linux refuses to make a filesystem read-only while a file on it is open for writing, so
    # the read-only case is start-up on a read-only disk: refused, with the key path and a hint
    settings = make_settings(small_disk, store={"path": str(small_disk / "radtrack.db")})
    daemon = await daemon_factory(settings)
    assert await send_raw(udp_port(daemon), start(dictionary, "before"), timeout=2) is not None
    await daemon.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(StartupError, match="store.path: cannot open database"):
            await Daemon(
                make_settings(small_disk, store={"path": str(settings.store.path)})
            ).start()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
