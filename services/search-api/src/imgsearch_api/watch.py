"""Following folders on disk (``WATCH_DIRS``): the index keeps up with the library.

A background task of the app's lifespan. Each folder is queued with ``sync`` once at
start-up (what changed while the API was down), then again after every burst of changes
the file watcher (``watchfiles``: inotify on Linux) reports under it: a change waits for
``WATCH_DEBOUNCE_S`` of quiet, and for the folder's previous batch to finish, so a folder
being filled is queued again only once its last batch is done (queuing it meanwhile would
list the files still waiting in that batch as new again). A folder that cannot be queued
for now (Redis down, the folder gone) stays due and is tried again at the next tick; the
task never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from imgsearch_common.imaging import DEFAULT_EXTENSIONS
from imgsearch_common.jobs import JobQueue
from imgsearch_common.schemas import FolderIndexRequest
from imgsearch_common.watching import relevant_change

from .indexing import IndexingService

log = logging.getLogger(__name__)


@dataclass
class _Folder:
    path: Path
    #: Changes seen since it was last queued (at start-up: the catch-up sync).
    due: bool = True
    #: Its last batch, while that is unfinished.
    batch: str | None = None


@dataclass
class FolderWatcher:
    indexing: IndexingService
    queue: JobQueue
    folders: Sequence[Path]
    collection: str
    debounce_s: float
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    #: Every batch this watcher queued, oldest first (the tests and logs follow them).
    queued: list[str] = field(default_factory=list, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="watch-dirs")

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        real = await asyncio.to_thread(lambda: [os.path.realpath(f) for f in self.folders])
        folders = [_Folder(Path(f)) for f in real]
        quiet_ms = max(1, round(self.debounce_s * 1000))
        log.info("following %s", ", ".join(str(f.path) for f in folders))
        # Every folder starts due: its first tick (the watcher running by then) queues it.
        changes = watchfiles.awatch(
            *(f.path for f in folders),
            watch_filter=lambda _change, path: relevant_change(path, DEFAULT_EXTENSIONS),
            # Yields once nothing changed for quiet_ms, or after 20 x that in a long burst.
            step=quiet_ms,
            debounce=20 * quiet_ms,
            stop_event=self._stop,
            # An empty set now and then: a folder due waits for its batch, not for a change.
            rust_timeout=max(quiet_ms, 500),
            yield_on_timeout=True,
            ignore_permission_denied=True,
        )
        try:
            async for batch in changes:
                for _change, path in batch:
                    for folder in folders:
                        if Path(path).is_relative_to(folder.path):
                            folder.due = True
                await self._queue_due(folders)
        except Exception:
            # The watcher itself failed (a watched folder removed, inotify limits): nothing
            # is followed any more, which is said loudly; the API goes on.
            log.exception("WATCH_DIRS: the file watcher stopped")

    async def _queue_due(self, folders: Sequence[_Folder]) -> None:
        for folder in folders:
            if not folder.due or self._stop.is_set() or not await self._idle(folder):
                continue
            request = FolderIndexRequest(
                path=str(folder.path), collection=self.collection, sync=True
            )
            try:
                queued = await self.indexing.queue_folder(request)
            except Exception as exc:
                log.warning("WATCH_DIRS: %s not queued for now (%s)", folder.path, exc)
                continue
            folder.due = False
            if queued.queued:
                folder.batch = queued.batch_id
            self.queued.append(queued.batch_id)
            log.info(
                "%s queued in %s: batch %s, %d new, %d changed, %d unchanged, %d moved, %d removed",
                folder.path,
                queued.collection,
                queued.batch_id,
                queued.new,
                queued.changed,
                queued.unchanged,
                queued.moved,
                queued.removed,
            )

    async def _idle(self, folder: _Folder) -> bool:
        """Whether the folder's last batch is finished (or gone, or there was none)."""
        if folder.batch is None:
            return True
        try:
            status = await self.queue.batch_status(folder.batch)
        except Exception:
            return False
        if status is None or status.finished:
            folder.batch = None
            return True
        return False
