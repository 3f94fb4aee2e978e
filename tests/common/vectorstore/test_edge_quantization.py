"""Edge with int8 scalar quantization: the same answers, from a quarter of the RAM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgsearch_common.settings import VectorStoreSettings
from imgsearch_common.vectorstore import EdgeVectorStore, open_vector_store

from .helpers import exact_top, full_points, unit_vectors

DIM = 32


async def test_int8_store_finds_the_exact_neighbours_after_an_hnsw_build(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    store = EdgeVectorStore(
        tmp_path / "index",
        full_scan_threshold_kb=1,
        indexing_threshold_kb=1,
        optimize_threshold=None,
        quantization="int8",
        hnsw_ef=64,
        oversampling=2.0,
    )
    try:
        vectors = unit_vectors(rng, 600, DIM)
        points = full_points(rng, vectors)
        await store.upsert("c", "full", points)
        await store.optimize()
        info = await store.shard_info("c", "full")
        assert info is not None and info["indexed_vectors"] == 600
        queries = vectors[:20] + 0.05 * unit_vectors(rng, 20, DIM)
        hits = await store.search("c", "full", list(queries), limit=5)
        want = exact_top(vectors, queries, 5)
        found = [[h.id for h in row] for row in hits]
        expected = [[points[i].id for i in row] for row in want]
        # Rescored with the float32 originals: the top hit is exact, the rest nearly so.
        assert [row[0] for row in found] == [row[0] for row in expected]
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, expected, strict=True)])
        assert overlap >= 0.9
    finally:
        await store.close()
    config = json.loads((tmp_path / "index" / "c" / "full" / "edge_config.json").read_text())
    assert "int8" in json.dumps(config).lower()


async def test_quantization_reaches_the_store_through_the_factory(tmp_path: Path) -> None:
    settings = VectorStoreSettings(edge_quantization="int8", edge_hnsw_ef=128)
    store = open_vector_store(settings, tmp_path)
    try:
        assert isinstance(store, EdgeVectorStore)
        vectors = store.edge_config(8).vectors
        assert isinstance(vectors, dict)
        [params] = vectors.values()  # the one unnamed dense vector
        assert params.quantization_config is not None
    finally:
        await store.close()


def test_unknown_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantization"):
        EdgeVectorStore(tmp_path / "index", quantization="pq")  # type: ignore[arg-type]
