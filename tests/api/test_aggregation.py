"""Score aggregation: exact numbers."""

from __future__ import annotations

import pytest

from imgsearch_api.aggregation import (
    PartialMatch,
    WindowHit,
    aggregate_window_hits,
    max_partial_score,
    merge_matches,
    seed_partial_score,
)


def test_seed_rule_exact() -> None:
    # 0.7 * 0.9 + 0.3 * 0.8 + 0.1 * (2 / 4) = 0.63 + 0.24 + 0.05
    assert seed_partial_score([0.9, 0.7], 4) == pytest.approx(0.92)
    assert seed_partial_score([0.5], 1) == pytest.approx(0.35 + 0.15 + 0.1)
    assert seed_partial_score([0.9, 0.7], 4, w_max=1, w_mean=0, w_freq=0) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        seed_partial_score([], 3)
    with pytest.raises(ValueError):
        seed_partial_score([0.1, 0.2], 1)


def test_hits_are_grouped_per_parent_with_boxes_best_first() -> None:
    hits = [
        WindowHit("a", 0.9, (0, 0, 10, 10)),
        WindowHit("b", 0.8, (5, 5, 15, 15)),
        WindowHit("a", 0.7, (10, 0, 20, 10)),
        WindowHit("a", 0.95, (2, 2, 12, 12)),
    ]
    out = aggregate_window_hits(hits, rule="seed", max_boxes=2)
    a, b = out["a"], out["b"]
    assert (a.count, b.count) == (3, 1)
    assert a.max_score == 0.95
    assert a.mean_score == pytest.approx((0.9 + 0.7 + 0.95) / 3)
    assert a.score == pytest.approx(0.7 * 0.95 + 0.3 * (2.55 / 3) + 0.1 * 3 / 4)
    assert b.score == pytest.approx(0.7 * 0.8 + 0.3 * 0.8 + 0.1 * 1 / 4)
    assert a.boxes == [((2, 2, 12, 12), 0.95), ((0, 0, 10, 10), 0.9)]
    assert aggregate_window_hits([]) == {}


def test_max_rule_scores_the_best_window_only() -> None:
    hits = [
        WindowHit("doc", 0.93, (0, 0, 5, 5)),
        WindowHit("doc", 0.92, (5, 0, 10, 5)),
        WindowHit("doc", 0.92, (0, 5, 5, 10)),
        WindowHit("photo", 0.95, (1, 1, 6, 6)),
        WindowHit("photo", 0.60, (4, 4, 9, 9)),
    ]
    by_max = aggregate_window_hits(hits)
    assert (by_max["photo"].score, by_max["doc"].score) == (0.95, 0.93)
    # The seed's rule prefers the parent with many mediocre windows:
    by_seed = aggregate_window_hits(hits, rule="seed")
    assert by_seed["doc"].score == pytest.approx(0.7 * 0.93 + 0.3 * (2.77 / 3) + 0.1 * 3 / 5)
    assert by_seed["photo"].score == pytest.approx(0.7 * 0.95 + 0.3 * 0.775 + 0.1 * 2 / 5)
    assert by_seed["doc"].score > by_seed["photo"].score
    with pytest.raises(ValueError):
        aggregate_window_hits(hits, rule="mean")
    with pytest.raises(ValueError):
        max_partial_score([])


def _pm(parent: str, score: float) -> PartialMatch:
    return PartialMatch(parent, score, score, score, 1, [])


def test_merge_takes_the_better_score_and_labels_the_match() -> None:
    ranked = merge_matches(
        {"x": 0.9, "y": 0.5},
        {"y": _pm("y", 0.95), "z": _pm("z", 0.6)},
        limit=10,
    )
    assert [(r.image_id, r.score, r.match_type) for r in ranked] == [
        ("y", 0.95, "full_and_partial"),
        ("x", 0.9, "full"),
        ("z", 0.6, "partial_to_full"),
    ]
    assert ranked[0].full_score == 0.5


def test_merge_limit_min_score_and_deterministic_ties() -> None:
    ranked = merge_matches({"b": 0.5, "a": 0.5, "c": 0.2}, {}, limit=2)
    assert [r.image_id for r in ranked] == ["a", "b"]
    assert merge_matches({"a": 0.5, "c": 0.2}, {}, limit=5, min_score=0.3)[0].image_id == "a"
    assert len(merge_matches({"a": 0.5, "c": 0.2}, {}, limit=5, min_score=0.3)) == 1
    assert merge_matches({}, {}, limit=5) == []
