"""Qdrant Edge back-end: embedded shards on local disk, owned by one process.

Layout under ``root`` (``DATA_DIR/index``)::

    .lock                       advisory lock (flock): one process opens the index
    <collection>/full/          one EdgeShard: image points
    <collection>/window/        one EdgeShard: window points (payload index on parent_id)

Measured facts about qdrant-edge-py 0.9.0 that shape this module (2 cores, Python 3.11):

- **Every call holds the GIL for its whole duration.** A pure-Python thread ticking every
  millisecond stalled for 141 ms during a 140 ms ``query_batch`` and for 7.1 s during a 7.1 s
  ``optimize()``. Running a call in a worker thread therefore keeps the event loop from
  *starting* it inline, but not from being frozen while it runs. Queries and upserts issued
  while ``optimize()`` runs in another thread do not deadlock: they wait until it returns.
  Consequences: all Edge calls go through ONE worker thread (a second thread would only
  contend for the GIL; it also orders the calls, so no shard needs a read/write lock there),
  and the HNSW build runs in a **child process** by default (see below).
- ``optimize()`` of 20 000 × 512-d points took 40 s (the next 20 000: 27 s); a batch of 20
  queries went from 41 ms (brute force) to 26 ms. Upserting 20 000 × 512 took 1-2 s, reopening
  a shard 0.1 s, flush + close 0.5 s.
- A second ``EdgeShard.load`` of an open shard fails with ``Can't init WAL: Kind(WouldBlock)``
  (from the same or another process) - and the failed attempt is not always harmless: when
  the keyword payload index had been created after points existed, and points were then
  deleted by filter, the owner's ``flush()`` fails for good afterwards ("Tracker journal ...
  is shorter than expected"). So this module takes its own ``flock`` on ``root/.lock``
  *before* touching any shard, and a second store fails fast with :class:`StoreLocked`
  without Edge ever opening the files. (Our shards get that index at creation.)

Out-of-process optimize (the default): under the shard's write lock the shard is flushed and
its directory copied to ``.<kind>.optimizing``; writes then resume and are also kept in a
journal; a child ``python -c`` loads the copy, runs ``optimize()``, flushes and exits; the
shard is then swapped (close, rename, load the copy, replay the journal, flush). Reads only
wait for the swap itself. With 10 000 × 512-d points the event loop's longest stall during a
whole optimize was 0.17 s (548 searches served meanwhile), against 11.7 s in thread mode.
The price: a full copy of the shard per optimize, twice its disk space meanwhile, and the
child's memory. A crash at any point leaves either the old shard or the finished swap;
:func:`_recover` tidies up on the next open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchValue,
    Memory,
    PayloadSchemaType,
    Point,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    SearchParams,
    UpdateOperation,
)

from ..errors import BadRequest, ImgSearchError
from ..ids import validate_collection
from ._util import (
    PARENT_ID,
    check_target,
    common_dim,
    dimension_error,
    in_request_order,
    vector_list,
    vector_lists,
)
from .base import KINDS, Hit, Kind, PointRecord, VectorStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``none``: float32 vectors memory-mapped and pre-read into RAM (Edge's default).
#: ``int8``: Qdrant's scalar quantization — an int8 copy of every vector (a quarter of the
#: size) pinned in RAM and searched first; the float32 originals stay on disk, read only to
#: rescore the best candidates.
Quantization = Literal["none", "int8"]
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "int8")

_LOCK_FILE = ".lock"
_CONFIG_FILE = "edge_config.json"  # written by EdgeShard.create: marks a shard directory

# Run by the child process of an out-of-process optimize. It imports qdrant_edge only (fast),
# lowers its own priority so the search process keeps the CPU it needs.
_OPTIMIZE_CHILD = """\
import os, sys
from qdrant_edge import EdgeShard
os.nice(10)
shard = EdgeShard.load(sys.argv[1])
try:
    shard.optimize()
    shard.flush()
finally:
    shard.close()
