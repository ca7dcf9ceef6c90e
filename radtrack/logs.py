"""Logging for journald: one ``key=value`` line per event on stderr, and rate limiting for
warnings caused by misbehaving peers (a flood of forged packets must not flood the journal)."""

from __future__ import annotations

import logging
import sys
import time


class RateLimiter:
    """At most ``burst`` messages per ``key`` every ``period`` seconds; counts what it swallowed."""

    def __init__(self, period: float = 10.0, burst: int = 5) -> None:
        self.period = period
        self.burst = burst
        self._windows: dict[str, tuple[float, int, int]] = {}

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """(may log now, how many were suppressed since the last logged one)."""
        now = time.monotonic() if now is None else now
        start, count, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, count = now, 0
        if count < self.burst:
            self._windows[key] = (start, count + 1, 0)
            return True, suppressed
        self._windows[key] = (start, count, suppressed + 1)
        if len(self._windows) > 10_000:
            self._windows.clear()
        return False, 0


class KeyValueFormatter(logging.Formatter):
    """``level=WARNING logger=radtrack.service event=... peer=...``; journald adds the time."""

    def __init__(self, with_time: bool = False) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        head = f"level={record.levelname} logger={record.name}"
        if self.with_time:
            head = f"time={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {head}"
        line = f"{head} {message}" if "=" in message.split(" ", 1)[0] else f'{head} msg="{message}"'
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(with_time=not _under_journald()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _under_journald() -> bool:
    import os

    return "JOURNAL_STREAM" in os.environ
