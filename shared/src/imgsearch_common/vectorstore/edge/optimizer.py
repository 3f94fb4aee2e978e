"""When and how a shard's HNSW index is built: the optimiser.

Measured with qdrant-edge-py 0.9.0 (2 cores, Python 3.11): ``optimize()`` of 20 000 × 512-d
points took 40 s (the next 20 000: 27 s); a batch of 20 queries went from 41 ms (brute
force) to 26 ms. Upserting 20 000 × 512 took 1-2 s, reopening a shard 0.1 s, flush + close
0.5 s. And ``optimize()`` holds the GIL throughout (see :mod:`.calls`), so in the Edge
thread it freezes the whole process.

Out-of-process optimize (the default): under the shard's write lock the shard is flushed and
its directory copied to ``.<kind>.optimizing``; writes then resume and are also kept in a
journal; a child ``python -c`` loads the copy, runs ``optimize()``, flushes and exits; the
shard is then swapped (close, rename, load the copy, replay the journal, flush). Reads only
wait for the swap itself. With 10 000 × 512-d points the event loop's longest stall during a
whole optimize was 0.17 s (548 searches served meanwhile), against 11.7 s in thread mode.
The price: a full copy of the shard per optimize, twice its disk space meanwhile, and the
child's memory. A crash at any point leaves either the old shard or the finished swap;
:func:`recover` tidies up on the next open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from qdrant_edge import EdgeShard

from .calls import EdgeThread
from .shards import Shard

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)

# Run by the child process of an out-of-process optimize. It imports qdrant_edge only (fast),
# lowers its own priority so the search process keeps the CPU it needs, and dies with its
# parent: on Linux the kernel sends it SIGKILL when the parent goes (PR_SET_PDEATHSIG), and a
# parent already gone before that (its pid, argv[2], is no longer the parent) ends it at once.
# Otherwise a SIGKILL of the index owner leaves it writing into a copy that the next start
# deletes, and perhaps beside a second optimize of the same shard.
_OPTIMIZE_CHILD = """\
import os, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[2]):
    sys.exit(1)
from qdrant_edge import EdgeShard
os.nice(10)
shard = EdgeShard.load(sys.argv[1])
try:
    shard.optimize()
    shard.flush()
finally:
    shard.close()
