"""Which changes on disk a followed folder is queued again for (``imgsearch watch DIR``, the
search API's ``WATCH_DIRS``): the one rule both apply to what the file watcher reports."""

from __future__ import annotations

import os
from collections.abc import Sequence


def relevant_change(path: str, extensions: Sequence[str]) -> bool:
    """Whether a change at ``path`` may change what a sync of its folder finds: a file of
    one of ``extensions`` (lower case, with a dot), or anything that is not a regular file
    now (a folder, or something deleted or moved away: it may have held photos). Never a
    hidden name: editors', downloads' and uploads' temporary files (``.x.tmp``)."""
    name = os.path.basename(path)
    if not name or name.startswith("."):
        return False
    return name.lower().endswith(tuple(extensions)) or not os.path.isfile(path)
