"""Several collections searched at once: their ranked lists merged by score
(``aggregation.merge_collections``), and the stages timed side by side
(``Timings.include``). Pure functions, exact numbers."""

from __future__ import annotations

from imgsearch_api.search.aggregation import Found, RankedImage, merge_collections
from imgsearch_api.search.query import searched_collections
from imgsearch_api.search.timings import Timings


def _ranked(image_id: str, score: float) -> RankedImage:
    return RankedImage(image_id, score, score, None)


def test_merged_by_score_then_id_then_collection_name() -> None:
    merged = merge_collections(
        {
            "dogs": [_ranked("b", 0.9), _ranked("x", 0.5)],
            "cats": [_ranked("a", 0.7), _ranked("b", 0.9), _ranked("c", 0.7)],
        },
        limit=10,
    )
    assert [(f.collection, f.ranked.image_id, f.ranked.score) for f in merged] == [
        ("cats", "b", 0.9),  # one content in two collections: two results, by name
        ("dogs", "b", 0.9),
        ("cats", "a", 0.7),
        ("cats", "c", 0.7),
        ("dogs", "x", 0.5),
    ]
    # The order the collections were named in does not change it.
    swapped = merge_collections(
        {
            "cats": [_ranked("a", 0.7), _ranked("b", 0.9), _ranked("c", 0.7)],
            "dogs": [_ranked("b", 0.9), _ranked("x", 0.5)],
        },
        limit=10,
    )
    assert swapped == merged


def test_the_limit_applies_to_the_merged_list() -> None:
    merged = merge_collections(
        {"a": [_ranked("1", 0.2), _ranked("2", 0.1)], "b": [_ranked("3", 0.3)]}, limit=2
    )
    assert merged == [Found("b", _ranked("3", 0.3)), Found("a", _ranked("1", 0.2))]
    assert merge_collections({"a": []}, limit=5) == []
    assert merge_collections({}, limit=5) == []


def test_the_collections_searched() -> None:
    assert searched_collections("default", None) == ("default",)
    assert searched_collections("default", []) == ("default",)
    assert searched_collections("cats", ["dogs", "birds", "dogs"]) == ("dogs", "birds")


def test_side_by_side_stages_count_their_longest() -> None:
    timings = Timings()
    timings.ms = {"encode": 30.0}
    one, two = Timings(), Timings()
    one.ms = {"vector_search": 2.5, "aggregate": 0.4}
    two.ms = {"vector_search": 1.5, "aggregate": 0.9, "fetch_metadata": 0.2}
    timings.include([one, two])
    assert timings.ms == {
        "encode": 30.0,
        "vector_search": 2.5,
        "aggregate": 0.9,
        "fetch_metadata": 0.2,
    }