"""


class StoreLocked(ImgSearchError):
    """The index directory is open in another process (Qdrant Edge allows one)."""

    status_code = 503
    code = "store_locked"

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(eq=False)
class _Shard:
    collection: str
    kind: Kind
    path: Path
    handle: EdgeShard
    #: Held by writes, and by an optimize while it flushes and copies the directory.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    added_since_optimize: int = 0
    #: Writes made while a copy is being optimized, replayed onto it at the swap.
    #: Only touched from the Edge worker thread.
    journal: list[UpdateOperation] | None = None
    optimizing: asyncio.Task[None] | None = None
    child: asyncio.subprocess.Process | None = None


class EdgeVectorStore(VectorStore):
    """Vector store on embedded Qdrant Edge shards under ``root``.

    Shards open lazily on first use and stay open until :meth:`close`. After an upsert,
    once ``optimize_threshold`` points were added to a shard since its last optimize, one
    background optimize of that shard starts (``None`` turns that off). With
    ``optimize_in_subprocess=False`` the HNSW build runs in the worker thread instead and
    freezes the process for its duration (see the module docstring).

    ``full_scan_threshold_kb`` and ``indexing_threshold_kb`` are Qdrant's segment sizes
    below which search is brute force and no HNSW graph is built (defaults 10 000 KB,
    about 5 000 vectors of 512 floats).

    ``quantization="int8"`` creates *new* shards with scalar quantization (see
    :data:`Quantization`; shards that exist keep the configuration they were created
    with). ``hnsw_ef`` is the search-time beam width (``None``: Qdrant's default);
    ``oversampling`` fetches that many times ``limit`` candidates by their int8 scores
    before rescoring them with the float32 vectors. Figures for 1M vectors in
    benchmarks/README.md ("Throughput") and deploy/CAPACITY.md.
    """

    def __init__(
        self,
        root: Path,
        *,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        full_scan_threshold_kb: int = 10_000,
        indexing_threshold_kb: int | None = None,
        optimize_threshold: int | None = 20_000,
        optimize_in_subprocess: bool = True,
        quantization: Quantization = "none",
        hnsw_ef: int | None = None,
        oversampling: float | None = None,
    ) -> None:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
        self.root = Path(root)
        self._quantization = quantization
        self._search_params = _search_params(quantization, hnsw_ef, oversampling)
        self._hnsw_m = hnsw_m
        self._hnsw_ef_construct = hnsw_ef_construct
        self._full_scan_threshold_kb = full_scan_threshold_kb
        self._indexing_threshold_kb = indexing_threshold_kb
        self._optimize_threshold = optimize_threshold
        self._optimize_in_subprocess = optimize_in_subprocess
        self._lock_fd = _acquire_lock(self.root)
        # One thread for every Edge call: the library holds the GIL anyway (measured), and
        # one thread orders the calls, so swaps and closes never race a query.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")
        self._shards: dict[tuple[str, Kind], _Shard] = {}
        self._open_locks: dict[tuple[str, Kind], asyncio.Lock] = {}
        self._closing = False
        self._closed = False

    # --- configuration ------------------------------------------------------------------

    def edge_config(self, dim: int) -> EdgeConfig:
        """The configuration a new shard of vectors of ``dim`` floats is created with."""
        optimizers = (
            EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold_kb)
            if self._indexing_threshold_kb is not None
            else None
        )
        quantized = self._quantization == "int8"
        return EdgeConfig(
            vectors=EdgeVectorParams(
                size=dim,
                distance=Distance.Cosine,
                # The originals stay on disk, not pre-read ("cold"): only the candidates a
                # query rescores are read. The int8 copy is what the graph walk reads.
                memory=Memory.Cold if quantized else None,
                quantization_config=(
                    ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, memory=Memory.Pinned)
                    if quantized
                    else None
                ),
            ),
            hnsw_config=HnswIndexConfig(
                m=self._hnsw_m,
                ef_construct=self._hnsw_ef_construct,
                full_scan_threshold=self._full_scan_threshold_kb,
            ),
            optimizers=optimizers,
        )

    # --- the interface --------------------------------------------------------------------

    async def upsert(self, collection: str, kind: Kind, points: Sequence[PointRecord]) -> None:
        check_target(collection, kind)
        if not points:
            return
        vectors = [vector_list(p.vector) for p in points]
        dim = common_dim(vectors)
        sh = await self._shard(collection, kind, create_dim=dim)
        assert sh is not None

        def build() -> UpdateOperation:
            pairs = zip(points, vectors, strict=True)
            return UpdateOperation.upsert_points(
                [Point(id=p.id, vector=v, payload=p.payload) for p, v in pairs]
            )

        async with sh.write_lock:
            await self._call(self._apply, sh, build)
        sh.added_since_optimize += len(points)
        self._maybe_start_optimize(sh)

    async def search(
        self,
        collection: str,
        kind: Kind,
        vectors: Sequence[Sequence[float] | np.ndarray],
        limit: int,
    ) -> list[list[Hit]]:
        check_target(collection, kind)
        queries = vector_lists(vectors)
        if not queries:
            return []
        sh = await self._shard(collection, kind)
        if sh is None or limit < 1:
            return [[] for _ in queries]

        def run() -> list[list[Hit]]:
            batch = QueryBatchRequest(
                [
                    QueryRequest(
                        limit=limit,
                        query=Query.Nearest(q),
                        with_payload=True,
                        params=self._search_params,
                    )
                    for q in queries
                ]
            )
            return [
                [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in hits]
                for hits in sh.handle.query_batch(batch)
            ]

        return await self._call(run)

    async def retrieve(self, collection: str, kind: Kind, ids: Sequence[str]) -> list[Hit]:
        check_target(collection, kind)
        if not ids:
            return []
        sh = await self._shard(collection, kind)
        if sh is None:
            return []

        def run() -> list[Hit]:
            # with_vector must be passed: the 0.9.0 binding requires it despite its stub.
            records = sh.handle.retrieve(list(ids), True, False)
            return [Hit(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]

        return in_request_order(await self._call(run), ids)

    async def count(self, collection: str, kind: Kind) -> int:
        check_target(collection, kind)
        sh = await self._shard(collection, kind)
        if sh is None:
            return 0
        return await self._call(lambda: sh.handle.count(CountRequest(exact=True)))

    async def delete_image(self, collection: str, image_id: str) -> None:
        validate_collection(collection)
        full = await self._shard(collection, "full")
        if full is not None:
            async with full.write_lock:
                await self._call(
                    self._apply, full, lambda: UpdateOperation.delete_points([image_id])
                )
        windows = await self._shard(collection, "window")
        if windows is not None:
            by_parent = Filter(must=[FieldCondition(key=PARENT_ID, match=MatchValue(image_id))])
            async with windows.write_lock:
                await self._call(
                    self._apply,
                    windows,
                    lambda: UpdateOperation.delete_points_by_filter(by_parent),
                )

    async def collections(self) -> list[str]:
        self._check_open()
        return await asyncio.to_thread(self._list_collections)

    async def optimize(self) -> None:
        """Build the HNSW index of every shard (waits for a running background build first)."""
        for name in await self.collections():
            for kind in KINDS:
                sh = await self._shard(name, kind)
                if sh is None:
                    continue
                if sh.optimizing is not None and not sh.optimizing.done():
                    await asyncio.wait([sh.optimizing])
                sh.optimizing = asyncio.create_task(
                    self._optimize(sh), name=f"optimize {name}/{kind}"
                )
                await sh.optimizing

    async def close(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True
        for sh in self._shards.values():
            if sh.child is not None and sh.child.returncode is None:
                sh.child.kill()  # the copy it works on is discarded; the shard is untouched
        running = [sh.optimizing for sh in self._shards.values() if sh.optimizing is not None]
        if running:
            # A thread-mode optimize cannot be interrupted; this waits for it.
            await asyncio.wait(running)
        try:
            await self._exec(self._close_all)
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)
            _release_lock(self._lock_fd)

    # --- extra, Edge only -------------------------------------------------------------------

    async def shard_info(self, collection: str, kind: Kind) -> dict[str, int] | None:
        """Points, indexed vectors and segments of one shard (``None`` if it does not exist)."""
        check_target(collection, kind)
        sh = await self._shard(collection, kind)
        if sh is None:
            return None

        def run() -> dict[str, int]:
            info = sh.handle.info()
            return {
                "points": info.points_count,
                "indexed_vectors": info.indexed_vectors_count,
                "segments": info.segments_count,
            }

        return await self._call(run)

    # --- shards -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an Edge call on the Edge thread; refuse once closing, translate errors."""
        self._check_open()
        try:
            return await self._exec(fn, *args)
        except ImgSearchError:
            raise
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def _exec(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run on the Edge thread even while closing (internal steps that must finish)."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _check_open(self) -> None:
        if self._closing or self._closed:
            raise RuntimeError("the vector store is closed")

    async def _shard(
        self, collection: str, kind: Kind, *, create_dim: int | None = None
    ) -> _Shard | None:
        """The open shard; opened from disk, or created when ``create_dim`` is given."""
        key = (collection, kind)
        sh = self._shards.get(key)
        if sh is not None:
            return sh
        # One opener per shard: two concurrent first upserts must not both create it.
        lock = self._open_locks.setdefault(key, asyncio.Lock())
        async with lock:
            sh = self._shards.get(key)
            if sh is not None:
                return sh
            return await self._call(self._open_or_create, collection, kind, create_dim)

    def _open_or_create(self, collection: str, kind: Kind, create_dim: int | None) -> _Shard | None:
        # Registered here, on the Edge thread, so a close() queued behind this call sees it.
        path = self.root / collection / kind
        _recover(path)
        if (path / _CONFIG_FILE).exists():
            handle = EdgeShard.load(str(path))
            info = handle.info()
            unindexed = info.points_count - info.indexed_vectors_count
        elif create_dim is None:
            return None
        else:
            handle = EdgeShard.create(str(path), self.edge_config(create_dim))
            if kind == "window":
                index = UpdateOperation.create_field_index(PARENT_ID, PayloadSchemaType.Keyword)
                handle.update(index)
            log.info("created Edge shard %s (dim %d)", path, create_dim)
            unindexed = 0
        sh = _Shard(collection, kind, path, handle, added_since_optimize=unindexed)
        self._shards[(collection, kind)] = sh
        return sh

    @staticmethod
    def _apply(sh: _Shard, build: Callable[[], UpdateOperation]) -> None:
        op = build()
        sh.handle.update(op)
        if sh.journal is not None:
            sh.journal.append(op)

    def _list_collections(self) -> list[str]:
        names = []
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                try:
                    validate_collection(entry.name)
                except ImgSearchError:
                    continue
                if any((entry / kind / _CONFIG_FILE).exists() for kind in KINDS):
                    names.append(entry.name)
        return sorted(names)

    def _close_all(self) -> None:
        failed: list[str] = []
        for sh in self._shards.values():
            try:
                sh.handle.flush()
            except Exception:
                log.exception("flushing Edge shard %s failed", sh.path)
                failed.append(f"{sh.collection}/{sh.kind}")
            sh.handle.close()
        self._shards.clear()
        if failed:
            raise ImgSearchError(f"flushing shards failed: {', '.join(failed)}")

    # --- optimize -----------------------------------------------------------------------------

    def _maybe_start_optimize(self, sh: _Shard) -> None:
        threshold = self._optimize_threshold
        if threshold is None or self._closing or sh.added_since_optimize < threshold:
            return
        if sh.optimizing is not None and not sh.optimizing.done():
            return  # one at a time; points added meanwhile count towards the next
        sh.optimizing = asyncio.create_task(
            self._optimize_in_background(sh), name=f"optimize {sh.collection}/{sh.kind}"
        )

    async def _optimize_in_background(self, sh: _Shard) -> None:
        try:
            await self._optimize(sh)
        except Exception:
            log.exception("background optimize of %s/%s failed", sh.collection, sh.kind)

    async def _optimize(self, sh: _Shard) -> None:
        if self._closing:
            return
        started = time.monotonic()
        added = sh.added_since_optimize
        # Reset first: points written meanwhile count towards the next run. A failed run is
        # not retried before another threshold's worth of points (no copy-and-fail loop).
        sh.added_since_optimize = 0
        if self._optimize_in_subprocess:
            if not await self._optimize_in_child(sh):
                return
        else:
            await self._call(lambda: sh.handle.optimize())
        elapsed = time.monotonic() - started
        log.info("optimized %s/%s (+%d points) in %.1f s", sh.collection, sh.kind, added, elapsed)

    async def _optimize_in_child(self, sh: _Shard) -> bool:
        work = sh.path.with_name(f".{sh.kind}.optimizing")
        async with sh.write_lock:
            if self._closing:
                return False
            await self._call(self._start_journal, sh)
            try:
                # Reads go on meanwhile (on the Edge thread); writes wait for the lock.
                await asyncio.to_thread(_copy_shard, sh.path, work)
            except BaseException:
                await asyncio.shield(self._exec(self._discard, sh, work))
                raise
        ok = False
        try:
            if self._closing:
                return False
            sh.child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _OPTIMIZE_CHILD,
                str(work),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await sh.child.communicate()
            rc = sh.child.returncode
            sh.child = None
            ok = rc == 0 and not self._closing
            if rc != 0 and not self._closing:
                tail = stderr.decode(errors="replace")[-2000:]
                log.error("optimize child for %s exited with %s: %s", sh.path, rc, tail)
            return ok
        finally:
            # Shielded: close() waits for this task, so a cancelled await must not skip it.
            finish = self._swap_in if ok else self._discard
            await asyncio.shield(self._exec(finish, sh, work))

    @staticmethod
    def _start_journal(sh: _Shard) -> None:
        sh.handle.flush()  # the copy must hold everything written so far
        sh.journal = []

    @staticmethod
    def _discard(sh: _Shard, work: Path) -> None:
        sh.journal = None
        shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _swap_in(sh: _Shard, work: Path) -> None:
        """Replace the live shard by its optimized copy plus the writes made meanwhile."""
        old = sh.path.with_name(f".{sh.kind}.old")
        journal = sh.journal or []
        sh.handle.close()
        # From here until ``old`` is renamed away, a crash restores ``old`` (see _recover).
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


def _search_params(
    quantization: Quantization, hnsw_ef: int | None, oversampling: float | None
) -> SearchParams | None:
    """Search parameters of every query (``None``: Qdrant's defaults)."""
    quant = None
    if quantization == "int8" and oversampling is not None:
        quant = QuantizationSearchParams(rescore=True, oversampling=oversampling)
    if hnsw_ef is None and quant is None:
        return None
    return SearchParams(hnsw_ef=hnsw_ef, quantization=quant)


def _copy_shard(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def _recover(path: Path) -> None:
    """Undo what an interrupted out-of-process optimize left next to shard ``path``."""
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        # The swap did not finish (the journal may not be in the copy): the old shard wins.
        log.warning("restoring %s after an interrupted optimize", path)
        shutil.rmtree(path, ignore_errors=True)
        old.rename(path)
    for leftover in (".optimizing", ".trash"):
        shutil.rmtree(path.with_name(f".{path.name}{leftover}"), ignore_errors=True)


def _translate(exc: Exception) -> Exception:
    """Edge raises plain ``Exception``s; map the ones a caller can act on."""
    text = str(exc)
    if "WouldBlock" in text:
        return StoreLocked(
            "the vector index is open in another process; Qdrant Edge allows only one"
        )
    if "Vector dimension error" in text:
        return dimension_error(text.split("Vector dimension error:", 1)[1].strip())
    if "as UUID" in text:
        return BadRequest("point ids must be UUIDs")
    return exc


def _acquire_lock(root: Path) -> int:
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


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
