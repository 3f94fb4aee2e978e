"""When acknowledged writes reach the disk: each written shard is flushed a few seconds
after its first unflushed write.

Measured with qdrant-edge-py 0.9.0 (``strace``): ``update()`` returns once the write is
appended to the shard's write-ahead log, a memory-mapped file, with no ``msync`` or
``fsync``; only ``flush()`` syncs the log and the segments. Pages written into a mapping
live in the kernel's page cache, which outlives the process: **a process that dies
(SIGKILL, the OOM killer, a crash) loses no acknowledged write** — the shard replays its
log when it is loaded (``tests/common/vectorstore/test_edge_durability.py`` kills writers
at random moments, optimizes in flight). A **power loss or a kernel crash** loses what the
kernel had not written back; before this module only an optimize (every
``EDGE_OPTIMIZE_THRESHOLD`` points added to a shard) and ``close()`` flushed, so nothing
bounded that.

A flush is not cheap here (``benchmarks/edge_durability.py``, this machine's virtual disk,
2 000 images indexed, 15 windows each): about a dozen syncs, 60-400 ms, **with the GIL held**
(as every Edge call, see :mod:`.calls`), so the event loop stalls meanwhile. A flush before
each acknowledgement would take the write path from ~300-1000 to ~10-80 images/s (p50
1-2 ms → 11-110 ms per image; the machine was shared, so ranges of three runs). At 50 images/s
offered, flushing each written shard every second stalled the event loop 11-24 % more of the
time; every 5 s (``DEFAULT_FLUSH_INTERVAL_S``, Qdrant server's own ``flush_interval_sec``)
1-8 %, in stalls of up to 0.2-0.3 s, only while writes come in. So a power loss loses at
most about the last 5 s of acknowledged writes (plus a flush's duration).

A flush takes the shard's write lock (as a write does), so it never runs while an optimize
copies the shard's directory, and runs on the one Edge thread.
"""

from __future__ import annotations

import asyncio
import logging

from .calls import EdgeThread
from .shards import Shard

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)

#: Seconds from a shard's first unflushed write to its flush (see above for the trade).
DEFAULT_FLUSH_INTERVAL_S = 5.0


class Flusher:
    """Flushes the shards written to, ``interval_s`` after the first unflushed write
    (``None``: never by itself; ``close()`` still flushes). One task at a time, none while
    nothing waits to be flushed."""

    def __init__(self, edge: EdgeThread, interval_s: float | None) -> None:
        self._edge = edge
        self._interval_s = interval_s
        self._dirty: dict[int, Shard] = {}
        self._task: asyncio.Task[None] | None = None

    def written(self, sh: Shard) -> None:
        """``sh`` was written to (after the write returned): flush it soon."""
        if self._interval_s is None or self._edge.closing or sh.dropped:
            return
        self._dirty[id(sh)] = sh
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="flush edge shards")

    async def stop(self) -> None:
        """Cancel a pending flush and wait for it (the store is closing and flushes all)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        assert self._interval_s is not None
        while self._dirty and not self._edge.closing:
            await asyncio.sleep(self._interval_s)
            dirty, self._dirty = self._dirty, {}
            for key, sh in dirty.items():
                if self._edge.closing:
                    return
                if sh.dropped:
                    continue  # its collection is gone; the handle is (being) closed
                try:
                    async with sh.write_lock:
                        # The handle as it is then: an optimize may have swapped it; a drop
                        # may have closed it (checked on the Edge thread, where drops run).
                        await self._edge.call(lambda sh=sh: sh.dropped or sh.handle.flush())
                except Exception:
                    if self._edge.closing:
                        return  # close() flushes every shard itself
                    # Tried again with the next round.
                    log.exception("flushing Edge shard %s failed", sh.path)
                    self._dirty.setdefault(key, sh)
