"""The vector-store contract, continued: what following a library needs (walking every
point, rewriting payloads, dropping collections, finding images by file). Every scenario
runs on both back-ends (``store`` fixture)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from imgsearch_common.payloads import PATHS
from imgsearch_common.vectorstore import Hit, PointRecord, VectorStore, iter_points

from .helpers import full_points, new_id, unit_vectors, window_points

DIM = 16


def id_order(ids: list[str]) -> list[str]:
    """Ids in the order both back-ends scroll: UUIDs as 128-bit numbers."""
    return sorted(ids, key=lambda i: uuid.UUID(i).int)


async def all_pages(
    store: VectorStore, collection: str, kind: str, limit: int, **kwargs: bool
) -> list[list[Hit]]:
    pages = []
    offset = None
    while True:
        hits, offset = await store.scroll(
            collection,
            "full" if kind == "full" else "window",
            limit=limit,
            offset=offset,
            **kwargs,
        )
        pages.append(hits)
        if offset is None:
            return pages
        assert len(pages) < 100, "scroll never ended"


# --- scroll ---------------------------------------------------------------------------------


async def test_scroll_pages_cover_every_point_exactly_once_in_id_order(
    store: VectorStore, rng: np.random.Generator
) -> None:
    points = full_points(rng, unit_vectors(rng, 23, DIM))
    await store.upsert("c", "full", points)
    await store.upsert("c", "window", window_points(rng, points[0].id, unit_vectors(rng, 4, DIM)))

    pages = await all_pages(store, "c", "full", limit=5)

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    walked = [h.id for page in pages for h in page]
    assert walked == id_order([p.id for p in points])
    by_id = {p.id: p.payload for p in points}
    assert all(h.payload == by_id[h.id] and h.score == 0.0 for page in pages for h in page)
    assert all(h.vector is None for page in pages for h in page)
    # A page size that divides the count exactly still ends (no empty page needed to know).
    windows = await all_pages(store, "c", "window", limit=2)
    assert [len(p) for p in windows] in ([2, 2], [2, 2, 0])
    assert len({h.id for page in windows for h in page}) == 4


async def test_scroll_returns_the_stored_vectors_when_asked(
    store: VectorStore, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 6, DIM)
    points = full_points(rng, vectors)
    await store.upsert("c", "full", points)

    [page] = await all_pages(store, "c", "full", limit=10, with_vectors=True)

    vector_of = {p.id: v for p, v in zip(points, vectors, strict=True)}
    for hit in page:
        assert isinstance(hit.vector, list) and all(isinstance(x, float) for x in hit.vector)
        assert hit.vector == pytest.approx(vector_of[hit.id].tolist(), abs=1e-5)


async def test_iter_points_walks_one_kind_page_by_page(
    store: VectorStore, rng: np.random.Generator
) -> None:
    images = full_points(rng, unit_vectors(rng, 10, DIM))
    windows = window_points(rng, images[0].id, unit_vectors(rng, 7, DIM))
    await store.upsert("c", "full", images)
    await store.upsert("c", "window", windows)

    full = [h.id async for h in iter_points(store, "c", "full", page=3)]
    window = [h async for h in iter_points(store, "c", "window", page=4, with_vectors=True)]

    assert full == id_order([p.id for p in images])
    assert [h.id for h in window] == id_order([p.id for p in windows])
    assert all(h.vector is not None and len(h.vector) == DIM for h in window)
    assert [h async for h in iter_points(store, "nope", "full")] == []


async def test_scroll_of_a_missing_collection_is_empty_and_pages_are_not_empty(
    store: VectorStore,
) -> None:
    assert await store.scroll("nope", "full") == ([], None)
    with pytest.raises(ValueError):
        await store.scroll("nope", "full", limit=0)
    assert await store.collections() == []


# --- set_payload --------------------------------------------------------------------------------


async def test_set_payload_replaces_the_whole_payload_and_keeps_the_vector(
    store: VectorStore, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 5, DIM)
    points = full_points(rng, vectors, name="old.png", width=640)
    await store.upsert("c", "full", points)

    assert await store.set_payload("c", "full", points[2].id, {"name": "new.png", PATHS: ["/a"]})

    [hits] = await store.search("c", "full", [vectors[2]], limit=1)
    assert hits[0].id == points[2].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == {"name": "new.png", PATHS: ["/a"]}  # no key of the old one
    [again] = await store.retrieve("c", "full", [points[2].id])
    assert again.payload == {"name": "new.png", PATHS: ["/a"]}
    # The keyword indexes follow the new payload.
    assert len(await store.find("c", "full", "name", "old.png", limit=10)) == 4
    assert [h.id for h in await store.find("c", "full", "name", "new.png", limit=10)] == [
        points[2].id
    ]
    assert await store.count("c", "full") == 5


async def test_set_payload_of_a_missing_point_is_false_and_writes_nothing(
    store: VectorStore, rng: np.random.Generator
) -> None:
    images = full_points(rng, unit_vectors(rng, 3, DIM))
    await store.upsert("c", "full", images)
    missing = new_id(rng)

    assert await store.set_payload("c", "full", missing, {"name": "x"}) is False
    assert await store.set_payload("c", "window", images[0].id, {"name": "x"}) is False
    assert await store.set_payload("nope", "full", images[0].id, {"name": "x"}) is False

    assert await store.count("c", "full") == 3
    assert await store.retrieve("c", "full", [missing]) == []
    assert await store.count("c", "window") == 0
    assert await store.collections() == ["c"]


async def test_set_payload_of_a_deleted_point_is_false(
    store: VectorStore, rng: np.random.Generator
) -> None:
    [image] = full_points(rng, unit_vectors(rng, 1, DIM))
    await store.upsert("c", "full", [image])
    await store.delete_image("c", image.id)

    assert await store.set_payload("c", "full", image.id, {"name": "back"}) is False
    assert await store.count("c", "full") == 0


# --- drop_collection ----------------------------------------------------------------------------


async def test_drop_removes_both_kinds_and_the_collection(
    store: VectorStore, rng: np.random.Generator
) -> None:
    images = full_points(rng, unit_vectors(rng, 6, DIM), name="a.png")
    windows = window_points(rng, images[0].id, unit_vectors(rng, 5, DIM))
    kept = full_points(rng, unit_vectors(rng, 2, DIM))
    for name in ("c", "other"):
        await store.upsert(name, "full", images if name == "c" else kept)
    await store.upsert("c", "window", windows)
    assert await store.collections() == ["c", "other"]

    assert await store.drop_collection("c") is True

    assert await store.collections() == ["other"]
    query = unit_vectors(rng, 1, DIM)
    assert await store.search("c", "full", [images[0].vector], limit=5) == [[]]
    assert await store.search("c", "window", [windows[0].vector], limit=5) == [[]]
    assert await store.count("c", "full") == await store.count("c", "window") == 0
    assert await store.retrieve("c", "full", [images[0].id]) == []
    assert await store.find("c", "full", "name", "a.png", limit=5) == []
    assert await store.scroll("c", "window") == ([], None)
    assert await store.set_payload("c", "full", images[0].id, {}) is False
    # The other collection is untouched.
    assert await store.count("other", "full") == 2
    assert len((await store.search("other", "full", query, limit=5))[0]) == 2


async def test_dropping_a_missing_collection_is_false(
    store: VectorStore, rng: np.random.Generator
) -> None:
    assert await store.drop_collection("never") is False
    await store.upsert("c", "window", window_points(rng, new_id(rng), unit_vectors(rng, 2, DIM)))
    assert await store.drop_collection("c") is True  # windows only: still something
    assert await store.drop_collection("c") is False
    assert await store.collections() == []


async def test_an_upsert_after_a_drop_creates_the_collection_again(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 4, DIM)))
    await store.drop_collection("c")

    # Even with another dimension: nothing of the old collection is left.
    again = full_points(rng, unit_vectors(rng, 3, 2 * DIM))
    await store.upsert("c", "full", again)

    assert await store.count("c", "full") == 3
    [hits] = await store.search("c", "full", [again[1].vector], limit=1)
    assert hits[0].id == again[1].id
    assert await store.collections() == ["c"]


async def test_a_drop_racing_searches_and_upserts_fails_none_of_them(
    store: VectorStore, rng: np.random.Generator
) -> None:
    """Searches and upserts queued around a drop, the drop coming a little later each
    round: none fails; the upserts after the drop made the collection again."""
    for delay in range(6):
        vectors = unit_vectors(rng, 40, DIM)
        await store.upsert("c", "full", full_points(rng, vectors[:20]))
        await store.upsert("c", "window", window_points(rng, new_id(rng), vectors[:10]))
        batches = [full_points(rng, vectors[20 + 2 * i : 22 + 2 * i]) for i in range(10)]
        answers: list[int] = []

        async def searches(vectors: np.ndarray = vectors, answers: list[int] = answers) -> None:
            for i in range(20):
                [hits] = await store.search("c", "full" if i % 2 else "window", [vectors[i]], 5)
                answers.append(len(hits))

        async def upserts(batches: list[list[PointRecord]] = batches) -> None:
            for batch in batches:
                await store.upsert("c", "full", batch)

        async def drop(delay: int = delay) -> bool:
            for _ in range(delay):
                await asyncio.sleep(0)
            return await store.drop_collection("c")

        *_, dropped = await asyncio.gather(searches(), upserts(), drop())

        assert dropped is True
        assert len(answers) == 20
        # What is left is what the upserts after the drop wrote: whole batches, readable.
        left = await store.count("c", "full")
        assert left <= 20 and left % 2 == 0
        assert len([h async for h in iter_points(store, "c", "full")]) == left
        assert await store.drop_collection("c") is (left > 0)
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 1, DIM)))
    assert await store.count("c", "full") == 1


# --- find on an array of paths ------------------------------------------------------------------


async def test_find_on_paths_matches_any_element_whole(
    store: VectorStore, rng: np.random.Generator
) -> None:
    points = full_points(rng, unit_vectors(rng, 4, DIM))
    paths = [
        ["/photos/a.jpg", "/backup/a.jpg"],
        ["/photos/b.jpg"],
        ["/backup/a.jpg", "/photos/c.jpg"],
        [],
    ]
    await store.upsert(
        "c",
        "full",
        [
            PointRecord(p.id, p.vector, {**p.payload, PATHS: ps})
            for p, ps in zip(points, paths, strict=True)
        ],
    )
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 1, DIM)))  # no paths

    def ids(hits: list[Hit]) -> set[str]:
        return {h.id for h in hits}

    assert ids(await store.find("c", "full", PATHS, "/backup/a.jpg", limit=10)) == {
        points[0].id,
        points[2].id,
    }
    assert ids(await store.find("c", "full", PATHS, "/photos/b.jpg", limit=10)) == {points[1].id}
    for value in ("/photos", "/photos/", "a.jpg", "/PHOTOS/b.jpg", "/photos/b.jp"):
        assert await store.find("c", "full", PATHS, value, limit=10) == []
    [hit] = await store.find("c", "full", PATHS, "/photos/c.jpg", limit=10)
    assert hit.payload[PATHS] == ["/backup/a.jpg", "/photos/c.jpg"]
    # After a rewrite of the payload, the old path no longer finds it.
    assert await store.set_payload("c", "full", points[0].id, {PATHS: ["/photos/a.jpg"]})
    assert ids(await store.find("c", "full", PATHS, "/backup/a.jpg", limit=10)) == {points[2].id}
