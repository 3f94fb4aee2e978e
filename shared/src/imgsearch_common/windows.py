"""Sliding-window geometry: where windows go on an image. Pure functions.

Windows are **square** and sized **relative to the image's short side**, so a
12-megapixel photo and a 200-pixel icon get the same handful of windows (the
original system's fixed 224/448 px windows at stride 56 gave hundreds on the first and
none on the second). Square windows are what the model sees without a centre crop
throwing part of the window away, so a window's box is exactly the pixels its
vector describes.

The original system's geometry (fixed 224 and 448 px windows every 56 px,
:func:`baseline_window_boxes`) is kept as the *baseline* for the quality benchmark;
:func:`geometry_boxes` picks one of the two by name (``WINDOW_GEOMETRY``), and a
:class:`WindowLayout` carries the name with its knobs.

Boxes are ``(x0, y0, x1, y1)`` in original-image pixels, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Box = tuple[int, int, int, int]
WindowGeometry = Literal["relative", "baseline"]
WINDOW_GEOMETRIES: tuple[WindowGeometry, ...] = ("relative", "baseline")

DEFAULT_SCALES: tuple[float, ...] = (0.75, 0.5)
DEFAULT_OVERLAP = 0.5
DEFAULT_MAX_WINDOWS = 16
DEFAULT_MIN_SIDE = 32
#: The original system's fixed window sides and stride, in pixels.
BASELINE_SIDES: tuple[int, ...] = (224, 448)
BASELINE_STRIDE = 56
#: Re-scoring candidates (:func:`refine_boxes`): areas relative to the matched box, and
#: the shift of the smaller boxes towards its corners (fraction of its side).
REFINE_FRACTIONS: tuple[float, ...] = (1.0, 0.6, 0.35)
REFINE_SHIFT = 0.25
#: Query-side windows (``contains`` matching, :func:`query_window_boxes`): denser than the
#: index's, since a picture embedded in a query can sit anywhere at any size; capped per
#: query (each is one more crop to encode per search).
QUERY_WINDOW_SCALES: tuple[float, ...] = (0.8, 0.6, 0.45, 0.3)
QUERY_WINDOW_OVERLAP = 0.5
QUERY_WINDOW_MAX = 16


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


def baseline_window_boxes(
    width: int,
    height: int,
    sides: Sequence[int] = BASELINE_SIDES,
    stride: int = BASELINE_STRIDE,
) -> list[Box]:
    """The original system's windows: squares of fixed ``sides`` px every ``stride`` px,
    smallest first.

    As in the original, a window starts at 0 and steps by ``stride`` while it fits, so the
    right and bottom strips narrower than ``stride`` are never covered, and an image
    smaller than a side gets no window of that side (none at all under 224 px). The
    count grows with the pixel count: 348 windows for a 1280x853 photo.
    """
    if width <= 0 or height <= 0:
        raise ValueError("image size must be positive")
    if stride <= 0:
        raise ValueError("stride must be positive")
    boxes: list[Box] = []
    for side in sides:
        for y in range(0, height - side + 1, stride):
            for x in range(0, width - side + 1, stride):
                boxes.append((x, y, x + side, y + side))
    return boxes


def geometry_boxes(
    geometry: WindowGeometry,
    width: int,
    height: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    overlap: float = DEFAULT_OVERLAP,
    max_windows: int = DEFAULT_MAX_WINDOWS,
) -> list[Box]:
    """The windows of an image under the named geometry.

    ``"relative"``: :func:`window_boxes` with ``scales``, ``overlap`` and ``max_windows``.
    ``"baseline"``: :func:`baseline_window_boxes`, which has none of these knobs (and no
    budget).
    """
    if geometry == "relative":
        return window_boxes(width, height, scales, overlap, max_windows)
    if geometry == "baseline":
        return baseline_window_boxes(width, height)
    raise ValueError(f"unknown window geometry {geometry!r}; use one of {WINDOW_GEOMETRIES}")


@dataclass(frozen=True)
class WindowLayout:
    """Where an indexed image's windows go: the geometry by name, with its knobs
    (``WINDOW_GEOMETRY``, ``WINDOW_SCALES``, ``WINDOW_OVERLAP``, ``MAX_WINDOWS``)."""

    geometry: WindowGeometry = "relative"
    scales: tuple[float, ...] = DEFAULT_SCALES
    overlap: float = DEFAULT_OVERLAP
    max_windows: int = DEFAULT_MAX_WINDOWS

    def boxes(self, width: int, height: int) -> list[Box]:
        return geometry_boxes(
            self.geometry, width, height, self.scales, self.overlap, self.max_windows
        )


def query_window_boxes(
    width: int,
    height: int,
    scales: Sequence[float] = QUERY_WINDOW_SCALES,
    max_windows: int = QUERY_WINDOW_MAX,
) -> list[Box]:
    """Windows cut from a query to find indexed pictures that appear inside it.

    The same layout rule as the index's windows (:func:`window_boxes`), with the query's
    own scales, :data:`QUERY_WINDOW_OVERLAP` and budget.
    """
    return window_boxes(width, height, scales, QUERY_WINDOW_OVERLAP, max_windows)


def fit_box(cx: float, cy: float, w: float, h: float, width: int, height: int) -> Box:
    """A ``w`` x ``h`` box centred on ``(cx, cy)``, moved (not shrunk) to lie inside the image.

    Only a box larger than the image is shrunk, to the image's size on that axis. Sides are
    rounded to whole pixels and are at least 1 px.
    """
    bw = min(width, max(1, round(w)))
    bh = min(height, max(1, round(h)))
    x0 = min(max(0, round(cx - bw / 2)), width - bw)
    y0 = min(max(0, round(cy - bh / 2)), height - bh)
    return (x0, y0, x0 + bw, y0 + bh)


def centre_square(width: int, height: int) -> Box:
    """The square the model sees of a ``width`` x ``height`` picture (open_clip's centre crop),
    in that picture's pixels, with torchvision's rounding."""
    side = min(width, height)
    x0 = round((width - side) / 2.0)
    y0 = round((height - side) / 2.0)
    return (x0, y0, x0 + side, y0 + side)


def refine_boxes(
    matched: Box,
    aspect: float,
    width: int,
    height: int,
    fractions: Sequence[float] = REFINE_FRACTIONS,
    shift: float = REFINE_SHIFT,
) -> list[Box]:
    """Candidate boxes around ``matched`` for re-scoring a match at a finer offset.

    ``matched`` is where the query matched (a window, or the whole picture); ``aspect``
    is the query's width / height. For each fraction ``f`` of the matched box's area, a box
    of that area with the query's aspect ratio, centred on the matched box; boxes smaller
    than it are also tried shifted by ``shift`` of its side towards each of its four
    corners. Every box is moved inside the picture; duplicates are dropped; the order
    is fractions first, centred before shifted.
    """
    if aspect <= 0:
        raise ValueError("aspect must be positive")
    x0, y0, x1, y1 = matched
    rw, rh = x1 - x0, y1 - y0
    if rw <= 0 or rh <= 0:
        raise ValueError("the matched box must not be empty")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    area = rw * rh
    out: dict[Box, None] = {}
    for f in fractions:
        w, h = math.sqrt(f * area * aspect), math.sqrt(f * area / aspect)
        out[fit_box(cx, cy, w, h, width, height)] = None
        if f < 1.0:
            dx, dy = shift * rw, shift * rh
            for sx, sy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
                out[fit_box(cx + sx * dx, cy + sy * dy, w, h, width, height)] = None
    return list(out)


def parent_box_in_query(query_box: Box, matched_box: Box, parent_size: tuple[int, int]) -> Box:
    """Where a whole indexed picture lies in the query, if ``query_box`` (query pixels) shows
    ``matched_box`` (the picture's pixels) of it: the same similarity transform, applied to
    the picture's full frame. Not clipped to the query (the picture may stick out)."""
    qx0, qy0, qx1, qy1 = query_box
    mx0, my0, mx1, my1 = matched_box
    if mx1 <= mx0 or my1 <= my0:
        raise ValueError("matched_box must not be empty")
    sx = (qx1 - qx0) / (mx1 - mx0)
    sy = (qy1 - qy0) / (my1 - my0)
    pw, ph = parent_size
    return (
        round(qx0 - sx * mx0),
        round(qy0 - sy * my0),
        round(qx0 + sx * (pw - mx0)),
        round(qy0 + sy * (ph - my0)),
    )


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0.0 when disjoint)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0
