"""systemd's notify protocol (sd_notify(3)) in a few lines: datagrams on $NOTIFY_SOCKET.

READY=1 after recovery, UDP bound and HTTP started; STATUS= lines; WATCHDOG=1 only while the
event loop and the database writer make progress; STOPPING=1 on shutdown. Without
$NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if address:
            # "@name" is an abstract-namespace socket: a leading NUL byte on the wire
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> None:
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:  # systemd gone or socket full: nothing to do but note it
            logger.debug("event=sd_notify_failed error=%s", exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.01)
    except ValueError:
        return None


async def status_loop(
    notifier: Notifier,
    status: Callable[[], str],
    acknowledged: Callable[[], int],
    stuck: Callable[[float], bool],
) -> None:
    """STATUS= (``status()`` and the packets acknowledged per second) every few seconds;
    WATCHDOG=1 only while the loop runs (this task is scheduled at all) and no commit hangs
    (``stuck(seconds)`` is false: the store makes progress)."""
    watchdog = watchdog_interval()
    period = min(watchdog, 5.0) if watchdog else 5.0
    last_acked = 0
    last = time.monotonic()
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        acked = acknowledged()
        rate = (acked - last_acked) / max(now - last, 1e-6)
        last_acked, last = acked, now
        fields = [f"{status()} packets_per_second={rate:.0f}"]
        if watchdog and not stuck(2 * watchdog):
            fields.append("WATCHDOG=1")
        notifier.notify(*fields)
