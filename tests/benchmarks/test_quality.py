"""The quality benchmark's own logic (benchmarks.quality, benchmarks.quality_data): query
generation and the figures, with exact numbers. The benchmark itself is a program
(``make bench-quality``); running it takes minutes, so tests check its parts."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from benchmarks import quality_data as qd
from benchmarks.quality import figures, threshold_sweep


def _photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("area", qd.PARTIAL_AREAS)
def test_random_boxes_have_the_area_and_lie_inside(area: float) -> None:
    rng = random.Random(1)
    for _ in range(200):
        x0, y0, x1, y1 = qd.random_box(rng, 800, 500, area)
        assert 0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 500
        assert (x1 - x0) * (y1 - y0) == pytest.approx(area * 800 * 500, rel=0.03)
        assert 0.5 / 1.05 <= (x1 - x0) / (y1 - y0) <= 2.0 * 1.05 or area >= 0.5


def test_queries_are_the_same_on_every_run() -> None:
    photos = {"a": _photo(300, 200, 0), "b": _photo(200, 240, 1)}
    canvases = {"c": _photo(320, 200, 2), "d": _photo(320, 200, 3)}

    def make() -> list[qd.Query]:
        return (
            qd.full_queries(photos)
            + qd.partial_queries(photos, per_area=2)
            + qd.contains_queries(photos, canvases, size=(640, 400))
            + qd.distractor_queries(canvases)
        )

    first, second = make(), make()
    assert [(q.name, q.data, q.box, q.query_box) for q in first] == [
        (q.name, q.data, q.box, q.query_box) for q in second
    ]
    counts = {}
    for q in first:
        counts[q.family] = counts.get(q.family, 0) + 1
    assert counts == {"full": 2, "partial": 16, "contains": 2, "distractor": 6}
    for q in first:
        img = Image.open(io.BytesIO(q.data))
        assert img.format == "JPEG"
        if q.family == "partial":
            assert q.box is not None and img.size == (q.box[2] - q.box[0], q.box[3] - q.box[1])
        if q.family == "contains":
            assert q.query_box is not None and img.size == (640, 400)
            x0, y0, x1, y1 = q.query_box
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 400
        assert (q.target is None) == (q.family == "distractor")


def _outcome(family: str, group: str, rank: int | None, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "family": family,
        "group": group,
        "target": None if family == "distractor" else "x",
        "rank": rank,
        "results": 0 if rank is None and family == "distractor" else 10,
        "top_score": 0.9,
        "target_score": 0.9 if rank else None,
        "box_iou": None,
        "query_box_iou": None,
        "latency_ms": 100.0,
        "timings_ms": {"aggregate": 1.0},
    }
    base.update(extra)
    return base


def test_figures_exact() -> None:
    outcomes = [
        _outcome("partial", "5%", 1, box_iou=1.0),
        _outcome("partial", "5%", 2, box_iou=0.5),
        _outcome("partial", "10%", 6, box_iou=0.0),
        _outcome("partial", "10%", None, box_iou=0.0),
        _outcome("distractor", "whole", None, results=0),
        _outcome("distractor", "whole", None, results=3),
    ]
    fig = figures(outcomes)
    assert fig["partial"]["recall@1"] == 0.25
    assert fig["partial"]["recall@5"] == 0.5
    assert fig["partial"]["mrr"] == round((1 + 0.5 + 1 / 6) / 4, 4)
    assert fig["partial"]["box_iou"] == 0.375
    assert fig["partial/5%"]["recall@5"] == 1.0
    assert fig["distractor"]["false_match_rate"] == 0.5
    assert fig["partial"]["latency_p50_ms"] == 100.0


def test_threshold_sweep_exact() -> None:
    outcomes = [
        _outcome("partial", "5%", 1, target_score=0.999),
        _outcome("partial", "5%", 1, target_score=0.97),
        _outcome("partial", "5%", 2, target_score=0.999),
        _outcome("distractor", "whole", None, results=10, top_score=0.985),
        _outcome("distractor", "whole", None, results=10, top_score=0.92),
    ]
    sweep = {row["min_score"]: row for row in threshold_sweep(outcomes)}
    assert sweep[0.9] == {"min_score": 0.9, "false_match_rate": 1.0, "recall@1": 0.6667}
    assert sweep[0.98] == {"min_score": 0.98, "false_match_rate": 0.5, "recall@1": 0.3333}
    assert sweep[0.99] == {"min_score": 0.99, "false_match_rate": 0.0, "recall@1": 0.3333}
