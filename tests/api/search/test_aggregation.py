"""Score aggregation: exact numbers."""

from __future__ import annotations

import pytest

from imgsearch_api.search.aggregation import (
    ContainsMatch,
    QueryWindowHit,
    Rescore,
    WindowHit,
    WindowMatch,
    aggregate_query_windows,
    aggregate_window_hits,
    apply_rescores,
    baseline_window_score,
    best_window_score,
    merge_matches,
)


def test_baseline_rule_exact() -> None:
    # 0.7 * 0.9 + 0.3 * 0.8 + 0.1 * (2 / 4) = 0.63 + 0.24 + 0.05
    assert baseline_window_score([0.9, 0.7], 4) == pytest.approx(0.92)
    assert baseline_window_score([0.5], 1) == pytest.approx(0.35 + 0.15 + 0.1)
    assert baseline_window_score([0.9, 0.7], 4, w_max=1, w_mean=0, w_freq=0) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        baseline_window_score([], 3)
    with pytest.raises(ValueError):
        baseline_window_score([0.1, 0.2], 1)


def test_hits_are_grouped_per_parent_with_boxes_best_first() -> None:
    hits = [
        WindowHit("a", 0.9, (0, 0, 10, 10)),
        WindowHit("b", 0.8, (5, 5, 15, 15)),
        WindowHit("a", 0.7, (10, 0, 20, 10)),
        WindowHit("a", 0.95, (2, 2, 12, 12)),
    ]
    out = aggregate_window_hits(hits, rule="baseline", max_boxes=2)
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
    # The baseline (original system's) rule prefers the parent with many mediocre windows:
    by_baseline = aggregate_window_hits(hits, rule="baseline")
    assert by_baseline["doc"].score == pytest.approx(0.7 * 0.93 + 0.3 * (2.77 / 3) + 0.1 * 3 / 5)
    assert by_baseline["photo"].score == pytest.approx(0.7 * 0.95 + 0.3 * 0.775 + 0.1 * 2 / 5)
    assert by_baseline["doc"].score > by_baseline["photo"].score
    with pytest.raises(ValueError):
        aggregate_window_hits(hits, rule="mean")
    with pytest.raises(ValueError):
        best_window_score([])


def _pm(parent: str, score: float) -> WindowMatch:
    return WindowMatch(parent, score, score, score, 1, [])


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


def test_query_windows_give_each_picture_its_best_window_and_frame() -> None:
    hits = [
        QueryWindowHit("cat", 0.90, (0, 0, 100, 100)),
        QueryWindowHit("cat", 0.97, (300, 200, 500, 400)),
        QueryWindowHit("dog", 0.95, (0, 0, 400, 400)),
    ]
    out = aggregate_query_windows(hits, {"cat": (800, 400), "dog": (100, 100)}, (1000, 500))
    cat = out["cat"]
    assert (cat.score, cat.window) == (0.97, (300, 200, 500, 400))
    # The window shows the cat's centre square (200..600 x 0..400) at half size, so the
    # whole cat spans (200, 200)-(600, 400) in the query, all of it visible.
    assert cat.query_box == (200, 200, 600, 400)
    assert cat.image_box == (0, 0, 800, 400)
    # The dog's frame is the window itself (a square picture); its size is unknown here:
    assert out["dog"].query_box == (0, 0, 400, 400)
    unknown = aggregate_query_windows(hits, {}, (1000, 500))
    assert unknown["cat"].query_box == (300, 200, 500, 400)


def test_query_window_frame_is_clipped_to_the_query() -> None:
    hits = [QueryWindowHit("wide", 0.9, (0, 0, 100, 100))]
    out = aggregate_query_windows(hits, {"wide": (400, 100)}, (300, 300))["wide"]
    # Centre square 150..250 lands on 0..100: the frame starts at -150, clipped to 0;
    # the visible part of the picture is x 150..400.
    assert out.query_box == (0, 0, 250, 100)
    assert out.image_box == (150, 0, 400, 100)


def test_merge_with_contains_labels_the_best_evidence() -> None:
    cont = {"c": ContainsMatch("c", 0.99, (0, 0, 9, 9), (0, 0, 9, 9), (0, 0, 90, 90))}
    ranked = merge_matches({"c": 0.5, "f": 0.8}, {}, limit=5, contains=cont)
    assert [(r.image_id, r.score, r.match_type) for r in ranked] == [
        ("c", 0.99, "contains"),
        ("f", 0.8, "full"),
    ]


def test_rescores_replace_only_worse_scores_and_reorder() -> None:
    ranked = merge_matches(
        {"a": 0.95, "b": 0.90},
        {"b": WindowMatch("b", 0.93, 0.93, 0.9, 2, [((0, 0, 50, 50), 0.93)])},
        limit=10,
    )
    rescored = apply_rescores(
        ranked,
        {
            "a": Rescore("a", 0.94, (1, 1, 2, 2)),  # lower than 0.95: ignored
            "b": Rescore("b", 0.99, (10, 10, 30, 30)),
        },
        limit=10,
    )
    assert [(r.image_id, r.score, r.match_type) for r in rescored] == [
        ("b", 0.99, "full_and_partial"),
        ("a", 0.95, "full"),
    ]
    b = rescored[0].windows
    assert b is not None
    assert b.boxes == [((10, 10, 30, 30), 0.99), ((0, 0, 50, 50), 0.93)]
    assert (b.count, b.max_score) == (2, 0.99)
    assert apply_rescores(ranked, {}, limit=1, min_score=0.92) == ranked[:1]
    assert apply_rescores(ranked, {}, limit=5, min_score=0.96) == []


def test_contains_rescore_moves_the_query_box() -> None:
    cont = {"c": ContainsMatch("c", 0.9, (0, 0, 9, 9), (0, 0, 9, 9), (0, 0, 90, 90))}
    ranked = merge_matches({}, {}, limit=5, contains=cont)
    out = apply_rescores(ranked, {"c": Rescore("c", 0.98, (0, 0, 90, 90), (5, 5, 50, 50))}, limit=5)
    assert out[0].contains == ContainsMatch("c", 0.98, (0, 0, 9, 9), (5, 5, 50, 50), (0, 0, 90, 90))
    assert out[0].match_type == "contains"
