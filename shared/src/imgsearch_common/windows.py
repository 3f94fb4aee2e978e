"""Sliding-window geometry: where windows go on an image. Pure functions.

Windows are **square** and sized **relative to the image's short side**, so a
12-megapixel photo and a 200-pixel icon get the same handful of windows (the
seed's fixed 224/448 px windows at stride 56 gave hundreds on the first and none
on the second). Square windows are what the model sees without a centre crop
throwing part of the window away, so a window's box is exactly the region its
vector describes.

Boxes are ``(x0, y0, x1, y1)`` in original-image pixels, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = tuple[int, int, int, int]

DEFAULT_SCALES: tuple[float, ...] = (0.75, 0.5)
DEFAULT_OVERLAP = 0.5
DEFAULT_MAX_WINDOWS = 16
DEFAULT_MIN_SIDE = 32


def axis_positions(length: int, side: int, count: int) -> list[int]:
    """``count`` start offsets of a window of ``side`` px spread evenly over ``length``.

    The first window touches the start, the last touches the end, the rest are
    evenly spaced (rounded to whole pixels).
    """
    if count <= 1 or length <= side:
        return [max(0, (length - side) // 2)]
    span = length - side
    return [round(i * span / (count - 1)) for i in range(count)]


def axis_count(length: int, side: int, overlap: float) -> int:
    """How many windows of ``side`` px cover ``length`` px with at least ``overlap``."""
    if length <= side:
        return 1
    stride = side * (1.0 - overlap)
    return math.ceil((length - side) / stride - 1e-9) + 1


def grid_counts(
    width: int,
    height: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    overlap: float = DEFAULT_OVERLAP,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> list[tuple[int, int, int]]:
    """Per scale: ``(side, columns, rows)`` after fitting the budget ``max_windows``.

    Each scale starts with the grid that gives the requested ``overlap``. While
    the total is over budget, the largest grid loses one column or row (its longer
    axis first), which widens that scale's stride: every scale keeps covering the
    whole image, only less densely. Scales whose side would be under ``min_side``
    pixels, or that repeat a side already present, are dropped.
    """
    if width <= 0 or height <= 0:
        raise ValueError("image size must be positive")
    if not 0.0 <= overlap < 1.0:
        raise ValueError("overlap must be in [0, 1)")
    short = min(width, height)
    grids: list[list[int]] = []
    seen: set[int] = set()
    for scale in scales:
        if not 0.0 < scale <= 1.0:
            raise ValueError("window scales must be in (0, 1]")
        side = round(short * scale)
        if side < min_side or side in seen:
            continue
        seen.add(side)
        grids.append([side, axis_count(width, side, overlap), axis_count(height, side, overlap)])
    while grids and sum(c * r for _, c, r in grids) > max_windows:
        biggest = max(grids, key=lambda g: (g[1] * g[2], -g[0]))
        if biggest[1] * biggest[2] == 1:
            grids.remove(biggest)  # budget smaller than the number of scales
            continue
        if biggest[1] >= biggest[2] and biggest[1] > 1:
            biggest[1] -= 1
        else:
            biggest[2] -= 1
    return [(side, cols, rows) for side, cols, rows in grids]


def window_boxes(
    width: int,
    height: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    overlap: float = DEFAULT_OVERLAP,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> list[Box]:
    """All window boxes for an image of ``width`` x ``height``, largest scale first.

    At most ``max_windows`` boxes; each lies fully inside the image; windows of
    one scale overlap their neighbours by at least ``overlap`` unless the budget
    forced a wider stride.
    """
    if max_windows <= 0:
        return []
    boxes: list[Box] = []
    for side, cols, rows in grid_counts(width, height, scales, overlap, max_windows, min_side):
        for y in axis_positions(height, side, rows):
            for x in axis_positions(width, side, cols):
                boxes.append((x, y, x + side, y + side))
    return boxes


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0.0 when disjoint)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0
