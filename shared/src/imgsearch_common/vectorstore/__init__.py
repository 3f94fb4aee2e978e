"""Vector stores: the interface, its two back-ends and the factory that picks one.

- :class:`EdgeVectorStore` — embedded Qdrant Edge shards under ``DATA_DIR/index``
  (the default; one process owns the index).
- :class:`QdrantServerVectorStore` — a Qdrant server at ``QDRANT_URL``
  (``":memory:"``: qdrant-client's in-process mode, for tests).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from ..settings import VectorStoreSettings
from .base import KINDS, Hit, Kind, PointRecord, VectorStore, iter_points
from .edge import QUANTIZATIONS, EdgeVectorStore, Quantization, StoreLocked
from .qdrant_server import QdrantServerVectorStore

__all__ = [
    "KINDS",
    "QUANTIZATIONS",
    "EdgeVectorStore",
    "Hit",
    "Kind",
    "PointRecord",
    "QdrantServerVectorStore",
    "Quantization",
    "StoreLocked",
    "VectorStore",
    "iter_points",
    "open_vector_store",
]


def open_vector_store(
    settings: VectorStoreSettings,
    data_dir: Path | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> VectorStore:
    """The configured store: Edge under ``data_dir/index`` unless ``QDRANT_URL`` is set.

    The one place both back-ends are built from settings. Raises :class:`StoreLocked` when
    another process has the Edge index open, and ``ValueError`` for Edge without a
    ``data_dir``. The cluster settings (shards, replication, write consistency) apply to a
    server; the ``edge_*`` ones (int8 quantization of new shards, search beam width,
    rescoring oversampling, optimize threshold) to the embedded store. ``transport``
    replaces the HTTP transport of a server store (tests pass a fake).
    """
    if settings.qdrant_url is None:
        if data_dir is None:
            raise ValueError("the embedded vector store needs a data directory")
        return EdgeVectorStore(
            Path(data_dir) / "index",
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construct=settings.hnsw_ef_construct,
            optimize_threshold=settings.edge_optimize_threshold,
            quantization=settings.edge_quantization,
            hnsw_ef=settings.edge_hnsw_ef,
            oversampling=settings.edge_oversampling,
        )
    return QdrantServerVectorStore(
        settings.qdrant_url,
        settings.qdrant_api_key_value(),
        shards=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication_factor,
        write_consistency=settings.qdrant_write_consistency,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construct=settings.hnsw_ef_construct,
        transport=transport,
    )
