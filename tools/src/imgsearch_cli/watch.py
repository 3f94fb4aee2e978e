"""``imgsearch watch DIR``: follow a folder on this machine and keep its index in sync.

The folder is queued with ``sync`` at once, then again after every burst of changes the
file watcher (``watchfiles``: inotify on Linux) reports under it, once nothing changed for
``--debounce`` seconds and the previous batch is finished (changes made meanwhile are kept
by the watcher and make the next round). DIR is watched here and queued as the same path on
the server: run it on the server's machine (or where the server sees the same paths).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

import watchfiles

from imgsearch_common.imaging import DEFAULT_EXTENSIONS
from imgsearch_common.schemas import BatchQueued, BatchStatus, FolderIndexRequest
from imgsearch_common.watching import relevant_change

from .client import ApiClient, CliError
from .format import format_queued, format_summary
from .polling import follow_batch

#: Default quiet time before a change is queued (s).
DEFAULT_DEBOUNCE_S = 2.0


def watch_folder(
    client: ApiClient,
    request: FolderIndexRequest,
    out: TextIO,
    err: TextIO,
    *,
    debounce_s: float = DEFAULT_DEBOUNCE_S,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchStatus], None] | None = None,
) -> int:
    """Queue ``request`` (with ``sync``) now and after each burst of changes under its
    folder, until ``stop`` is set (or Ctrl-C); each round prints what was queued and,
    once its batch is finished, its summary (``on_batch`` sees that status too)."""
    request = request.model_copy(update={"sync": True})
    extensions = tuple(request.extensions or DEFAULT_EXTENSIONS)
    quiet_ms = max(1, round(debounce_s * 1000))

    def one_round() -> None:
        started = time.monotonic()
        try:
            queued = client.index_folder(request)
        except CliError as exc:
            if not exc.transient:
                raise
            err.write(f"not queued for now: {exc.message}\n")
            return
        out.write(format_queued(queued) + "\n")
        out.flush()
        status = _finished(client, queued)
        out.write(format_summary(status, time.monotonic() - started) + "\n")
        out.flush()
        if on_batch is not None:
            on_batch(status)

    one_round()
    err.write(f"watching {request.path} (Ctrl-C to stop)\n")
    err.flush()
    for _changes in watchfiles.watch(
        request.path,
        watch_filter=lambda _change, path: relevant_change(path, [e.lower() for e in extensions]),
        step=quiet_ms,
        debounce=20 * quiet_ms,
        stop_event=stop,
        recursive=request.recursive,
        rust_timeout=max(quiet_ms, 500),
        ignore_permission_denied=True,
    ):
        one_round()
    return 0


def _finished(client: ApiClient, queued: BatchQueued) -> BatchStatus:
    return follow_batch(
        lambda: client.batch(queued.batch_id),
        transient=lambda exc: isinstance(exc, CliError) and exc.transient,
    )