"""


class Optimizer:
    """Optimizes shards through ``edge``, one run per shard at a time.

    After ``threshold`` points were added to a shard since its last optimize, one
    background run starts (``None``: never by itself). ``in_subprocess=False`` builds in
    the Edge thread instead. Nothing new starts once ``edge`` is closing.
    """

    def __init__(self, edge: EdgeThread, *, threshold: int | None, in_subprocess: bool) -> None:
        self._edge = edge
        self._threshold = threshold
        self._in_subprocess = in_subprocess

    def maybe_start(self, sh: Shard) -> None:
        """Start a background optimize of ``sh`` if enough points were added (after writes)."""
        threshold = self._threshold
        if threshold is None or self._edge.closing or sh.dropped:
            return
        if sh.added_since_optimize < threshold:
            return
        if sh.optimizing is not None and not sh.optimizing.done():
            return  # one at a time; points added meanwhile count towards the next
        sh.optimizing = asyncio.create_task(
            self._optimize_in_background(sh), name=f"optimize {sh.collection}/{sh.kind}"
        )

    async def optimize_now(self, sh: Shard) -> None:
        """Optimize ``sh`` (after the run in progress, if any); errors propagate."""
        if sh.optimizing is not None and not sh.optimizing.done():
            await asyncio.wait([sh.optimizing])
        sh.optimizing = asyncio.create_task(
            self._optimize(sh), name=f"optimize {sh.collection}/{sh.kind}"
        )
        await sh.optimizing

    async def stop(self, shards: Iterable[Shard]) -> None:
        """Kill running children and wait for every run to end (``edge`` is closing, or
        the shards were dropped: runs that see either start nothing more)."""
        listed = list(shards)  # walked twice
        for sh in listed:
            if sh.child is not None and sh.child.returncode is None:
                sh.child.kill()  # the copy it works on is discarded; the shard is untouched
        running = [sh.optimizing for sh in listed if sh.optimizing is not None]
        if running:
            # A thread-mode optimize cannot be interrupted; this waits for it.
            await asyncio.wait(running)

    async def _optimize_in_background(self, sh: Shard) -> None:
        try:
            await self._optimize(sh)
        except Exception:
            log.exception("background optimize of %s/%s failed", sh.collection, sh.kind)

    async def _optimize(self, sh: Shard) -> None:
        if self._edge.closing or sh.dropped:
            return
        started = time.monotonic()
        added = sh.added_since_optimize
        # Reset first: points written meanwhile count towards the next run. A failed run is
        # not retried before another threshold's worth of points (no copy-and-fail loop).
        sh.added_since_optimize = 0
        if self._in_subprocess:
            if not await self._optimize_in_child(sh):
                return
        else:
            await self._edge.call(lambda: None if sh.dropped else sh.handle.optimize())
        elapsed = time.monotonic() - started
        log.info("optimized %s/%s (+%d points) in %.1f s", sh.collection, sh.kind, added, elapsed)

    async def _optimize_in_child(self, sh: Shard) -> bool:
        work = sh.path.with_name(f".{sh.kind}.optimizing")
        async with sh.write_lock:
            if self._edge.closing or sh.dropped:
                return False
            await self._edge.call(_start_journal, sh)
            try:
                # Reads go on meanwhile (on the Edge thread); writes wait for the lock.
                await asyncio.to_thread(_copy_shard, sh.path, work)
            except BaseException:
                await asyncio.shield(self._edge.run(_discard, sh, work))
                raise
        ok = False
        try:
            if self._edge.closing or sh.dropped:
                return False
            sh.child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _OPTIMIZE_CHILD,
                str(work),
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await sh.child.communicate()
            rc = sh.child.returncode
            sh.child = None
            ok = rc == 0 and not self._edge.closing and not sh.dropped
            if rc != 0 and not self._edge.closing and not sh.dropped:
                tail = stderr.decode(errors="replace")[-2000:]
                log.error("optimize child for %s exited with %s: %s", sh.path, rc, tail)
            return ok
        finally:
            # Shielded: close() waits for this task, so a cancelled await must not skip it.
            finish = _swap_in if ok else _discard
            await asyncio.shield(self._edge.run(finish, sh, work))


# --- steps on the Edge thread -----------------------------------------------------------------


def _start_journal(sh: Shard) -> None:
    sh.handle.flush()  # the copy must hold everything written so far
    sh.journal = []


def _discard(sh: Shard, work: Path) -> None:
    sh.journal = None
    shutil.rmtree(work, ignore_errors=True)


def _swap_in(sh: Shard, work: Path) -> None:
    """Replace the live shard by its optimized copy plus the writes made meanwhile."""
    old = sh.path.with_name(f".{sh.kind}.old")
    journal = sh.journal or []
    sh.handle.close()
    # From here until ``old`` is renamed away, a crash restores ``old`` (see recover).
    sh.path.rename(old)
    handle: EdgeShard | None = None
    try:
        work.rename(sh.path)
        handle = EdgeShard.load(str(sh.path))
        for op in journal:
            handle.update(op)
        handle.flush()
    except Exception:
        log.exception("swapping in the optimized copy of %s failed; keeping the old one", old)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()
        shutil.rmtree(sh.path, ignore_errors=True)
        old.rename(sh.path)
        sh.handle = EdgeShard.load(str(sh.path))
        sh.journal = None
        raise
    sh.handle = handle
    sh.journal = None
    trash = sh.path.with_name(f".{sh.kind}.trash")
    old.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _copy_shard(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def recover(path: Path) -> None:
    """Undo what an interrupted out-of-process optimize left next to shard ``path``.

    Call before opening the shard, on the Edge thread.
    """
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        # The swap did not finish (the journal may not be in the copy): the old shard wins.
        log.warning("restoring %s after an interrupted optimize", path)
        shutil.rmtree(path, ignore_errors=True)
        old.rename(path)
    for leftover in (".optimizing", ".trash"):
        shutil.rmtree(path.with_name(f".{path.name}{leftover}"), ignore_errors=True)
