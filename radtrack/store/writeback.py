"""Paced write-back: a file's dirty pages go to the disk a slice at a time, then one fsync.

A checkpoint of the main database moves tens of MB (a fold's pages, through the WAL into the
database file), and SQLite's own fsync hands them to the disk all at once: the journal's small
fsync, which every acknowledgement waits for, then queues behind them (ack p99 at 5,000
packets/s: 37-45 ms with checkpoints, 11-13 ms without; docs/performance.md). Writing the pages
back in slices, waiting for each, keeps the disk's queue short, so the journal's fsync gets in
between; the final fsync then finds little left to write.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from pathlib import Path

# sync_file_range(2) flags: wait for write-out already in flight, start it, wait for it
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
SLICE = 1 << 20  # bytes a step
PAUSE = 0.002  # seconds between steps: room for the journal's fsync

_sync_file_range: Callable[[int, int, int, int], int] | None
try:
    _sync_file_range = ctypes.CDLL(None, use_errno=True).sync_file_range
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    _sync_file_range.restype = ctypes.c_int
except (OSError, AttributeError):  # not Linux: the fsync alone
    _sync_file_range = None


def write_back(path: Path, slice_bytes: int = SLICE, pause: float = PAUSE) -> None:
    """Write ``path``'s dirty pages back in slices, then fsync it (its data: fdatasync). A
    missing file has nothing to write. Raises OSError if the disk fails."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if _sync_file_range is not None:
            size = os.fstat(fd).st_size
            flags = _WAIT_BEFORE | _WRITE | _WAIT_AFTER
            for offset in range(0, size, slice_bytes):
                if _sync_file_range(fd, offset, slice_bytes, flags) != 0:
                    break  # e.g. not supported by this filesystem: the fsync does it all
                if pause:
                    time.sleep(pause)
        os.fdatasync(fd)
    finally:
        os.close(fd)
