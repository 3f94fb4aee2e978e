"""Window geometry: exact numbers."""

from __future__ import annotations

import pytest

from imgsearch_common.windows import (
    axis_count,
    axis_positions,
    baseline_window_boxes,
    box_iou,
    centre_square,
    fit_box,
    geometry_boxes,
    grid_counts,
    parent_box_in_query,
    query_window_boxes,
    refine_boxes,
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


def test_baseline_windows_are_fixed_pixels_at_stride_56() -> None:
    # 1280x853: 224 px → 19 x 12 = 228 windows, 448 px → 15 x 8 = 120 windows.
    boxes = baseline_window_boxes(1280, 853)
    assert len(boxes) == 348
    assert boxes[:2] == [(0, 0, 224, 224), (56, 0, 280, 224)]
    assert boxes[18] == (1008, 0, 1232, 224)  # the last 224 window of a row; 48 px left over
    assert boxes[228] == (0, 0, 448, 448)
    assert boxes[-1] == (784, 392, 1232, 840)
    # A 300x300 picture: 224 px windows only (2 x 2); under 224 px: nothing at all.
    assert baseline_window_boxes(300, 300) == [
        (0, 0, 224, 224), (56, 0, 280, 224), (0, 56, 224, 280), (56, 56, 280, 280),
    ]  # fmt: skip
    assert baseline_window_boxes(200, 900) == []
    assert len(baseline_window_boxes(1000, 1000, sides=(500,), stride=250)) == 9
    with pytest.raises(ValueError):
        baseline_window_boxes(100, 100, stride=0)


def test_geometry_boxes_selects_by_name() -> None:
    assert geometry_boxes("relative", 1024, 1024) == window_boxes(1024, 1024)
    assert geometry_boxes("relative", 1000, 1000, (0.5,), 0.5, 64) == window_boxes(
        1000, 1000, (0.5,), 0.5, 64
    )
    assert geometry_boxes("baseline", 1280, 853) == baseline_window_boxes(1280, 853)
    with pytest.raises(ValueError):
        geometry_boxes("pyramid", 100, 100)  # type: ignore[arg-type]


def test_fit_box_moves_inside_and_shrinks_only_when_too_big() -> None:
    assert fit_box(50, 50, 40, 20, 200, 100) == (30, 40, 70, 60)
    assert fit_box(5, 95, 40, 20, 200, 100) == (0, 80, 40, 100)  # moved, not shrunk
    assert fit_box(100, 50, 300, 20, 200, 100) == (0, 40, 200, 60)  # wider than the image


def test_centre_square_is_what_the_model_sees() -> None:
    assert centre_square(640, 480) == (80, 0, 560, 480)
    assert centre_square(300, 451) == (0, 76, 300, 376)  # (451 - 300) / 2 = 75.5 rounds to 76
    assert centre_square(100, 100) == (0, 0, 100, 100)


def test_refine_boxes_keep_the_query_shape_around_the_region() -> None:
    # A square 400 px region, a query twice as wide as tall, one fraction: one box of the
    # region's area (566 x 283), centred on the region, moved inside the picture.
    assert refine_boxes((0, 0, 400, 400), 2.0, 800, 600, fractions=(1.0,)) == [(0, 58, 566, 341)]
    # Smaller fractions add the centred box and four boxes shifted towards the corners.
    boxes = refine_boxes((200, 100, 600, 500), 1.0, 800, 600, fractions=(1.0, 0.25), shift=0.25)
    assert boxes == [
        (200, 100, 600, 500),
        (300, 200, 500, 400),
        (200, 100, 400, 300), (400, 100, 600, 300), (200, 300, 400, 500), (400, 300, 600, 500),
    ]  # fmt: skip
    assert len(refine_boxes((0, 0, 400, 400), 1.0, 800, 600)) == 11  # default fractions
    with pytest.raises(ValueError):
        refine_boxes((0, 0, 0, 10), 1.0, 100, 100)
    with pytest.raises(ValueError):
        refine_boxes((0, 0, 10, 10), 0.0, 100, 100)


def test_parent_box_in_query_applies_the_window_transform_to_the_frame() -> None:
    # The query shows the picture's centre square (200..600 of an 800x400 picture) at half
    # size in (100, 100)-(300, 300): the whole picture spans (0, 100)-(400, 300).
    assert parent_box_in_query((100, 100, 300, 300), (200, 0, 600, 400), (800, 400)) == (
        0, 100, 400, 300,
    )  # fmt: skip
    # Not clipped: the picture may stick out of the query.
    assert parent_box_in_query((0, 0, 100, 100), (100, 100, 200, 200), (400, 400)) == (
        -100, -100, 300, 300,
    )  # fmt: skip


def test_query_window_boxes_are_denser_and_capped() -> None:
    boxes = query_window_boxes(1280, 800)
    assert len(boxes) == 16
    sides = sorted({b[2] - b[0] for b in boxes}, reverse=True)
    assert sides == [640, 480, 360, 240]  # 0.8, 0.6, 0.45, 0.3 of the short side
    assert query_window_boxes(1280, 800, scales=(0.5,), max_windows=100) == window_boxes(
        1280, 800, (0.5,), 0.5, 100
    )
