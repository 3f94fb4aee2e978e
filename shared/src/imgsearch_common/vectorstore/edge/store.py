"""The Edge back-end's :class:`VectorStore`: the interface on shards, and their registry.

It composes the parts of this package: the index lock (:mod:`.lock`), the one Edge thread
every call runs on (:mod:`.calls`), the shards (:mod:`.shards`) and the optimiser
(:mod:`.optimizer`).

Names: a call's collection is a logical name or a physical one (``NAME.rN``, see
:mod:`imgsearch_common.ids`); its points live in a *stored* collection, the directory of
its shards: a logical name's alias target (the alias file, :mod:`.names`, read at open),
else the plain ``NAME``. Reads resolve the name **on the Edge thread, in the same step as
the query**, and :meth:`EdgeVectorStore.switch_alias` rewrites the alias file and the
mapping in one step there too: a search racing a switch answers from the old collection
or the new one, never neither. A write resolves before it waits for its shard's lock: one
racing a switch may land in the old collection (a reindex carries those over).

Dropping a stored collection marks its open shards dropped, stops their optimizes, then on
the Edge thread closes them, forgets them, removes an alias pointing at it and renames the
directory away in one step (a crash leaves a hidden ``.dropped-*`` directory, deleted at
the next open), and deletes it. Calls holding a dropped shard see the mark on the Edge
thread: reads answer empty, writes go round again and create the collection anew; openers
wait for the drop to finish.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_edge import (
    CountRequest,
    EdgeConfig,
    FieldCondition,
    Filter,
    MatchValue,
    Point,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    Record,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from ...errors import BadRequest
from ...ids import logical_name, validate_physical
from ...payloads import PARENT_ID
from .._util import (
    check_alias,
    check_find,
    check_target,
    in_request_order,
    physical_of,
    search_queries,
    storage_of,
    upsert_vectors,
)
from ..base import KINDS, Hit, Kind, PointRecord, VectorStore
from .calls import EdgeThread
from .flusher import DEFAULT_FLUSH_INTERVAL_S, Flusher
from .lock import acquire_lock, release_lock
from .names import RECORD_FILE, load_aliases, read_record, save_aliases, write_record
from .optimizer import Optimizer, recover
from .shards import (
    CONFIG_FILE,
    DROPPED_PREFIX,
    QUANTIZATIONS,
    Quantization,
    Shard,
    ShardSettings,
    apply,
    close_shards,
    list_collections,
    list_stored,
    open_shard,
)

T = TypeVar("T")

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)


class EdgeVectorStore(VectorStore):
    """Vector store on embedded Qdrant Edge shards under ``root``.

    Shards open lazily on first use and stay open until :meth:`close`. After an upsert,
    once ``optimize_threshold`` points were added to a shard since its last optimize, one
    background optimize of that shard starts (``None`` turns that off). With
    ``optimize_in_subprocess=False`` the HNSW build runs in the worker thread instead and
    freezes the process for its duration (see :mod:`.optimizer`).

    ``full_scan_threshold_kb`` and ``indexing_threshold_kb`` are Qdrant's segment sizes
    below which search is brute force and no HNSW graph is built (defaults 10 000 KB,
    about 5 000 vectors of 512 floats).

    ``quantization="int8"`` creates *new* shards with scalar quantization (see
    :data:`Quantization`; shards that exist keep the configuration they were created
    with). ``hnsw_ef`` is the search-time beam width (``None``: Qdrant's default);
    ``oversampling`` fetches that many times ``limit`` candidates by their int8 scores
    before rescoring them with the float32 vectors. Figures for 1M vectors in
    benchmarks/README.md ("Throughput") and deploy/CAPACITY.md.

    Durability (see :mod:`.flusher`): an acknowledged write survives the process's death;
    a power loss may lose the writes of the last ``flush_interval_s`` (each written shard
    is flushed that long after its first unflushed write; ``None``: only by optimizes and
    :meth:`close`).
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
        flush_interval_s: float | None = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
        self.root = Path(root)
        self._settings = ShardSettings(
            hnsw_m=hnsw_m,
            hnsw_ef_construct=hnsw_ef_construct,
            full_scan_threshold_kb=full_scan_threshold_kb,
            indexing_threshold_kb=indexing_threshold_kb,
            quantization=quantization,
        )
        self._search_params = _search_params(quantization, hnsw_ef, oversampling)
        # Locked before anything else touches the directory (see .lock for why).
        self._lock_fd = acquire_lock(self.root)
        try:
            _delete_dropped(self.root)
            #: logical name -> stored collection it reads. Replaced (never mutated) on the
            #: Edge thread only, so a reader there sees one mapping or the next.
            self._aliases: dict[str, str] = load_aliases(self.root)
        except BaseException:
            release_lock(self._lock_fd)
            raise
        self._edge = EdgeThread()
        self._optimizer = Optimizer(
            self._edge, threshold=optimize_threshold, in_subprocess=optimize_in_subprocess
        )
        self._flusher = Flusher(self._edge, flush_interval_s)
        #: Open shards by (stored collection, kind).
        self._shards: dict[tuple[str, Kind], Shard] = {}
        self._open_locks: dict[tuple[str, Kind], asyncio.Lock] = {}
        #: Stored collections being dropped (how many drops of each): reads answer empty,
        #: nothing opens them meanwhile.
        self._dropping: dict[str, int] = {}

    # --- configuration ------------------------------------------------------------------

    def edge_config(self, dim: int) -> EdgeConfig:
        """The configuration a new shard of vectors of ``dim`` floats is created with."""
        return self._settings.edge_config(dim)

    # --- the interface --------------------------------------------------------------------

    async def upsert(self, collection: str, kind: Kind, points: Sequence[PointRecord]) -> None:
        vectors, dim = upsert_vectors(collection, kind, points)
        if not vectors:
            return

        def build() -> UpdateOperation:
            pairs = zip(points, vectors, strict=True)
            return UpdateOperation.upsert_points(
                [Point(id=p.id, vector=v, payload=p.payload) for p, v in pairs]
            )

        while True:
            sh = await self._shard(self._stored(collection), kind, create_dim=dim)
            assert sh is not None
            async with sh.write_lock:
                written = await self._edge.call(apply, sh, build)
            if written:
                break
            # Dropped since we got it: the next round waits for the drop, then creates it.
        self._flusher.written(sh)
        sh.added_since_optimize += len(points)
        self._optimizer.maybe_start(sh)

    async def search(
        self,
        collection: str,
        kind: Kind,
        vectors: Sequence[Sequence[float] | np.ndarray],
        limit: int,
    ) -> list[list[Hit]]:
        queries = search_queries(collection, kind, vectors)
        if not queries:
            return []
        if limit < 1:
            return [[] for _ in queries]

        def run(sh: Shard) -> list[list[Hit]]:
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

        return await self._read(collection, kind, run, lambda: [[] for _ in queries])

    async def retrieve(self, collection: str, kind: Kind, ids: Sequence[str]) -> list[Hit]:
        check_target(collection, kind)
        if not ids:
            return []

        def run(sh: Shard) -> list[Hit]:
            # with_vector must be passed: the 0.9.0 binding requires it despite its stub.
            records = sh.handle.retrieve(list(ids), True, False)
            return [_hit(r) for r in records]

        return in_request_order(await self._read(collection, kind, run, list), ids)

    async def find(
        self, collection: str, kind: Kind, key: str, value: str, limit: int
    ) -> list[Hit]:
        check_find(collection, kind, key, value)
        if limit < 1:
            return []
        # On an array value (``paths``) Edge matches any element, as Qdrant does.
        request = ScrollRequest(
            limit=limit,
            filter=Filter(must=[FieldCondition(key=key, match=MatchValue(value))]),
            with_payload=True,
            with_vector=False,
        )

        def run(sh: Shard) -> list[Hit]:
            records, _ = sh.handle.scroll(request)
            return [_hit(r) for r in records]

        return await self._read(collection, kind, run, list)

    async def scroll(
        self,
        collection: str,
        kind: Kind,
        *,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        check_target(collection, kind)
        if limit < 1:
            raise ValueError(f"a page holds at least one point, not {limit}")
        # Edge scrolls in id order (UUIDs as 128-bit numbers); the next offset is the id
        # of the first point of the next page.
        request = ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=with_vectors
        )

        def run(sh: Shard) -> tuple[list[Hit], str | None]:
            records, next_offset = sh.handle.scroll(request)
            hits = [_hit(r, with_vector=with_vectors) for r in records]
            return hits, None if next_offset is None else str(next_offset)

        return await self._read(collection, kind, run, lambda: ([], None))

    async def set_payload(
        self, collection: str, kind: Kind, point_id: str, payload: dict[str, Any]
    ) -> bool:
        check_target(collection, kind)
        sh = await self._shard(self._stored(collection), kind)
        if sh is None:
            return False

        def run() -> bool:
            # One step on the Edge thread: no delete can come between the check and the
            # write. Edge's overwrite of a missing point is an error, not a no-op.
            if sh.dropped or not sh.handle.retrieve([point_id], False, False):
                return False
            return apply(sh, lambda: UpdateOperation.overwrite_payload([point_id], payload))

        async with sh.write_lock:
            written = await self._edge.call(run)
        if written:
            self._flusher.written(sh)
        return written

    async def count(self, collection: str, kind: Kind) -> int:
        check_target(collection, kind)
        return await self._read(
            collection, kind, lambda sh: sh.handle.count(CountRequest(exact=True)), lambda: 0
        )

    async def delete_image(self, collection: str, image_id: str) -> None:
        stored = self._stored(collection)
        full = await self._shard(stored, "full")
        # A shard dropped meanwhile writes nothing (apply answers False): nothing to delete.
        if full is not None:
            async with full.write_lock:
                if await self._edge.call(
                    apply, full, lambda: UpdateOperation.delete_points([image_id])
                ):
                    self._flusher.written(full)
        windows = await self._shard(stored, "window")
        if windows is not None:
            by_parent = Filter(must=[FieldCondition(key=PARENT_ID, match=MatchValue(image_id))])
            async with windows.write_lock:
                if await self._edge.call(
                    apply,
                    windows,
                    lambda: UpdateOperation.delete_points_by_filter(by_parent),
                ):
                    self._flusher.written(windows)

    async def drop_collection(self, collection: str) -> bool:
        validate_physical(collection)
        self._edge.check_open()
        if collection == logical_name(collection):
            # The plain collection (shadowed, if an alias exists: a switch left it), then
            # the alias with its target in one step.
            target = self._aliases.get(collection)
            dropped = await self._drop_stored(collection, unalias=False)
            if target is not None:
                dropped |= await self._drop_stored(target, unalias=True)
            return dropped
        # A physical name: that collection; an alias reading it goes with it.
        return await self._drop_stored(storage_of(collection, {}), unalias=True)

    async def resolve(self, collection: str) -> str:
        validate_physical(collection)
        self._edge.check_open()
        return physical_of(self._stored(collection))

    async def switch_alias(self, logical: str, physical: str) -> str | None:
        stored = check_alias(logical, physical)

        def run() -> str | None:
            if stored != logical and not self._has_shard(stored):
                # As on a Qdrant server, where an alias needs a collection to point at.
                raise BadRequest(f"collection {physical!r} holds no points: nothing to switch to")
            old = self._aliases.get(logical)
            aliases = dict(self._aliases)
            if stored == logical:
                aliases.pop(logical, None)  # NAME.r0: reads go to the plain one again
            else:
                aliases[logical] = stored
            if aliases != self._aliases:
                save_aliases(self.root, aliases)  # durable before any search sees it
                self._aliases = aliases
                log.info("collection %s now reads %s (was %s)", logical, stored, old or logical)
            if old is not None:
                return old
            return physical_of(logical) if self._exists(logical) else None

        return await self._edge.call(run)

    async def get_record(self, collection: str) -> dict[str, Any] | None:
        validate_physical(collection)
        return await self._edge.call(
            lambda: read_record(self.root / storage_of(collection, self._aliases))
        )

    async def put_record(self, collection: str, record: dict[str, Any]) -> None:
        validate_physical(collection)
        stored = self._stored(collection)
        # Not while the collection is being dropped (the file would outlive the drop).
        locks = [self._open_locks.setdefault((stored, kind), asyncio.Lock()) for kind in KINDS]
        async with locks[0], locks[1]:
            await self._edge.call(write_record, self.root / stored, dict(record))

    async def collections(self) -> list[str]:
        self._edge.check_open()
        plain = await asyncio.to_thread(list_collections, self.root)
        # Alias targets (NAME.rN) are not logical names: not listed on their own.
        return sorted({*plain, *self._aliases})

    async def optimize(self) -> None:
        """Build the HNSW index of every shard (waits for a running background build first)."""
        self._edge.check_open()
        for name in await asyncio.to_thread(list_stored, self.root):
            for kind in KINDS:
                sh = await self._shard(name, kind)
                if sh is None:
                    continue
                await self._optimizer.optimize_now(sh)

    async def close(self) -> None:
        if self._edge.closing:
            return
        self._edge.begin_close()
        await self._flusher.stop()
        await self._optimizer.stop(self._shards.values())
        try:
            await self._edge.run(self._close_all)
        finally:
            self._edge.shutdown()
            release_lock(self._lock_fd)

    # --- extra, Edge only -------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every open shard to disk and sync it (Edge's ``flush``: the WAL and the
        segments, ``msync``/``fsync``). Upserts do not wait for this (see the README,
        "Choices"): it is what a point needs to outlive a power loss, not a process death."""

        def run() -> None:
            for sh in list(self._shards.values()):
                sh.handle.flush()

        await self._edge.call(run)

    async def shard_info(self, collection: str, kind: Kind) -> dict[str, int] | None:
        """Points, indexed vectors and segments of one shard (``None`` if it does not exist)."""
        check_target(collection, kind)
        sh = await self._shard(self._stored(collection), kind)
        if sh is None:
            return None

        def run() -> dict[str, int]:
            info = sh.handle.info()
            return {
                "points": info.points_count,
                "indexed_vectors": info.indexed_vectors_count,
                "segments": info.segments_count,
            }

        return await self._edge.call(run)

    # --- the shard registry ---------------------------------------------------------------------

    def _stored(self, collection: str) -> str:
        """The stored collection ``collection`` names now (see the module's docstring)."""
        return storage_of(collection, self._aliases)

    async def _shard(
        self, collection: str, kind: Kind, *, create_dim: int | None = None
    ) -> Shard | None:
        """The open shard of a *stored* collection; opened from disk, or created when
        ``create_dim`` is given."""
        key = (collection, kind)
        sh = self._shards.get(key)
        if sh is not None and not sh.dropped and collection not in self._dropping:
            return sh
        # One opener per shard: two concurrent first upserts must not both create it. A
        # drop holds this lock until the dropped shard is closed and gone.
        lock = self._open_locks.setdefault(key, asyncio.Lock())
        async with lock:
            sh = self._shards.get(key)
            if sh is not None and not sh.dropped:
                return sh
            return await self._edge.call(self._open_or_create, collection, kind, create_dim)

    async def _read(
        self,
        collection: str,
        kind: Kind,
        run: Callable[[Shard], T],
        empty: Callable[[], T],
    ) -> T:
        """``run(shard)`` on the Edge thread, the name resolved there in the same step (a
        switch comes wholly before or after); ``empty()`` when the shard does not exist or
        is being dropped."""

        def step() -> T:
            stored = storage_of(collection, self._aliases)
            if stored in self._dropping:
                return empty()
            # Opened here if need be: the Edge thread orders it with every other opener.
            sh = self._open_or_create(stored, kind, None)
            if sh is None or sh.dropped:
                return empty()
            return run(sh)

        return await self._edge.call(step)

    def _open_or_create(self, collection: str, kind: Kind, create_dim: int | None) -> Shard | None:
        # Registered here, on the Edge thread, so a close() queued behind this call sees it.
        known = self._shards.get((collection, kind))
        if known is not None:
            return known  # a dropped one too: the caller sees the mark
        path = self.root / collection / kind
        recover(path)
        sh = open_shard(collection, kind, path, create_dim, self.edge_config)
        if sh is not None:
            self._shards[(collection, kind)] = sh
        return sh

    async def _drop_stored(self, stored: str, *, unalias: bool) -> bool:
        """Drop the stored collection ``stored`` (and, ``unalias``, the aliases reading it)."""
        keys = [(stored, kind) for kind in KINDS]
        full_lock, window_lock = (self._open_locks.setdefault(k, asyncio.Lock()) for k in keys)
        self._dropping[stored] = self._dropping.get(stored, 0) + 1
        try:
            # Holding both openers' locks: nobody opens (or creates) the shards meanwhile,
            # so no second handle of a directory being closed ever exists (see .lock).
            async with full_lock, window_lock:
                shards = [sh for k in keys if (sh := self._shards.get(k)) is not None]
                for sh in shards:
                    sh.dropped = True
                # Children killed, runs ended: nothing copies or swaps into the directory.
                await self._optimizer.stop(shards)
                existed, trash = await self._edge.call(self._drop_on_edge, stored, unalias)
        finally:
            self._dropping[stored] -= 1
            if not self._dropping[stored]:
                del self._dropping[stored]
        if trash is not None:
            await asyncio.to_thread(shutil.rmtree, trash, True)
        return existed

    def _drop_on_edge(self, stored: str, unalias: bool) -> tuple[bool, Path | None]:
        """Close and forget the shards of ``stored``, remove the aliases reading it, rename
        its directory away: one step on the Edge thread, so no call runs in between.
        Whether anything existed, and the renamed directory to delete."""
        existed = False
        for kind in KINDS:
            sh = self._shards.pop((stored, kind), None)
            if sh is None:
                continue
            existed = True
            sh.dropped = True
            try:
                sh.handle.close()  # no flush: its files are deleted next
            except Exception:
                log.exception("closing dropped Edge shard %s failed", sh.path)
        if unalias and stored in self._aliases.values():
            aliases = {k: v for k, v in self._aliases.items() if v != stored}
            save_aliases(self.root, aliases)
            self._aliases = aliases
            existed = True
        path = self.root / stored
        existed = existed or self._exists(stored)
        if not path.exists():
            return existed, None
        trash = self.root / f"{DROPPED_PREFIX}{stored}-{uuid.uuid4().hex}"
        path.rename(trash)
        log.info("dropped Edge collection %s", stored)
        return existed, trash

    def _exists(self, stored: str) -> bool:
        """Whether the stored collection has a shard or a record (open or on disk)."""
        return self._has_shard(stored) or (self.root / stored / RECORD_FILE).exists()

    def _has_shard(self, stored: str) -> bool:
        return any(
            (stored, kind) in self._shards or (self.root / stored / kind / CONFIG_FILE).exists()
            for kind in KINDS
        )

    def _close_all(self) -> None:
        try:
            close_shards(self._shards.values())
        finally:
            self._shards.clear()


def _hit(record: Record, *, with_vector: bool = False) -> Hit:
    """A retrieved point as a hit (score 0); its vector when asked for."""
    vector = None
    if with_vector:
        raw: Any = record.vector
        # One unnamed dense vector per point (see .shards): a list of floats.
        vector = [float(x) for x in raw] if raw is not None else None
    return Hit(id=str(record.id), score=0.0, payload=record.payload or {}, vector=vector)


def _delete_dropped(root: Path) -> None:
    """Delete what a drop interrupted by a crash left (its renamed directories)."""
    for entry in root.iterdir():
        if entry.name.startswith(DROPPED_PREFIX) and entry.is_dir():
            log.warning("deleting %s, left by an interrupted drop", entry)
            shutil.rmtree(entry, ignore_errors=True)


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
