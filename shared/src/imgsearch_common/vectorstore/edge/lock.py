"""The index lock: one process opens ``root`` at a time.

A second ``EdgeShard.load`` of an open shard fails with ``Can't init WAL: Kind(WouldBlock)``
(from the same or another process) - and the failed attempt is not always harmless: when
the keyword payload index had been created after points existed, and points were then
deleted by filter, the owner's ``flush()`` fails for good afterwards ("Tracker journal ...
is shorter than expected"). So the store takes its own ``flock`` on ``root/.lock``
*before* touching any shard, and a second store fails fast with :class:`StoreLocked`
without Edge ever opening the files. (Our shards get that index at creation.)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from ...errors import ImgSearchError

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)

_LOCK_FILE = ".lock"


class StoreLocked(ImgSearchError):
    """The index directory is open in another process (Qdrant Edge allows one)."""

    status_code = 503
    code = "store_locked"

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def acquire_lock(root: Path) -> int:
    """Lock ``root`` for this process (creating it); the descriptor to release it with.

    The holder's pid is written into the file, so the refusal can name it.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / _LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        log.error("vector index %s is locked by process %s", root, holder)
        raise StoreLocked(
            f"the vector index is open in another process (pid {holder}); "
            "Qdrant Edge allows one process per index",
            path=root,
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Unlock and close; the file stays (removing it could race a new holder)."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
