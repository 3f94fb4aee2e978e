"""Which files the search API reads back: the one rule for serving an indexed image
(``/api/image/{id}``) and for re-scoring it (``search/rescoring.py``).

A point's payload names its file (``ImagePayload.file_path``), and the API does not take
that path on trust: a point can be stale (the file moved, or replaced by a link or a FIFO),
written under wider roots than today's, or forged by whoever holds the internal token or
can write to a Qdrant server. So a payload's file is read only if

- the path is absolute and, links resolved, lies under a folder of ``INDEX_ROOTS`` or
  under ``UPLOAD_DIR`` (with ``INDEX_ROOTS`` empty no folder may be queued, so only the
  upload folder qualifies);
- it is a regular file: not a directory, a device or a FIFO (opening a FIFO for reading
  waits for a writer, and would hold a thread for good).

The rule is checked on what is opened, not only on the path: the resolved path is opened
one component at a time from the root it lies under, never following a link
(``O_NOFOLLOW``), so a link swapped in after the check is refused; the last component is
opened non-blocking (a FIFO swapped in cannot block) and the descriptor must be a regular
file. The roots are resolved at each call: an upload folder created later, or a root that
is a link, is taken as it is then.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class OpenedFile(NamedTuple):
    #: The file's path, links resolved.
    path: Path
    #: Open for reading, positioned at the start; the caller closes it.
    file: BinaryIO


@dataclass(frozen=True)
class IndexedFiles:
    """The folders whose files the API reads back: ``INDEX_ROOTS`` and the upload folder
    (``index_roots`` empty: the upload folder alone, as no folder may then be queued)."""

    index_roots: tuple[Path, ...]
    upload_dir: Path

    @classmethod
    def of(cls, index_roots: Sequence[Path], upload_dir: Path) -> IndexedFiles:
        return cls(tuple(Path(r) for r in index_roots), Path(upload_dir))

    def roots(self) -> list[Path]:
        """The folders, links resolved."""
        return [Path(os.path.realpath(r)) for r in (*self.index_roots, self.upload_dir)]

    def open(self, stored: str) -> OpenedFile | None:
        """The file ``stored`` names, opened for reading, if the rule above lets it be read;
        else None. Blocking (file system calls): run it off the event loop."""
        if not stored or "\0" in stored or not os.path.isabs(stored):
            return None
        real = Path(os.path.realpath(stored))
        for root in self.roots():
            if real == root or not real.is_relative_to(root):
                continue
            fd = _open_beneath(root, real.relative_to(root).parts)
            if fd is not None:
                return OpenedFile(real, os.fdopen(fd, "rb"))
        return None


def _open_beneath(root: Path, parts: Sequence[str]) -> int | None:
    """A descriptor of the regular file ``root/parts...``, every component opened without
    following a link; None if any component is missing, a link, or the file is not a
    regular one."""
    fds: list[int] = []
    try:
        fds.append(os.open(root, _DIR_FLAGS))
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1])
    except OSError:
        return None
    finally:
        for d in fds:
            os.close(d)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        # Reads block as usual from here (O_NONBLOCK only guarded the open).
        os.set_blocking(fd, True)
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        return None
    return fd
