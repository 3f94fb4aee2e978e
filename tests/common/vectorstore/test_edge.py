"""Edge-only behaviour: persistence, the one-process lock, HNSW builds and their recovery."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams, Point, UpdateOperation

from imgsearch_common.errors import ImgSearchError
from imgsearch_common.settings import VectorStoreSettings
from imgsearch_common.vectorstore import (
    EdgeVectorStore,
    PointRecord,
    StoreLocked,
    open_vector_store,
)

from .helpers import exact_top, full_points, new_id, unit_vectors, window_points

DIM = 16


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[EdgeVectorStore]:
    store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None)
    yield store
    await store.close()


def small_index_store(
    root: Path, *, optimize_threshold: int | None, optimize_in_subprocess: bool = True
) -> EdgeVectorStore:
    """HNSW built and used even for a few hundred points (thresholds of 1 KB)."""
    return EdgeVectorStore(
        root,
        full_scan_threshold_kb=1,
        indexing_threshold_kb=1,
        optimize_threshold=optimize_threshold,
        optimize_in_subprocess=optimize_in_subprocess,
    )


async def appears(path: Path, timeout_s: float = 30.0) -> None:
    """Wait until the store creates ``path`` (its observable sign of progress)."""
    for _ in range(int(timeout_s / 0.005)):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"{path.name} never appeared")


async def test_data_survives_close_and_reopen(tmp_path: Path, rng: np.random.Generator) -> None:
    images = full_points(rng, unit_vectors(rng, 20, DIM))
    windows = window_points(rng, images[0].id, unit_vectors(rng, 6, DIM))
    first = EdgeVectorStore(tmp_path / "index")
    await first.upsert("c", "full", images)
    await first.upsert("c", "window", windows)
    await first.delete_image("c", images[1].id)
    await first.close()

    second = EdgeVectorStore(tmp_path / "index")
    try:
        assert await second.collections() == ["c"]
        assert await second.count("c", "full") == 19
        assert await second.count("c", "window") == 6
        [hits] = await second.search("c", "full", [images[4].vector], limit=1)
        assert (hits[0].id, hits[0].payload) == (images[4].id, images[4].payload)
        # The payload index on parent_id still serves deletes after the reopen.
        await second.delete_image("c", images[0].id)
        assert await second.count("c", "window") == 0
    finally:
        await second.close()


async def test_a_second_store_in_the_same_process_is_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    owner = EdgeVectorStore(tmp_path / "index")
    parent = new_id(rng)
    await owner.upsert("c", "window", window_points(rng, parent, unit_vectors(rng, 3, DIM)))
    await owner.upsert("c", "window", window_points(rng, new_id(rng), unit_vectors(rng, 2, DIM)))
    await owner.delete_image("c", parent)

    with pytest.raises(StoreLocked) as caught:
        EdgeVectorStore(tmp_path / "index")

    assert caught.value.status_code == 503
    assert "another process" in caught.value.message
    assert str(tmp_path) not in caught.value.message  # the path is logged, not shown
    # The refused store never reached Edge (a refused EdgeShard.load can break the owner's
    # next flush, see edge.py): the owner goes on and flushes on close.
    assert await owner.count("c", "window") == 2
    await owner.close()


async def test_another_process_is_refused_while_the_index_is_open(
    edge: EdgeVectorStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    await edge.upsert("c", "full", full_points(rng, unit_vectors(rng, 3, DIM)))
    script = (
        "import sys\n"
        "from imgsearch_common.vectorstore import EdgeVectorStore, StoreLocked\n"
        "try:\n"
        "    EdgeVectorStore(__import__('pathlib').Path(sys.argv[1]))\n"
        "except StoreLocked as e:\n"
        "    print('locked:', e.message)\n"
    )

    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, str(tmp_path / "index")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert child.stdout.startswith("locked: ")
    assert "another process" in child.stdout


async def test_the_lock_is_released_by_close(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path / "index")
    await first.close()
    await first.close()  # idempotent

    second = EdgeVectorStore(tmp_path / "index")
    await second.close()


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "index")
    await store.close()

    with pytest.raises(RuntimeError):
        await store.count("c", "full")


@pytest.mark.parametrize("in_subprocess", [True, False], ids=["child-process", "thread"])
async def test_optimize_builds_an_index_that_finds_what_exact_search_finds(
    tmp_path: Path, rng: np.random.Generator, in_subprocess: bool
) -> None:
    index = unit_vectors(rng, 300, 512)
    points = full_points(rng, index)
    store = small_index_store(
        tmp_path / "index", optimize_threshold=None, optimize_in_subprocess=in_subprocess
    )
    try:
        for start in range(0, 300, 100):
            await store.upsert("c", "full", points[start : start + 100])
        before = await store.shard_info("c", "full")
        assert before is not None and before["indexed_vectors"] == 0

        await store.optimize()

        after = await store.shard_info("c", "full")
        assert after is not None and after["indexed_vectors"] == after["points"] == 300
        results = await store.search("c", "full", index, limit=10)
        assert [hits[0].id for hits in results] == [p.id for p in points]
        expected = exact_top(index, index, 10)
        found = sum(
            len({h.id for h in hits} & {points[r].id for r in rows})
            for hits, rows in zip(results, expected, strict=True)
        )
        assert found / expected.size >= 0.98
    finally:
        await store.close()
    assert sorted(p.name for p in (tmp_path / "index" / "c").iterdir()) == ["full"]


async def test_writes_during_an_out_of_process_optimize_are_kept(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    store = small_index_store(tmp_path / "index", optimize_threshold=None)
    images = full_points(rng, unit_vectors(rng, 200, 64))
    await store.upsert("c", "full", images)
    late = full_points(rng, unit_vectors(rng, 30, 64), late=True)
    try:
        optimizing = asyncio.create_task(store.optimize())
        # The copy exists from the moment the build starts.
        await appears(tmp_path / "index" / "c" / ".full.optimizing")
        # These wait for the copy to finish, then land in the live shard and its journal.
        await store.upsert("c", "full", late)
        await store.delete_image("c", images[0].id)
        assert await store.count("c", "full") == 229
        await optimizing

        assert await store.count("c", "full") == 229
        [hits] = await store.search("c", "full", [late[3].vector], limit=1)
        assert (hits[0].id, hits[0].payload) == (late[3].id, late[3].payload)
        assert await store.retrieve("c", "full", [images[0].id]) == []
        info = await store.shard_info("c", "full")
        assert info is not None and info["indexed_vectors"] >= 200
    finally:
        await store.close()

    reopened = EdgeVectorStore(tmp_path / "index")
    try:
        assert await reopened.count("c", "full") == 229
    finally:
        await reopened.close()


async def test_reaching_the_threshold_starts_one_background_optimize(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_common.vectorstore.edge")
    store = small_index_store(tmp_path / "index", optimize_threshold=50)
    try:
        await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 40, DIM)))
        assert (await store.shard_info("c", "full") or {})["indexed_vectors"] == 0
        # Crossing the threshold three times while the first build runs: still one build.
        for _ in range(3):
            await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 30, DIM)))
        for _ in range(600):
            info = await store.shard_info("c", "full")
            if info is not None and info["indexed_vectors"] > 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the background optimize did not happen")
    finally:
        await store.close()

    builds = [r for r in caplog.records if r.getMessage().startswith("optimized c/full")]
    assert len(builds) == 1


async def test_close_stops_a_running_optimize_and_keeps_the_shard(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    store = small_index_store(tmp_path / "index", optimize_threshold=None)
    points = full_points(rng, unit_vectors(rng, 100, 64))
    await store.upsert("c", "full", points)
    optimizing = asyncio.create_task(store.optimize())
    await appears(tmp_path / "index" / "c" / ".full.optimizing")

    await store.close()
    await asyncio.wait([optimizing])

    assert not (tmp_path / "index" / "c" / ".full.optimizing").exists()
    reopened = EdgeVectorStore(tmp_path / "index")
    try:
        assert await reopened.count("c", "full") == 100
    finally:
        await reopened.close()


async def test_an_interrupted_swap_is_rolled_back_on_open(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """A crash after the live shard was renamed away: the old shard is the truth."""
    root = tmp_path / "index"
    store = EdgeVectorStore(root)
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 12, DIM)))
    await store.close()
    shard = root / "c" / "full"
    shard.rename(root / "c" / ".full.old")
    (shard / "segments").mkdir(parents=True)  # a half-swapped-in copy
    (root / "c" / ".full.optimizing").mkdir()
    (root / "c" / ".full.trash").mkdir()

    reopened = EdgeVectorStore(root)
    try:
        assert await reopened.count("c", "full") == 12
    finally:
        await reopened.close()
    assert sorted(p.name for p in (root / "c").iterdir()) == ["full"]


async def test_optimize_of_an_empty_store_is_a_no_op(edge: EdgeVectorStore) -> None:
    await edge.optimize()
    assert await edge.collections() == []


async def test_collections_ignores_foreign_directories(
    edge: EdgeVectorStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    (tmp_path / "index" / "not a collection").mkdir()
    (tmp_path / "index" / "empty").mkdir()
    await edge.upsert("real", "full", full_points(rng, unit_vectors(rng, 1, DIM)))

    assert await edge.collections() == ["real"]


async def test_ids_must_be_uuids(edge: EdgeVectorStore) -> None:
    with pytest.raises(ImgSearchError) as caught:
        await edge.upsert("c", "full", [PointRecord(id="not-a-uuid", vector=[1.0, 0.0])])
    assert caught.value.status_code == 400


async def test_the_factory_opens_edge_under_data_dir(tmp_path: Path) -> None:
    store = open_vector_store(VectorStoreSettings(hnsw_m=8, hnsw_ef_construct=64), tmp_path)
    try:
        assert isinstance(store, EdgeVectorStore)
        assert store.root == tmp_path / "index"
        config = store.edge_config(32)
        assert config.hnsw_config is not None
        assert (config.hnsw_config.m, config.hnsw_config.ef_construct) == (8, 64)
        assert config.vectors[""].size == 32
    finally:
        await store.close()


async def test_new_full_shards_index_the_image_names(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Keyword indexes on ``name`` and ``filename`` (``GET /images/{name}``) and ``paths``
    (an image's files), created with the shard; and they survive an out-of-process
    optimize's swap."""
    store = small_index_store(tmp_path / "index", optimize_threshold=None)
    images = full_points(rng, unit_vectors(rng, 300, DIM))
    named = [
        PointRecord(p.id, p.vector, {**p.payload, "name": f"d/{i}.jpg"})
        for i, p in enumerate(images)
    ]
    try:
        await store.upsert("c", "full", named)
        await store.optimize()
        [hit] = await store.find("c", "full", "name", "d/7.jpg", limit=5)
        assert hit.id == images[7].id
    finally:
        await store.close()
    shard = EdgeShard.load(str(tmp_path / "index" / "c" / "full"))
    try:
        schema = shard.info().payload_schema
    finally:
        shard.close()
    assert {key: str(info.data_type) for key, info in schema.items()} == {
        "name": "PayloadSchemaType.Keyword",
        "filename": "PayloadSchemaType.Keyword",
        "paths": "PayloadSchemaType.Keyword",
    }


