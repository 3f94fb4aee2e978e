"""Edge only: dropping a collection closes its shards and deletes their files, whatever runs
on them meanwhile (an optimize, a pending flush); full shards from before the ``paths``
index still find images by path; the alias file and the records on disk."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    PayloadSchemaType,
    Point,
    UpdateOperation,
)

from imgsearch_common.errors import ImgSearchError
from imgsearch_common.payloads import PATHS
from imgsearch_common.vectorstore import EdgeVectorStore, PointRecord

from .helpers import full_points, new_id, unit_vectors, window_points

DIM = 16


def open_files_under(root: Path) -> list[str]:
    """Files of this process under ``root``: open descriptors and memory maps."""
    prefix = str(root)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(target)
    with open("/proc/self/maps") as maps:
        found += [line.split()[-1] for line in maps if prefix in line]
    return found


async def appears(path: Path, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"{path.name} never appeared")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_drop_closes_the_shards_and_deletes_their_files(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "index"
    store = EdgeVectorStore(root, optimize_threshold=None)
    try:
        images = full_points(rng, unit_vectors(rng, 8, DIM))
        await store.upsert("c", "full", images)
        await store.upsert(
            "c", "window", window_points(rng, images[0].id, unit_vectors(rng, 3, DIM))
        )
        await store.upsert("kept", "full", full_points(rng, unit_vectors(rng, 2, DIM)))
        assert open_files_under(root / "c")

        assert await store.drop_collection("c") is True

        assert open_files_under(root / "c") == []
        assert [f for f in open_files_under(root) if ".dropped-" in f] == []
        assert sorted(p.name for p in root.iterdir()) == [".lock", "kept"]
        assert await store.count("kept", "full") == 2
    finally:
        await store.close()

    reopened = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert await reopened.collections() == ["kept"]
        assert await reopened.count("c", "full") == 0
    finally:
        await reopened.close()


async def test_a_collection_on_disk_but_not_opened_yet_is_dropped(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "index"
    first = EdgeVectorStore(root, optimize_threshold=None)
    await first.upsert("c", "window", window_points(rng, new_id(rng), unit_vectors(rng, 2, DIM)))
    await first.close()

    second = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert await second.drop_collection("c") is True
        assert not (root / "c").exists()
        assert await second.drop_collection("c") is False
    finally:
        await second.close()


@pytest.mark.parametrize("in_subprocess", [True, False], ids=["child-process", "thread"])
async def test_a_drop_during_an_optimize_stops_it_and_nothing_touches_the_shard_after(
    tmp_path: Path,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
    in_subprocess: bool,
) -> None:
    root = tmp_path / "index"
    store = EdgeVectorStore(
        root,
        full_scan_threshold_kb=1,
        indexing_threshold_kb=1,
        optimize_threshold=None,
        optimize_in_subprocess=in_subprocess,
        flush_interval_s=0.01,
    )
    try:
        await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 300, 64)))
        optimizing = asyncio.create_task(store.optimize())
        if in_subprocess:
            await appears(root / "c" / ".full.optimizing")
        else:
            await asyncio.sleep(0.05)

        assert await store.drop_collection("c") is True
        await optimizing  # ends without an error: the run saw the drop

        await asyncio.sleep(0.1)  # a flush pending from the upsert would run by now
        assert not (root / "c").exists()
        assert [p.name for p in root.iterdir()] == [".lock"]
        assert open_files_under(root / "c") == []
        # The collection comes back with the next upsert, and optimizes as any other.
        again = full_points(rng, unit_vectors(rng, 50, 64))
        await store.upsert("c", "full", again)
        await store.optimize()
        [hits] = await store.search("c", "full", [again[3].vector], limit=1)
        assert hits[0].id == again[3].id
    finally:
        await store.close()
    assert errors(caplog) == []


async def test_a_pending_flush_of_a_dropped_shard_is_skipped(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None, flush_interval_s=0.2)
    try:
        await store.upsert("d", "full", full_points(rng, unit_vectors(rng, 3, DIM)))
        await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 3, DIM)))
        await store.drop_collection("c")  # well before c's flush is due
        await asyncio.sleep(0.6)  # several flush intervals
        assert await store.count("d", "full") == 3
    finally:
        await store.close()
    assert errors(caplog) == []


async def test_what_an_interrupted_drop_left_is_deleted_at_open(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "index"
    store = EdgeVectorStore(root, optimize_threshold=None)
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 3, DIM)))
    await store.close()
    # A crash between the rename and the delete leaves the renamed directory.
    (root / "c").rename(root / ".dropped-c-0123abcd")

    reopened = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert sorted(p.name for p in root.iterdir()) == [".lock"]
        assert await reopened.collections() == []
    finally:
        await reopened.close()


async def test_full_shards_from_before_the_paths_index_find_by_a_scan(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """A full shard with the name indexes but not ``paths`` (created before it) finds
    images by path by a scan, and is not given the index late (see ``edge/lock.py``)."""
    old = full_points(rng, unit_vectors(rng, 5, DIM))
    path = tmp_path / "index" / "c" / "full"
    path.parent.mkdir(parents=True)
    shard = EdgeShard.create(
        str(path), EdgeConfig(vectors=EdgeVectorParams(size=DIM, distance=Distance.Cosine))
    )
    for key in ("name", "filename"):
        shard.update(UpdateOperation.create_field_index(key, PayloadSchemaType.Keyword))
    shard.update(
        UpdateOperation.upsert_points(
            [
                Point(id=p.id, vector=list(map(float, p.vector)), payload={PATHS: [f"/p/{i}"]})
                for i, p in enumerate(old)
            ]
        )
    )
    shard.flush()
    shard.close()

    store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None)
    try:
        [hit] = await store.find("c", "full", PATHS, "/p/3", limit=5)
        assert hit.id == old[3].id
        new = PointRecord(new_id(rng), unit_vectors(rng, 1, DIM)[0], {PATHS: ["/p/3", "/q"]})
        await store.upsert("c", "full", [new])
        found = await store.find("c", "full", PATHS, "/p/3", limit=5)
        assert {h.id for h in found} == {old[3].id, new.id}
    finally:
        await store.close()
    shard = EdgeShard.load(str(path))
    try:
        assert set(shard.info().payload_schema) == {"name", "filename"}
    finally:
        shard.close()


# --- aliases and records on disk ----------------------------------------------------------------


async def test_aliases_and_records_survive_reopening(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "index"
    store = EdgeVectorStore(root, optimize_threshold=None)
    old = full_points(rng, unit_vectors(rng, 3, DIM), filled="c")
    new = full_points(rng, unit_vectors(rng, 3, DIM), filled="c.r1")
    await store.upsert("c", "full", old)
    await store.upsert("c.r1", "full", new)
    await store.put_record("c", {"model": "old"})
    await store.put_record("c.r1", {"model": "new"})
    await store.switch_alias("c", "c.r1")
    await store.close()

    reopened = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert await reopened.collections() == ["c"]
        assert await reopened.resolve("c") == "c.r1"
        [hits] = await reopened.search("c", "full", [old[0].vector], limit=10)
        assert {h.payload["filled"] for h in hits} == {"c.r1"}
        assert await reopened.get_record("c") == {"model": "new"}
        assert await reopened.get_record("c.r0") == {"model": "old"}
        await reopened.drop_collection("c.r0")
    finally:
        await reopened.close()
    assert sorted(p.name for p in root.iterdir()) == [".lock", "aliases.json", "c.r1"]
    assert sorted(p.name for p in (root / "c.r1").iterdir()) == ["full", "record.json"]


async def test_a_switch_interrupted_before_its_rename_leaves_the_old_alias(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "index"
    store = EdgeVectorStore(root, optimize_threshold=None)
    await store.upsert("c.r1", "full", full_points(rng, unit_vectors(rng, 2, DIM)))
    await store.switch_alias("c", "c.r1")
    await store.close()
    # A crash after writing the next alias file, before renaming it into place.
    (root / "aliases.json.tmp").write_text('{"c": "c.r2"')

    reopened = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert await reopened.resolve("c") == "c.r1"
        assert not (root / "aliases.json.tmp").exists()
    finally:
        await reopened.close()


async def test_an_unreadable_alias_file_refuses_to_open_and_releases_the_lock(
    tmp_path: Path,
) -> None:
    root = tmp_path / "index"
    root.mkdir()
    (root / "aliases.json").write_text('{"c": ')

    with pytest.raises(ImgSearchError, match=r"aliases\.json"):
        EdgeVectorStore(root, optimize_threshold=None)

    (root / "aliases.json").write_text('{"c": "c.r1"}')
    store = EdgeVectorStore(root, optimize_threshold=None)  # not locked by the failed one
    try:
        assert await store.resolve("c") == "c.r1"
    finally:
        await store.close()
