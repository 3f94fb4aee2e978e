"""The quality benchmark's stage-one figures: recall@K per family, and their table."""

from __future__ import annotations

from typing import Any

from benchmarks.quality import figures, stage_one_lines


def _outcome(group: str, rank: int | None) -> dict[str, Any]:
    return {
        "family": "partial",
        "group": group,
        "target": "x",
        "rank": rank,
        "results": 32,
        "top_score": 0.9,
        "target_score": 0.9 if rank else None,
        "box_iou": 0.5,
        "query_box_iou": None,
        "latency_ms": 100.0,
        "timings_ms": {"aggregate": 1.0},
    }


def test_recall_at_k_counts_the_parents_within_the_first_k() -> None:
    outcomes = [_outcome("5%", r) for r in (1, 3, 9, None)] + [_outcome("50%", 1)]
    fig = figures(outcomes, ks=(1, 2, 8, 16))
    assert fig["partial/5%"]["recall@k"] == {"1": 0.25, "2": 0.25, "8": 0.5, "16": 0.75}
    assert fig["partial"]["recall@k"] == {"1": 0.4, "2": 0.4, "8": 0.6, "16": 0.8}
    assert "recall@k" not in figures(outcomes)["partial"]  # only where asked for


def test_the_stage_one_table_has_a_row_per_family_and_a_column_per_k() -> None:
    outcomes = [_outcome("5%", r) for r in (1, 3, 9, None)]
    report = {"modes": {"stage1": {"figures": figures(outcomes, ks=(1, 8)), "results_limit": 32}}}
    lines = stage_one_lines(report)
    assert "RESCORE_TOP_K=0, top 32" in lines[0]
    assert lines[1].split() == ["family", "K=1", "K=8"]
    assert lines[2].split() == ["partial", "(4)", "0.250", "0.500"]
    assert lines[3].split() == ["partial/5%", "(4)", "0.250", "0.500"]
    assert stage_one_lines({"modes": {}}) == []
