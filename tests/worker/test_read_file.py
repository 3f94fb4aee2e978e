"""The worker's read of a file (``pipeline.read_file_stat``): its bytes, hash and the time
``fstat`` of the open file gave, and a clear permanent error for what is not a photo."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from imgsearch_common.errors import EmptyInput, PayloadTooLarge
from imgsearch_worker.pipeline import MissingFile, read_file, read_file_stat


def test_bytes_hash_and_time_of_the_open_file(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x" * 10)
    os.utime(photo, ns=(1_600_000_000_000_000_001, 1_700_000_000_000_000_007))
    read = read_file_stat(str(photo), max_bytes=10)
    assert (read.data, read.size, read.mtime_ns) == (b"x" * 10, 10, 1_700_000_000_000_000_007)
    assert read.sha256 == hashlib.sha256(b"x" * 10).hexdigest()
    assert read_file(str(photo), 10) == b"x" * 10


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo", "empty", "large"])
def test_what_is_not_a_readable_photo_fails_permanently(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.jpg"
    expected: type[Exception] = MissingFile
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading must not wait for a writer
    elif kind == "empty":
        path.write_bytes(b"")
        expected = EmptyInput
    elif kind == "large":
        path.write_bytes(b"y" * 11)
        expected = PayloadTooLarge
    with pytest.raises(expected) as caught:
        read_file_stat(str(path), max_bytes=10)
    assert getattr(caught.value, "permanent", False)


def test_a_small_file_costs_little_memory_whatever_the_limit(tmp_path: Path) -> None:
    # read(limit + 1) allocated the whole limit (50 MB by default) for every file.
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"z" * 1000)
    tracemalloc.start()
    try:
        read_file_stat(str(photo), max_bytes=200_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
