"""The vector-store contract for reindexing: physical names, aliases switched while searches
run, and each collection's record. Every scenario runs on both back-ends (``store``)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from imgsearch_common.errors import BadRequest, InvalidCollection
from imgsearch_common.ids import logical_name, physical_name, revision, validate_physical
from imgsearch_common.vectorstore import PointRecord, VectorStore

from .helpers import full_points, new_id, unit_vectors, window_points

DIM = 16


async def fill(
    store: VectorStore, collection: str, rng: np.random.Generator, n: int = 6
) -> list[PointRecord]:
    """``n`` images with two windows each, payloads naming ``collection``."""
    images = full_points(rng, unit_vectors(rng, n, DIM), filled=collection)
    await store.upsert(collection, "full", images)
    for image in images:
        await store.upsert(
            collection, "window", window_points(rng, image.id, unit_vectors(rng, 2, DIM))
        )
    return images


async def answered_by(store: VectorStore, collection: str, query: np.ndarray) -> set[str]:
    [hits] = await store.search(collection, "full", [query], limit=10)
    return {h.payload["filled"] for h in hits}


# --- names ------------------------------------------------------------------------------------


def test_physical_names() -> None:
    assert physical_name("cats", 3) == "cats.r3"
    assert physical_name("cats", 0) == "cats.r0"
    assert [logical_name(n) for n in ("cats", "cats.r0", "cats.r12")] == ["cats"] * 3
    assert [revision(n) for n in ("cats", "cats.r0", "cats.r12")] == [0, 0, 12]
    for bad in ("cats.r", "cats.r01", "cats.r-1", "cats.x1", ".r1", "a.r1.r2", "cats.r1\n"):
        with pytest.raises(InvalidCollection):
            validate_physical(bad)
    with pytest.raises(InvalidCollection):
        physical_name("a.b", 1)
    with pytest.raises(ValueError):
        physical_name("cats", -1)


@pytest.mark.parametrize("name", ["c.r", "c.r01", "c.x", "c.r1.r2", "c.r1/..", ".r1"])
async def test_malformed_physical_names_are_refused(store: VectorStore, name: str) -> None:
    calls = [
        store.upsert(name, "full", [PointRecord(new_id(np.random.default_rng(1)), [1.0, 0.0])]),
        store.search(name, "full", [[1.0, 0.0]], limit=1),
        store.scroll(name, "full"),
        store.drop_collection(name),
        store.resolve(name),
        store.get_record(name),
        store.put_record(name, {"model": "x"}),
    ]
    for call in calls:
        with pytest.raises(InvalidCollection):
            await call


async def test_a_revision_is_a_collection_of_its_own_and_is_not_listed(
    store: VectorStore, rng: np.random.Generator
) -> None:
    plain = await fill(store, "c", rng)
    revised = await fill(store, "c.r1", rng)

    assert await store.collections() == ["c"]
    assert await store.count("c.r1", "full") == 6
    assert await store.count("c.r1", "window") == 12
    assert await answered_by(store, "c", plain[0].vector) == {"c"}  # type: ignore[arg-type]
    assert await answered_by(store, "c.r1", revised[0].vector) == {"c.r1"}  # type: ignore[arg-type]
    assert await answered_by(store, "c.r0", revised[0].vector) == {"c"}  # type: ignore[arg-type]
    assert await store.resolve("c") == "c.r0"
    assert await store.resolve("c.r1") == "c.r1"
    assert await store.resolve("never") == "never.r0"  # where its first write would go


# --- switching ----------------------------------------------------------------------------------


async def test_switching_makes_the_name_read_the_revision(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c", rng)
    await fill(store, "c.r1", rng)
    query = unit_vectors(rng, 1, DIM)[0]

    assert await store.switch_alias("c", "c.r1") == "c.r0"

    assert await store.resolve("c") == "c.r1"
    assert await answered_by(store, "c", query) == {"c.r1"}
    assert await store.count("c", "window") == 12
    assert await store.collections() == ["c"]
    # The plain collection is still there under NAME.r0, until the caller drops it.
    assert await answered_by(store, "c.r0", query) == {"c"}
    assert await store.drop_collection("c.r0") is True
    assert await store.collections() == ["c"]
    assert await answered_by(store, "c", query) == {"c.r1"}
    # The next reindex: r1 -> r2.
    await fill(store, "c.r2", rng)
    assert await store.switch_alias("c", "c.r2") == "c.r1"
    assert await store.drop_collection("c.r1") is True
    assert await answered_by(store, "c", query) == {"c.r2"}
    assert await store.collections() == ["c"]
    # Writes through the name land in its revision.
    more = full_points(rng, unit_vectors(rng, 2, DIM), filled="late")
    await store.upsert("c", "full", more)
    await store.upsert("c", "window", window_points(rng, more[0].id, unit_vectors(rng, 1, DIM)))
    assert await store.count("c.r2", "full") == 8
    assert await store.count("c.r2", "window") == 13
    assert await store.count("c.r0", "full") == 0


async def test_a_switch_racing_a_loop_of_searches_fails_none_of_them(
    store: VectorStore, rng: np.random.Generator
) -> None:
    """Every search answers from the old collection or the new one: none fails, none is
    empty; then the old one is dropped while the searches go on."""
    await fill(store, "c", rng, n=20)
    await fill(store, "c.r1", rng, n=20)
    queries = unit_vectors(rng, 8, DIM)
    answers: list[set[str]] = []
    done = asyncio.Event()

    async def searches() -> None:
        while not done.is_set() or len(answers) < 40:
            results = await store.search("c", "full", queries, limit=5)
            answers.extend({h.payload["filled"] for h in hits} for hits in results)
            await asyncio.sleep(0)

    async def reindex() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        assert await store.switch_alias("c", "c.r1") == "c.r0"
        for _ in range(3):
            await asyncio.sleep(0)
        assert await store.drop_collection("c.r0") is True
        for _ in range(3):
            await asyncio.sleep(0)
        done.set()

    await asyncio.gather(searches(), reindex())

    assert all(a in ({"c"}, {"c.r1"}) for a in answers), answers
    assert {"c"} in answers and {"c.r1"} in answers
    assert await answered_by(store, "c", queries[0]) == {"c.r1"}


async def test_switching_needs_a_revision_of_the_same_name_holding_points(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c", rng)
    await fill(store, "d.r1", rng)

    with pytest.raises(ValueError):
        await store.switch_alias("c", "d.r1")
    with pytest.raises(BadRequest):
        await store.switch_alias("c", "c.r7")  # nothing there
    with pytest.raises(InvalidCollection):
        await store.switch_alias("c.r1", "c.r1")
    assert await store.resolve("c") == "c.r0"


async def test_switching_back_to_r0_reads_the_plain_collection_again(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c", rng)
    await fill(store, "c.r1", rng)
    query = unit_vectors(rng, 1, DIM)[0]
    await store.switch_alias("c", "c.r1")

    assert await store.switch_alias("c", "c.r0") == "c.r1"

    assert await store.resolve("c") == "c.r0"
    assert await answered_by(store, "c", query) == {"c"}
    assert await store.collections() == ["c"]
    # The first switch of a name with no plain collection: nothing before.
    await fill(store, "e.r1", rng)
    assert await store.switch_alias("e", "e.r1") is None
    assert await store.collections() == ["c", "e"]


# --- dropping names -----------------------------------------------------------------------------


async def test_dropping_an_aliased_name_drops_the_alias_its_target_and_the_plain_one(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c", rng)
    await fill(store, "c.r1", rng)
    await store.put_record("c.r1", {"model": "new"})
    await fill(store, "other", rng)
    await store.switch_alias("c", "c.r1")

    assert await store.drop_collection("c") is True

    assert await store.collections() == ["other"]
    assert await store.resolve("c") == "c.r0"
    for name in ("c", "c.r0", "c.r1"):
        assert await store.count(name, "full") == 0
        assert await store.get_record(name) is None
    assert await store.search("c", "full", unit_vectors(rng, 1, DIM), limit=3) == [[]]
    assert await store.drop_collection("c") is False
    # The name is a plain collection again at its next write.
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 1, DIM)))
    assert await store.resolve("c") == "c.r0"
    assert await store.count("c.r0", "full") == 1


async def test_dropping_the_target_of_an_alias_drops_the_alias_too(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c.r1", rng)
    await store.switch_alias("c", "c.r1")
    assert await store.collections() == ["c"]

    assert await store.drop_collection("c.r1") is True

    assert await store.collections() == []
    assert await store.resolve("c") == "c.r0"
    assert await store.count("c", "full") == 0


# --- records ------------------------------------------------------------------------------------


async def test_records_belong_to_the_physical_collection_a_name_reads(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "c", rng)
    assert await store.get_record("c") is None

    await store.put_record("c", {"model": "old", "dim": DIM})
    await fill(store, "c.r1", rng)
    await store.put_record("c.r1", {"model": "new", "dim": DIM, "extra": [1, "x"]})

    assert await store.get_record("c") == {"model": "old", "dim": DIM}
    assert await store.get_record("c.r0") == {"model": "old", "dim": DIM}
    await store.switch_alias("c", "c.r1")
    assert await store.get_record("c") == {"model": "new", "dim": DIM, "extra": [1, "x"]}
    assert await store.get_record("c.r0") == {"model": "old", "dim": DIM}
    # Replaced whole; never listed as a collection.
    await store.put_record("c", {"model": "newer"})
    assert await store.get_record("c.r1") == {"model": "newer"}
    assert await store.collections() == ["c"]


async def test_a_record_goes_with_its_collection(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await fill(store, "d", rng)
    await store.put_record("d", {"model": "m"})
    await store.put_record("lonely", {"model": "m"})  # a record and no points yet
    assert await store.collections() == ["d"]

    assert await store.drop_collection("d") is True
    assert await store.drop_collection("lonely") is True

    assert await store.get_record("d") is None
    assert await store.get_record("lonely") is None
    assert await store.drop_collection("lonely") is False
    # A collection made again starts with no record.
    await store.upsert("d", "full", full_points(rng, unit_vectors(rng, 1, DIM)))
    assert await store.get_record("d") is None
    # A record put before the first points (the first write records its model).
    await store.put_record("fresh.r1", {"model": "m"})
    await store.upsert("fresh.r1", "full", full_points(rng, unit_vectors(rng, 2, DIM)))
    assert await store.get_record("fresh.r1") == {"model": "m"}
    assert await store.count("fresh.r1", "full") == 2