async def test_full_shards_from_before_the_name_indexes_are_scanned(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """A full shard created without payload indexes (as before ``name``) answers ``find``
    by a scan, takes new writes and deletes, and flushes and reopens cleanly: no index is
    added to it late (see ``edge/lock.py`` for what a late index can break)."""
    old = full_points(rng, unit_vectors(rng, 6, DIM))
    path = tmp_path / "index" / "c" / "full"
    path.parent.mkdir(parents=True)
    config = EdgeConfig(vectors=EdgeVectorParams(size=DIM, distance=Distance.Cosine))
    shard = EdgeShard.create(str(path), config)
    shard.update(
        UpdateOperation.upsert_points(
            [Point(id=p.id, vector=list(map(float, p.vector)), payload=p.payload) for p in old]
        )
    )
    shard.flush()
    shard.close()

    for round_ in range(2):
        store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None)
        try:
            [hit] = await store.find("c", "full", "filename", "img2.jpg", limit=5)
            assert hit.id == old[2].id
            if round_ == 0:
                new = PointRecord(new_id(rng), unit_vectors(rng, 1, DIM)[0], {"name": "n.png"})
                await store.upsert("c", "full", [new])
                await store.delete_image("c", old[3].id)
            assert len(await store.find("c", "full", "name", "n.png", limit=5)) == 1
            assert await store.find("c", "full", "filename", "img3.jpg", limit=5) == []
        finally:
            await store.close()
    shard = EdgeShard.load(str(path))
    try:
        assert shard.info().payload_schema == {}
    finally:
        shard.close()
