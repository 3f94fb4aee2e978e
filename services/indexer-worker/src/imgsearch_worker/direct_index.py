"""Where a worker writes its vectors: the search API's hand-off, or the Qdrant server.

With the embedded Qdrant Edge index the search API is the only process that may open
it, so workers hand their points to its ``/internal/v1/upsert`` (:class:`IndexClient`).
With a Qdrant server (``QDRANT_URL``) that detour only costs: every vector is serialised
to JSON twice and parsed once more on the API, the API's CPU (which should answer
searches) does the indexing traffic, and indexing stops whenever the API is redeployed.
So a worker given ``QDRANT_URL`` writes straight into the server, through the same
store the API reads with (``imgsearch_common.vectorstore.open_vector_store``). It
creates a missing collection with the same shard, replication and write-consistency
settings (``QDRANT_SHARDS``, ``QDRANT_REPLICATION_FACTOR``, ``QDRANT_WRITE_CONSISTENCY``),
so those must be set identically on the API and the workers; concurrent creators are
safe (the loser of the race takes the winner's collection).
"""

from __future__ import annotations

from typing import Protocol

import httpx

from imgsearch_common.payloads import FileRecord, UpsertRequest
from imgsearch_common.vectorstore import open_vector_store
from imgsearch_common.vectorstore.base import VectorStore
from imgsearch_common.vectorstore.qdrant_server import MEMORY
from imgsearch_common.vectorstore.writes import attach_file, write_images

from .index_client import IndexClient
from .settings import WorkerSettings


class IndexWriter(Protocol):
    """What the worker loop needs from its index: :class:`IndexClient` or
    :class:`DirectIndexWriter`."""

    async def upsert(self, request: UpsertRequest) -> None: ...

    async def attach(self, collection: str, image_id: str, record: FileRecord) -> bool:
        """Add ``record`` to the indexed image ``image_id``; False: no such image."""
        ...

    async def probe(self) -> None:
        """Raise (``UpstreamUnavailable``) unless the index answers a cheap call."""
        ...

    async def aclose(self) -> None: ...


class DirectIndexWriter:
    """Writes a worker's points into a Qdrant server, in the order the API's hand-off
    uses (``imgsearch_common.vectorstore.writes``)."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    async def upsert(self, request: UpsertRequest) -> None:
        await write_images(self._store, request)

    async def attach(self, collection: str, image_id: str, record: FileRecord) -> bool:
        return await attach_file(self._store, collection, image_id, record)

    async def probe(self) -> None:
        await self._store.collections()

    async def aclose(self) -> None:
        await self._store.close()


def open_index_writer(
    settings: WorkerSettings,
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
    return DirectIndexWriter(open_vector_store(settings, transport=transport))
