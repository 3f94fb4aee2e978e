"""The Edge index's small files: the alias file and each collection's record.

Layout under the store's ``root``::

    aliases.json                {"cats": "cats.r2"}: logical name -> the collection it reads
    <collection>/record.json    the collection's record (e.g. the model that filled it)

Both are written atomically (a temporary file beside it, fsync, rename, fsync of the
directory): a reader, or the next open after a crash or a power loss, finds the old
document or the new one, never a part. They are read and written on the Edge thread
(:mod:`.calls`), where the searches resolve their names too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ...errors import ImgSearchError
from ...ids import logical_name, validate_collection, validate_physical

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)

ALIASES_FILE = "aliases.json"
RECORD_FILE = "record.json"
_TMP_SUFFIX = ".tmp"


def write_json_atomically(path: Path, document: Any) -> None:
    """Replace ``path`` by ``document`` (JSON) all at once, durably."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    data = json.dumps(document, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    # The rename itself reaches the disk only with its directory.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        # Written atomically: a broken file is a broken disk, not a crash; refuse to guess.
        raise ImgSearchError(f"the vector index file {path.name} is unreadable") from exc


def load_aliases(root: Path) -> dict[str, str]:
    """The alias file's mapping (empty when there is none); a temporary file left by a
    crash before its rename is deleted (the old file is the truth)."""
    with contextlib.suppress(FileNotFoundError):
        (root / (ALIASES_FILE + _TMP_SUFFIX)).unlink()
    document = _read_json(root / ALIASES_FILE)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ImgSearchError(f"the vector index file {ALIASES_FILE} is not a mapping")
    aliases = {}
    for logical, target in document.items():
        if not isinstance(target, str):
            raise ImgSearchError(f"the vector index file {ALIASES_FILE} is not a mapping")
        validate_collection(logical)
        validate_physical(target)
        if logical_name(target) != logical:
            raise ImgSearchError(f"the alias {logical!r} -> {target!r} is not a revision")
        aliases[logical] = target
    return aliases


def save_aliases(root: Path, aliases: dict[str, str]) -> None:
    write_json_atomically(root / ALIASES_FILE, aliases)


def read_record(directory: Path) -> dict[str, Any] | None:
    document = _read_json(directory / RECORD_FILE)
    return document if isinstance(document, dict) else None


def write_record(directory: Path, record: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (directory / (RECORD_FILE + _TMP_SUFFIX)).unlink()
    write_json_atomically(directory / RECORD_FILE, record)
