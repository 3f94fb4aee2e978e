"""Where a worker writes its vectors: the search API's hand-off, or the Qdrant server.

With the embedded Qdrant Edge index the search API is the only process that may open
it, so workers hand their points to its ``/internal/v1/upsert`` (:class:`IndexClient`).
With a Qdrant server (``QDRANT_URL``) that detour only costs: every vector is serialised
to JSON twice and parsed once more on the API, the API's CPU (which should answer
searches) does the indexing traffic, and indexing stops whenever the API is redeployed.
So a worker given ``QDRANT_URL`` writes straight into the server, through the same
:class:`~imgsearch_common.vectorstore.QdrantServerVectorStore` the API reads with. It
creates a missing collection with the same shard, replication and write-consistency
settings (``QDRANT_SHARDS``, ``QDRANT_REPLICATION_FACTOR``, ``QDRANT_WRITE_CONSISTENCY``),
so those must be set identically on the API and the workers; concurrent creators are
safe (the loser of the race takes the winner's collection).
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import SecretStr

from imgsearch_common.ids import validate_collection
from imgsearch_common.schemas import PointIn
from imgsearch_common.vectorstore import QdrantServerVectorStore
from imgsearch_common.vectorstore.base import PointRecord, VectorStore
from imgsearch_common.vectorstore.qdrant_server import MEMORY

from .index_client import IndexClient


class IndexWriter(Protocol):
    """What the worker loop needs from its index: :class:`IndexClient` or
    :class:`DirectIndexWriter`."""

    async def upsert(
        self, collection: str, full: list[PointIn], windows: list[PointIn]
    ) -> None: ...

    async def aclose(self) -> None: ...


class IndexTargetSettings(Protocol):
    """The settings that decide where a worker writes (fields of the worker's settings)."""

    api_internal_url: str
    qdrant_url: str | None
    qdrant_api_key: SecretStr | None
    qdrant_shards: int | None
    qdrant_replication_factor: int | None
    qdrant_write_consistency: int | None
    hnsw_m: int
    hnsw_ef_construct: int


class DirectIndexWriter:
    """Writes a worker's points into a Qdrant server, in the order the API's hand-off
    uses: windows first, then the full-image point, so an image that can be found by
    its full vector already has its windows."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    async def upsert(self, collection: str, full: list[PointIn], windows: list[PointIn]) -> None:
        collection = validate_collection(collection)
        if windows:
            await self._store.upsert(collection, "window", _records(windows))
        if full:
            await self._store.upsert(collection, "full", _records(full))

    async def aclose(self) -> None:
        await self._store.close()


def open_index_writer(
    settings: IndexTargetSettings,
    token: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> IndexWriter:
    """The Qdrant server when ``QDRANT_URL`` is set, else the search API's hand-off.
    ``transport`` replaces the HTTP transport of either (tests pass a fake)."""
    if settings.qdrant_url is None:
        return IndexClient(settings.api_internal_url, token, transport=transport)
    if settings.qdrant_url == MEMORY:
        # An in-process store per worker would keep every vector away from the API.
        raise ValueError("QDRANT_URL=:memory: cannot be shared between processes")
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    store = QdrantServerVectorStore(
        settings.qdrant_url,
        key or None,
        shards=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication_factor,
        write_consistency=settings.qdrant_write_consistency,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construct=settings.hnsw_ef_construct,
        transport=transport,
    )
    return DirectIndexWriter(store)


def _records(points: list[PointIn]) -> list[PointRecord]:
    return [PointRecord(p.id, p.vector, dict(p.payload)) for p in points]
