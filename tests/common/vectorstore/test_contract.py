"""The vector-store contract: every scenario runs on both back-ends (``store`` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch_common.errors import BadRequest, InvalidCollection
from imgsearch_common.vectorstore import PointRecord, VectorStore

from .conftest import BACKENDS, make_store
from .helpers import exact_top, full_points, new_id, unit_vectors, window_points

DIM = 16


async def test_identical_vector_is_nearest_with_score_one(
    store: VectorStore, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 30, DIM)
    points = full_points(rng, vectors)
    await store.upsert("c", "full", points)

    [hits] = await store.search("c", "full", [vectors[7]], limit=5)

    assert hits[0].id == points[7].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == {"filename": "img7.jpg"}
    assert all(isinstance(h.id, str) and isinstance(h.score, float) for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


async def test_batched_search_answers_each_query_in_order_like_exact_search(
    store: VectorStore, rng: np.random.Generator
) -> None:
    index = unit_vectors(rng, 50, DIM)
    points = full_points(rng, index)
    await store.upsert("c", "full", points)
    queries = unit_vectors(rng, 6, DIM)

    results = await store.search("c", "full", queries, limit=5)  # a 2-D array

    assert len(results) == 6
    expected = exact_top(index, queries, 5)
    for hits, rows, query in zip(results, expected, queries, strict=True):
        assert [h.id for h in hits] == [points[r].id for r in rows]
        assert [h.score for h in hits] == pytest.approx(
            [float(index[r] @ query) for r in rows], abs=1e-5
        )


async def test_vectors_may_be_lists_or_arrays(store: VectorStore, rng: np.random.Generator) -> None:
    vectors = unit_vectors(rng, 4, DIM)
    await store.upsert(
        "c",
        "full",
        [
            PointRecord(id=new_id(rng), vector=vectors[0].tolist()),
            PointRecord(id=new_id(rng), vector=vectors[1]),
            PointRecord(id=new_id(rng), vector=tuple(vectors[2].astype(np.float64))),
        ],
    )

    as_arrays = await store.search("c", "full", [vectors[0], vectors[1]], limit=3)
    as_lists = await store.search("c", "full", [vectors[0].tolist(), vectors[1].tolist()], limit=3)

    assert [[h.id for h in hits] for hits in as_arrays] == [
        [h.id for h in hits] for hits in as_lists
    ]


async def test_full_and_window_points_are_kept_apart(
    store: VectorStore, rng: np.random.Generator
) -> None:
    images = full_points(rng, unit_vectors(rng, 3, DIM))
    windows = window_points(rng, images[0].id, unit_vectors(rng, 5, DIM))
    await store.upsert("c", "full", images)
    await store.upsert("c", "window", windows)

    # Query with a window's own vector: only "window" may answer with it.
    [full_hits] = await store.search("c", "full", [windows[2].vector], limit=10)
    [window_hits] = await store.search("c", "window", [windows[2].vector], limit=10)

    assert {h.id for h in full_hits} == {p.id for p in images}
    assert {h.id for h in window_hits} == {p.id for p in windows}
    assert window_hits[0].id == windows[2].id
    assert window_hits[0].payload == {"parent_id": images[0].id, "box": [2, 2, 12, 12]}


async def test_limit_is_respected(store: VectorStore, rng: np.random.Generator) -> None:
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 20, DIM)))
    query = unit_vectors(rng, 1, DIM)

    [three] = await store.search("c", "full", query, limit=3)
    [everything] = await store.search("c", "full", query, limit=100)

    assert len(three) == 3
    assert len(everything) == 20
    assert [h.id for h in three] == [h.id for h in everything[:3]]


async def test_upserting_the_same_ids_again_replaces_points(
    store: VectorStore, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 10, DIM)
    points = full_points(rng, vectors)
    await store.upsert("c", "full", points)

    replayed = [PointRecord(id=p.id, vector=p.vector, payload={"v": 2}) for p in points]
    await store.upsert("c", "full", replayed)
    await store.upsert("c", "full", replayed)

    assert await store.count("c", "full") == 10
    [hits] = await store.search("c", "full", [vectors[3]], limit=1)
    assert hits[0].id == points[3].id
    assert hits[0].payload == {"v": 2}


async def test_count_is_per_kind(store: VectorStore, rng: np.random.Generator) -> None:
    images = full_points(rng, unit_vectors(rng, 4, DIM))
    await store.upsert("c", "full", images)
    await store.upsert("c", "window", window_points(rng, images[0].id, unit_vectors(rng, 7, DIM)))

    assert await store.count("c", "full") == 4
    assert await store.count("c", "window") == 7


async def test_retrieve_returns_points_in_request_order_and_skips_missing(
    store: VectorStore, rng: np.random.Generator
) -> None:
    points = full_points(rng, unit_vectors(rng, 5, DIM), indexed_at="2024-01-01T00:00:00Z")
    await store.upsert("c", "full", points)
    missing = new_id(rng)

    hits = await store.retrieve("c", "full", [points[3].id, missing, points[0].id])

    assert [h.id for h in hits] == [points[3].id, points[0].id]
    assert hits[0].payload == {"filename": "img3.jpg", "indexed_at": "2024-01-01T00:00:00Z"}
    assert all(h.score == 0.0 for h in hits)


async def test_delete_image_removes_its_full_point_and_exactly_its_windows(
    store: VectorStore, rng: np.random.Generator
) -> None:
    images = full_points(rng, unit_vectors(rng, 3, DIM))
    doomed, kept = images[0], images[1]
    doomed_windows = window_points(rng, doomed.id, unit_vectors(rng, 4, DIM))
    kept_windows = window_points(rng, kept.id, unit_vectors(rng, 3, DIM))
    await store.upsert("c", "full", images)
    await store.upsert("c", "window", doomed_windows + kept_windows)

    await store.delete_image("c", doomed.id)

    assert await store.count("c", "full") == 2
    assert await store.retrieve("c", "full", [doomed.id]) == []
    remaining = await store.retrieve("c", "window", [p.id for p in doomed_windows + kept_windows])
    assert [h.id for h in remaining] == [p.id for p in kept_windows]
    [hits] = await store.search("c", "window", [doomed_windows[0].vector], limit=10)
    assert {h.payload["parent_id"] for h in hits} == {kept.id}


async def test_delete_image_of_an_unknown_image_or_collection_is_a_no_op(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 2, DIM)))

    await store.delete_image("c", new_id(rng))
    await store.delete_image("nothing-here", new_id(rng))

    assert await store.count("c", "full") == 2


async def test_an_unknown_collection_reads_as_empty(
    store: VectorStore, rng: np.random.Generator
) -> None:
    query = unit_vectors(rng, 2, DIM)

    assert await store.search("nope", "full", query, limit=5) == [[], []]
    assert await store.search("nope", "window", query, limit=5) == [[], []]
    assert await store.count("nope", "full") == 0
    assert await store.retrieve("nope", "window", [new_id(rng)]) == []
    assert await store.collections() == []


async def test_empty_requests_answer_empty(store: VectorStore, rng: np.random.Generator) -> None:
    await store.upsert("c", "full", [])
    assert await store.collections() == []
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 3, DIM)))

    assert await store.search("c", "full", [], limit=5) == []
    assert await store.retrieve("c", "full", []) == []


def _named(rng: np.random.Generator, names: list[str | None]) -> list[PointRecord]:
    """Full points named ``names`` (None: no ``name`` key, as points from before it)."""
    points = full_points(rng, unit_vectors(rng, len(names), DIM))
    return [
        PointRecord(p.id, p.vector, {**p.payload, **({"name": n} if n is not None else {})})
        for p, n in zip(points, names, strict=True)
    ]


async def test_find_matches_a_payload_value_whole(
    store: VectorStore, rng: np.random.Generator
) -> None:
    names = ["2024/cat.jpg", "cat.jpg", "2024/cat.jpg", "2024/CAT.jpg", "2024/cat.jpeg", None]
    points = _named(rng, names)
    await store.upsert("c", "full", points)

    found = await store.find("c", "full", "name", "2024/cat.jpg", limit=10)

    assert sorted(h.id for h in found) == sorted([points[0].id, points[2].id])
    assert {h.payload["filename"] for h in found} == {"img0.jpg", "img2.jpg"}
    assert all(h.score == 0.0 for h in found)
    # Whole values only: no prefix, no case folding, no path normalisation.
    for value in ("2024", "2024/", "cat.jpg/..", "./2024/cat.jpg", "2024//cat.jpg", "2024/cat"):
        assert await store.find("c", "full", "name", value, limit=10) == []
    # Another key; a point without the key matches nothing of it.
    [by_filename] = await store.find("c", "full", "filename", "img5.jpg", limit=10)
    assert by_filename.id == points[5].id and "name" not in by_filename.payload


async def test_find_respects_the_limit_and_the_kind(
    store: VectorStore, rng: np.random.Generator
) -> None:
    points = _named(rng, ["same.png"] * 5)
    await store.upsert("c", "full", points)
    await store.upsert("c", "window", window_points(rng, points[0].id, unit_vectors(rng, 3, DIM)))

    two = await store.find("c", "full", "name", "same.png", limit=2)
    assert len(two) == 2 and {h.id for h in two} <= {p.id for p in points}
    assert len(await store.find("c", "full", "name", "same.png", limit=100)) == 5
    assert await store.find("c", "full", "name", "same.png", limit=0) == []
    assert await store.find("c", "window", "name", "same.png", limit=10) == []
    windows = await store.find("c", "window", "parent_id", points[0].id, limit=10)
    assert len(windows) == 3
    assert await store.find("nope", "full", "name", "same.png", limit=10) == []


@pytest.mark.parametrize(
    "value", ["", "../../etc/passwd", "a\0b", "x" * 5000, "%2e%2e%2f", "caf\u00e9/\uff0e.png"]
)
async def test_find_takes_any_string_as_a_value(
    store: VectorStore, rng: np.random.Generator, value: str
) -> None:
    """A value is a value: odd ones match nothing unless stored, and never fail."""
    await store.upsert("c", "full", _named(rng, ["a.png"]))
    assert await store.find("c", "full", "name", value, limit=5) == []
    stored = _named(rng, [value])
    await store.upsert("c", "full", stored)
    assert [h.id for h in await store.find("c", "full", "name", value, limit=5)] == [stored[0].id]


async def test_find_sees_replaced_and_deleted_points(
    store: VectorStore, rng: np.random.Generator
) -> None:
    [point] = _named(rng, ["old.png"])
    await store.upsert("c", "full", [point])
    await store.upsert("c", "full", [PointRecord(point.id, point.vector, {"name": "new.png"})])
    assert await store.find("c", "full", "name", "old.png", limit=5) == []
    assert [h.id for h in await store.find("c", "full", "name", "new.png", limit=5)] == [point.id]
    await store.delete_image("c", point.id)
    assert await store.find("c", "full", "name", "new.png", limit=5) == []


_RNG = np.random.default_rng(7)
CALLS: dict[str, Callable[[VectorStore, str], Awaitable[object]]] = {
    "upsert": lambda s, c: s.upsert(c, "full", [PointRecord(id=new_id(_RNG), vector=[1.0, 0.0])]),
    "search": lambda s, c: s.search(c, "full", [[1.0, 0.0]], limit=1),
    "retrieve": lambda s, c: s.retrieve(c, "window", [new_id(_RNG)]),
    "count": lambda s, c: s.count(c, "full"),
    "delete_image": lambda s, c: s.delete_image(c, new_id(_RNG)),
    "find": lambda s, c: s.find(c, "full", "name", "a.jpg", limit=1),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-lead", "x" * 64, "sp ace", ".hidden"])
async def test_invalid_collection_names_are_refused(
    store: VectorStore, call: str, name: str
) -> None:
    with pytest.raises(InvalidCollection):
        await CALLS[call](store, name)


async def test_collections_lists_the_logical_names(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await store.upsert("zebra", "full", full_points(rng, unit_vectors(rng, 1, DIM)))
    await store.upsert("cats_2", "window", window_points(rng, new_id(rng), unit_vectors(rng, 1, 8)))
    await store.upsert("a-1", "full", full_points(rng, unit_vectors(rng, 1, DIM)))
    await store.upsert("a-1", "window", window_points(rng, new_id(rng), unit_vectors(rng, 1, DIM)))

    assert await store.collections() == ["a-1", "cats_2", "zebra"]


async def test_the_dimension_comes_from_the_first_upsert(
    store: VectorStore, rng: np.random.Generator
) -> None:
    small = full_points(rng, unit_vectors(rng, 3, 8))
    large = full_points(rng, unit_vectors(rng, 3, 48))
    await store.upsert("small", "full", small)
    await store.upsert("large", "full", large)

    [hits] = await store.search("large", "full", [large[1].vector], limit=1)
    assert hits[0].id == large[1].id

    with pytest.raises(BadRequest):
        await store.upsert("small", "full", full_points(rng, unit_vectors(rng, 1, 48)))
    with pytest.raises(BadRequest):
        await store.search("small", "full", unit_vectors(rng, 1, 48), limit=1)
    with pytest.raises(BadRequest):  # mixed dimensions in one request
        await store.upsert(
            "new",
            "full",
            [PointRecord(id=new_id(rng), vector=[1.0] * 8), PointRecord(new_id(rng), [1.0] * 9)],
        )
    assert await store.count("small", "full") == 3


async def test_concurrent_first_upserts_all_succeed(
    store: VectorStore, rng: np.random.Generator
) -> None:
    batches = [full_points(rng, unit_vectors(rng, 5, DIM)) for _ in range(10)]
    windows = [window_points(rng, b[0].id, unit_vectors(rng, 2, DIM)) for b in batches]

    await asyncio.gather(
        *(store.upsert("fresh", "full", b) for b in batches),
        *(store.upsert("fresh", "window", w) for w in windows),
    )

    assert await store.count("fresh", "full") == 50
    assert await store.count("fresh", "window") == 20
    assert await store.collections() == ["fresh"]


async def test_both_backends_give_the_same_answers(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """The same writes and queries on both back-ends: same ids, same scores, same payloads."""
    images = full_points(rng, unit_vectors(rng, 40, 32), width=640)
    windows = [
        w for image in images[:10] for w in window_points(rng, image.id, unit_vectors(rng, 3, 32))
    ]
    queries = unit_vectors(rng, 4, 32)
    answers = []
    for backend in BACKENDS:
        s = make_store(backend, tmp_path / backend)
        try:
            await s.upsert("same", "full", images)
            await s.upsert("same", "window", windows)
            await s.delete_image("same", images[2].id)
            answers.append(
                (
                    await s.search("same", "full", queries, limit=7),
                    await s.search("same", "window", queries, limit=7),
                    await s.count("same", "window"),
                    await s.retrieve("same", "full", [images[5].id, images[2].id]),
                    await s.find("same", "full", "filename", "img3.jpg", limit=5)
                    + await s.find("same", "full", "filename", "img2.jpg", limit=5),
                )
            )
        finally:
            await s.close()

    edge, memory = answers
    assert edge[2] == memory[2] == 27
    assert edge[3] == memory[3]
    assert edge[4] == memory[4] and [h.id for h in edge[4]] == [images[3].id]
    for edge_lists, memory_lists in zip(edge[:2], memory[:2], strict=True):
        for e, m in zip(edge_lists, memory_lists, strict=True):
            assert [h.id for h in e] == [h.id for h in m]
            assert [h.payload for h in e] == [h.payload for h in m]
            assert [h.score for h in e] == pytest.approx([h.score for h in m], abs=1e-5)
