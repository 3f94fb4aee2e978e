"""Vector stores: the interface, its two back-ends and the factory that picks one.

- :class:`EdgeVectorStore` — embedded Qdrant Edge shards under ``DATA_DIR/index``
  (the default; one process owns the index).
- :class:`QdrantServerVectorStore` — a Qdrant server at ``QDRANT_URL``
  (``":memory:"``: qdrant-client's in-process mode, for tests).
"""

from __future__ import annotations

from pathlib import Path

from .base import KINDS, Hit, Kind, PointRecord, VectorStore
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
    "open_vector_store",
]


def open_vector_store(
    data_dir: Path,
    qdrant_url: str | None,
    qdrant_api_key: str | None = None,
    *,
    shards: int | None = None,
    replication_factor: int | None = None,
    write_consistency: int | None = None,
    hnsw_m: int = 16,
    hnsw_ef_construct: int = 100,
    optimize_threshold: int | None = 20_000,
    edge_quantization: Quantization = "none",
    edge_hnsw_ef: int | None = None,
    edge_oversampling: float | None = None,
) -> VectorStore:
    """The configured store: Edge under ``data_dir/index`` unless ``qdrant_url`` is set.

    Raises :class:`StoreLocked` when another process has the Edge index open. The cluster
    settings (``shards``, ``replication_factor``, ``write_consistency``) apply to a server;
    the ``edge_*`` ones (int8 quantization of new shards, search beam width, rescoring
    oversampling) to the embedded store.
    """
    if qdrant_url is None:
        return EdgeVectorStore(
            Path(data_dir) / "index",
            hnsw_m=hnsw_m,
            hnsw_ef_construct=hnsw_ef_construct,
            optimize_threshold=optimize_threshold,
            quantization=edge_quantization,
            hnsw_ef=edge_hnsw_ef,
            oversampling=edge_oversampling,
        )
    return QdrantServerVectorStore(
        qdrant_url,
        qdrant_api_key,
        shards=shards,
        replication_factor=replication_factor,
        write_consistency=write_consistency,
        hnsw_m=hnsw_m,
        hnsw_ef_construct=hnsw_ef_construct,
    )
