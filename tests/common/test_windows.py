"""Window geometry: exact numbers."""

from __future__ import annotations

import pytest

from imgsearch_common.windows import (
    axis_count,
    axis_positions,
    box_iou,
    grid_counts,
    window_boxes,
)


def test_axis_positions_touch_both_ends_and_are_even() -> None:
    assert axis_positions(1000, 500, 3) == [0, 250, 500]
    assert axis_positions(1000, 400, 4) == [0, 200, 400, 600]
    assert axis_positions(500, 500, 3) == [0]  # window as long as the axis
    assert axis_positions(1000, 400, 1) == [300]  # a single window is centred


def test_axis_count_gives_at_least_the_overlap() -> None:
    assert axis_count(1000, 500, 0.5) == 3  # stride 250: 0, 250, 500
    assert axis_count(1001, 500, 0.5) == 4
    assert axis_count(500, 500, 0.5) == 1
    assert axis_count(1000, 500, 0.0) == 2


def test_square_image_default_grid() -> None:
    # 0.75 → side 768 of 1024: 2x2 grid; 0.5 → side 512: 3x3 grid → 13 windows.
    assert grid_counts(1024, 1024) == [(768, 2, 2), (512, 3, 3)]
    boxes = window_boxes(1024, 1024)
    assert len(boxes) == 13
    assert boxes[0] == (0, 0, 768, 768)
    assert boxes[3] == (256, 256, 1024, 1024)
    assert boxes[4:7] == [(0, 0, 512, 512), (256, 0, 768, 512), (512, 0, 1024, 512)]


def test_budget_is_respected_by_thinning_the_largest_grid() -> None:
    # 1280x853: unconstrained 3x2 + 6x4 = 30 windows; the budget of 16 thins the 0.5 grid.
    assert grid_counts(1280, 853, max_windows=10_000) == [(640, 3, 2), (426, 6, 4)]
    counts = grid_counts(1280, 853)
    assert sum(c * r for _, c, r in counts) <= 16
    assert counts == [(640, 3, 2), (426, 3, 3)]  # 6 + 9 = 15
    for x0, y0, x1, y1 in window_boxes(1280, 853):
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 853


@pytest.mark.parametrize(
    ("w", "h"), [(12_000, 9_000), (4000, 3000), (640, 480), (200, 200), (10_000, 900), (64, 900)]
)
def test_windows_are_relative_bounded_and_inside(w: int, h: int) -> None:
    boxes = window_boxes(w, h)
    assert 1 <= len(boxes) <= 16
    short = min(w, h)
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x1 - x0 == y1 - y0  # square
        assert (x1 - x0) in (round(short * 0.75), round(short * 0.5))


def test_large_and_small_images_get_the_same_layout() -> None:
    # Relative windows: a 12 MP photo and its 400 px thumbnail get the same grid.
    big = grid_counts(4000, 3000)
    small = grid_counts(400, 300)
    assert [(c, r) for _, c, r in big] == [(c, r) for _, c, r in small]


def test_tiny_images_get_no_windows_below_min_side() -> None:
    # 64 px: sides 48 (2x2) and 32 (3x3); 40 px: sides 30 and 20 are under 32 px.
    assert len(window_boxes(64, 64)) == 13
    assert window_boxes(40, 40) == []
    assert window_boxes(40, 40, scales=(0.75,), min_side=16) == [
        (0, 0, 30, 30), (10, 0, 40, 30), (0, 10, 30, 40), (10, 10, 40, 40),
    ]  # fmt: skip
    assert window_boxes(1000, 1000, max_windows=0) == []


def test_configurable_scales_and_budget() -> None:
    assert len(window_boxes(1000, 1000, scales=(0.5,), overlap=0.5, max_windows=64)) == 9
    assert len(window_boxes(1000, 1000, scales=(0.5, 0.25), max_windows=4)) == 4
    with pytest.raises(ValueError):
        window_boxes(1000, 1000, scales=(1.5,))
    with pytest.raises(ValueError):
        window_boxes(0, 10)


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
