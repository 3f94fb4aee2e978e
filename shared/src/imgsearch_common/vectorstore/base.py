"""The vector-store interface. Two back-ends implement it and pass the same
contract tests: Qdrant Edge (embedded, the default) and a Qdrant server
(``qdrant-client``, when ``QDRANT_URL`` is set).

A logical *collection* (e.g. ``"default"``, ``"cats"``) holds two kinds of
points kept apart, so full-image search never wades through windows:

- ``"full"``   — one point per image; payload: image metadata (``filename``,
  ``original_path``, ``file_size``, ``indexed_at``, ``width``, ``height``, ...);
- ``"window"`` — one point per sliding window; payload: ``parent_id`` (the
  image's point id) and ``box`` (``[x0, y0, x1, y1]`` in image pixels).

Names (see :mod:`imgsearch_common.ids`): every method takes a *logical* name
(``"cats"``: resolved through its alias, if it has one, else the plain collection
``cats``) or a *physical* one (``"cats.r2"``, a reindex's revision, or ``"cats.r0"``,
the plain ``cats`` even while ``cats`` is an alias), used as is. A reindex fills
``NAME.rN``, then :meth:`VectorStore.switch_alias` makes ``NAME`` read it, atomically.

Collections are created lazily by the first upsert (the vector size is taken
from the vectors). Searching a collection that does not exist returns no hits;
:meth:`VectorStore.drop_collection` removes one (both kinds), and the next upsert
creates it again. :meth:`VectorStore.scroll` (and :func:`iter_points` on it) walks every
point of a kind in id order, e.g. to compare the index with the files on disk.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["full", "window"]
KINDS: tuple[Kind, ...] = ("full", "window")


@dataclass(frozen=True)
class PointRecord:
    """A point to store: a UUID string id, an L2-normalised vector, a JSON payload."""

    id: str
    vector: Sequence[float] | np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search hit (``score`` is cosine similarity) or a retrieved point (score 0).

    ``vector`` is the stored vector, only where it was asked for (``scroll(...,
    with_vectors=True)``); None otherwise.
    """

    id: str
    score: float
    payload: dict[str, Any]
    vector: list[float] | None = None


class VectorStore(abc.ABC):
    """Async interface; every method may be called concurrently."""

    @abc.abstractmethod
    async def upsert(self, collection: str, kind: Kind, points: Sequence[PointRecord]) -> None:
        """Insert or replace points (same id = same point; replays change nothing)."""

    @abc.abstractmethod
    async def search(
        self,
        collection: str,
        kind: Kind,
        vectors: Sequence[Sequence[float] | np.ndarray],
        limit: int,
    ) -> list[list[Hit]]:
        """Nearest neighbours for each query vector, in one batched call, best first."""

    @abc.abstractmethod
    async def retrieve(self, collection: str, kind: Kind, ids: Sequence[str]) -> list[Hit]:
        """Points by id (missing ids are skipped), with payloads."""

    @abc.abstractmethod
    async def find(
        self, collection: str, kind: Kind, key: str, value: str, limit: int
    ) -> list[Hit]:
        """At most ``limit`` points whose payload ``key`` is exactly ``value`` (score 0), in
        no particular order; none for a collection that does not exist or ``limit < 1``.
        When the stored value is an array (``paths``), a point matches if any element is
        ``value``. A keyword payload index on ``key`` makes it a lookup; without one (a
        shard or collection from before the index) it is a scan of the kind's points
        (correct, slower)."""

    @abc.abstractmethod
    async def scroll(
        self,
        collection: str,
        kind: Kind,
        *,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        """A page of at most ``limit`` points (score 0, payloads; ``Hit.vector`` when
        ``with_vectors``) in id order, starting at the id ``offset`` (None: the first), and
        the offset of the next page (None after the last). Walking the pages visits every
        point that exists throughout the walk exactly once. ``([], None)`` for a collection
        that does not exist; ``limit < 1`` is a ``ValueError``."""

    @abc.abstractmethod
    async def set_payload(
        self, collection: str, kind: Kind, point_id: str, payload: dict[str, Any]
    ) -> bool:
        """Replace the whole payload of an existing point (its vector is kept); False, and
        nothing written, when the point (or the collection) does not exist."""

    @abc.abstractmethod
    async def drop_collection(self, collection: str) -> bool:
        """Delete the collection: both kinds of points and its record. True if anything
        existed. A logical name that is an alias: the alias, its target, and the plain
        collection of that name if a switch left one; a physical name: that collection
        (an alias reading it goes with it). Searches racing the drop answer from the
        collection or find nothing; an upsert after it creates the collection again."""

    @abc.abstractmethod
    async def resolve(self, collection: str) -> str:
        """The physical collection ``collection`` reads now: its alias's target
        (``NAME.rN``), else ``NAME.r0`` (the plain collection, which need not exist)."""

    @abc.abstractmethod
    async def switch_alias(self, logical: str, physical: str) -> str | None:
        """Make ``logical`` read ``physical`` (one of its revisions; ``NAME.r0``: the plain
        collection again), atomically: a search racing the switch answers from the old
        collection or the new one, never neither. Returns the physical name it read
        before (``NAME.r0`` when that was the plain collection; None when nothing
        existed), which the caller drops with :meth:`drop_collection` when done with it.
        A write racing the switch may land in the old collection."""

    @abc.abstractmethod
    async def get_record(self, collection: str) -> dict[str, Any] | None:
        """The record of the physical collection ``collection`` reads (e.g. which model
        filled it); None when none was put."""

    @abc.abstractmethod
    async def put_record(self, collection: str, record: dict[str, Any]) -> None:
        """Replace the record of the physical collection ``collection`` reads (a small JSON
        document; it goes with :meth:`drop_collection`, and is never listed)."""

    @abc.abstractmethod
    async def count(self, collection: str, kind: Kind) -> int:
        """Number of points of that kind (0 for a collection that does not exist)."""

    @abc.abstractmethod
    async def delete_image(self, collection: str, image_id: str) -> None:
        """Delete an image's full point and all its windows."""

    @abc.abstractmethod
    async def collections(self) -> list[str]:
        """Names of the logical collections that exist, sorted: plain collections and
        aliases; an alias's target (``NAME.rN``) is not listed on its own, nor is a
        revision being filled."""

    async def optimize(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Build or refresh search indexes, where the back-end needs to be told."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release resources."""


async def iter_points(
    store: VectorStore,
    collection: str,
    kind: Kind,
    *,
    with_vectors: bool = False,
    page: int = 256,
) -> AsyncIterator[Hit]:
    """Every point of ``collection``'s ``kind`` (see :meth:`VectorStore.scroll`), fetched
    ``page`` at a time."""
    offset: str | None = None
    while True:
        hits, offset = await store.scroll(
            collection, kind, limit=page, offset=offset, with_vectors=with_vectors
        )
        for hit in hits:
            yield hit
        if offset is None:
            return
