"""Paced write-back (store/writeback.py): a file's dirty pages reach the disk in slices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radtrack.store import writeback


@pytest.mark.parametrize("sliced", [True, False], ids=["sync_file_range", "fsync-only"])
def test_a_file_written_back_in_slices_keeps_every_byte(
    tmp_path: Path, sliced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not sliced:  # a C library without sync_file_range: one fdatasync does it all
        monkeypatch.setattr(writeback, "_sync_file_range", None)
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)  # not a whole number of slices
    path.write_bytes(data)
    writeback.write_back(path, slice_bytes=256 * 1024, pause=0)
    assert path.read_bytes() == data
    # a second pass over clean pages is harmless
    writeback.write_back(path)
    assert path.read_bytes() == data


def test_a_missing_file_has_nothing_to_write(tmp_path: Path) -> None:
    writeback.write_back(tmp_path / "absent-wal")  # no error: SQLite removed its WAL
