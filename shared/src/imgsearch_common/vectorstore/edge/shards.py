"""One Edge shard per collection and kind: its record, its configuration, opening it.

Layout under the store's ``root``::

    <collection>/full/          one EdgeShard: image points (payload indexes on name,
                                filename, paths)
    <collection>/window/        one EdgeShard: window points (payload index on parent_id)
    <collection>/record.json    the collection's record (see :mod:`.names`)
    .dropped-<collection>-<hex>/  a dropped collection, renamed away, being deleted

``<collection>`` is a *stored* collection: a plain ``NAME`` or a revision ``NAME.rN``.

The functions here that touch a shard's handle run on the Edge thread (:mod:`.calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    HnswIndexConfig,
    Memory,
    PayloadSchemaType,
    ScalarQuantizationConfig,
    ScalarType,
    UpdateOperation,
)

from ...errors import ImgSearchError
from ...ids import validate_collection, validate_physical
from ...payloads import INDEXED_KEYS
from ..base import KINDS, Kind

# The back-end's one logger name, as before it was split into modules (log lines show it).
log = logging.getLogger(__package__)

#: ``none``: float32 vectors memory-mapped and pre-read into RAM (Edge's default).
#: ``int8``: Qdrant's scalar quantization — an int8 copy of every vector (a quarter of the
#: size) pinned in RAM and searched first; the float32 originals stay on disk, read only to
#: rescore the best candidates.
Quantization = Literal["none", "int8"]
QUANTIZATIONS: tuple[Quantization, ...] = ("none", "int8")

CONFIG_FILE = "edge_config.json"  # written by EdgeShard.create: marks a shard directory


@dataclass(frozen=True)
class ShardSettings:
    """What a *new* shard is created with; shards that exist keep their own."""

    hnsw_m: int
    hnsw_ef_construct: int
    full_scan_threshold_kb: int
    indexing_threshold_kb: int | None
    quantization: Quantization

    def edge_config(self, dim: int) -> EdgeConfig:
        """The configuration a new shard of vectors of ``dim`` floats is created with."""
        optimizers = (
            EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb)
            if self.indexing_threshold_kb is not None
            else None
        )
        quantized = self.quantization == "int8"
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
                m=self.hnsw_m,
                ef_construct=self.hnsw_ef_construct,
                full_scan_threshold=self.full_scan_threshold_kb,
            ),
            optimizers=optimizers,
        )


@dataclass(eq=False)
class Shard:
    """An open shard, with the state its writes and optimizes share."""

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
    #: Set when its collection is dropped: from then on nothing reads, writes, flushes or
    #: optimizes it (its handle is closed on the Edge thread right after). Calls that got
    #: the shard before see it there and answer empty, or open the collection again.
    dropped: bool = False


def open_shard(
    collection: str,
    kind: Kind,
    path: Path,
    create_dim: int | None,
    new_config: Callable[[int], EdgeConfig],
) -> Shard | None:
    """The shard at ``path``; created with ``new_config(create_dim)`` if it does not exist
    and ``create_dim`` is given, else ``None``. Edge thread only."""
    if (path / CONFIG_FILE).exists():
        handle = EdgeShard.load(str(path))
        info = handle.info()
        # Points a reopened shard never indexed count towards its next optimize.
        unindexed = info.points_count - info.indexed_vectors_count
    elif create_dim is None:
        return None
    else:
        handle = EdgeShard.create(str(path), new_config(create_dim))
        # Created while the shard is empty: see .lock for what a late index can break. Full
        # shards from before the name indexes have none, and never get them: found by a
        # scan (``EdgeVectorStore.find``).
        for key in INDEXED_KEYS[kind]:
            handle.update(UpdateOperation.create_field_index(key, PayloadSchemaType.Keyword))
        log.info("created Edge shard %s (dim %d)", path, create_dim)
        unindexed = 0
    return Shard(collection, kind, path, handle, added_since_optimize=unindexed)


def apply(sh: Shard, build: Callable[[], UpdateOperation]) -> bool:
    """Apply a write (built here, on the Edge thread); journal it while a copy is optimized.

    False, and nothing written, when the shard was dropped meanwhile."""
    if sh.dropped:
        return False
    op = build()
    sh.handle.update(op)
    if sh.journal is not None:
        sh.journal.append(op)
    return True


def close_shards(shards: Iterable[Shard]) -> None:
    """Flush and close every shard, all of them even if some flush fails. Edge thread only."""
    failed: list[str] = []
    for sh in shards:
        try:
            sh.handle.flush()
        except Exception:
            log.exception("flushing Edge shard %s failed", sh.path)
            failed.append(f"{sh.collection}/{sh.kind}")
        sh.handle.close()
    if failed:
        raise ImgSearchError(f"flushing shards failed: {', '.join(failed)}")


#: The name a dropped collection's directory is renamed to (hidden: not a collection name).
DROPPED_PREFIX = ".dropped-"


def list_collections(root: Path) -> list[str]:
    """Logical names of the plain collections under ``root`` that hold at least one
    shard, sorted (``NAME.rN`` revisions are not listed)."""
    return _list(root, validate_collection)


def list_stored(root: Path) -> list[str]:
    """Every stored collection under ``root`` that holds a shard: plain ones and
    revisions (``NAME.rN``), sorted."""
    return _list(root, validate_physical)


def _list(root: Path, validate: Callable[[str], str]) -> list[str]:
    names = []
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            try:
                validate(entry.name)
            except ImgSearchError:
                continue
            if any((entry / kind / CONFIG_FILE).exists() for kind in KINDS):
                names.append(entry.name)
    return sorted(names)
