"""Where does one picture appear inside another? Box proposals for re-scoring.

Indexed windows are coarse (at most ``MAX_WINDOWS`` per picture): they say *which*
picture a crop probably came from and roughly where, not the crop's exact box. Re-scoring
(``search.py``, stage two) needs candidate boxes to cut from the top pictures and score
with the model. :func:`locate` proposes one by normalised cross-correlation of grey pixels
(OpenCV's ``matchTemplate``, ``TM_CCOEFF_NORMED``, which ignores brightness and contrast
changes) over a range of sizes, on small copies of both pictures (a few milliseconds per
size).

The correlation only *proposes* a box; whether it matches is decided by the model's score
of the box, like every other candidate. A query that is not a copy of part of the picture
(another photo of the same thing, with real weights) gets some box of low correlation,
whose model score then usually loses to the box around the best window.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from imgsearch_common.windows import Box, box_iou

#: Long side of the searched picture's working copy (px). Larger: finer boxes, slower.
LOCATE_LONG_SIDE = 320
#: Ratio between consecutive template sizes tried.
LOCATE_SCALE_STEP = 1.15
#: Smallest template side tried (px of the working copy).
LOCATE_MIN_TEMPLATE = 12
#: Most sizes tried (from the largest that fits, down).
LOCATE_MAX_SCALES = 16
#: Second pass around the best coarse box: a working copy with this long side for the
#: neighbourhood, sizes within ±FINE_RANGE of the coarse one by FINE_STEP. The model sees a
#: crop at 224 px in 32 px patches, so a box a few percent off changes its vector more than
#: recompression does: the coarse step alone leaves boxes up to 7 % too large or small.
FINE_LONG_SIDE = 1024
FINE_STEP = 1.025
FINE_RANGE = 1.08


@dataclass(frozen=True)
class Located:
    #: The template's box in the searched picture's pixels.
    box: Box
    #: Normalised cross-correlation at that box, in [-1, 1].
    correlation: float


def _grey(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    small = img if img.size == size else img.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(small.convert("L"), dtype=np.float32)


def template_sizes(
    template_size: tuple[int, int],
    picture_size: tuple[int, int],
    *,
    step: float = LOCATE_SCALE_STEP,
    min_side: float = LOCATE_MIN_TEMPLATE,
    max_scales: int = LOCATE_MAX_SCALES,
) -> list[tuple[int, int]]:
    """The sizes tried for a template of ``template_size`` inside ``picture_size`` (both in
    working-copy pixels): its aspect ratio kept, the largest that fits first, each next one
    ``step`` times smaller, down to ``min_side`` px on the short side, at most ``max_scales``.
    """
    tw, th = template_size
    pw, ph = picture_size
    if tw <= 0 or th <= 0 or pw <= 0 or ph <= 0:
        raise ValueError("sizes must be positive")
    if step <= 1.0:
        raise ValueError("step must be > 1")
    scale = min(pw / tw, ph / th)
    out: list[tuple[int, int]] = []
    while len(out) < max_scales:
        w, h = min(pw, round(tw * scale)), min(ph, round(th * scale))
        if min(w, h) < min_side:
            break
        if (w, h) not in out:
            out.append((w, h))
        scale /= step
    return out


def _best_match(
    picture: np.ndarray, template: np.ndarray, sizes: list[tuple[int, int]]
) -> tuple[float, int, int, int, int] | None:
    """``(correlation, x, y, w, h)`` of the best placement of ``template`` at any of
    ``sizes`` in ``picture`` (grey float32 arrays), or None."""
    best: tuple[float, int, int, int, int] | None = None
    ph, pw = picture.shape
    for w, h in sizes:
        if w > pw or h > ph or min(w, h) < 2:
            continue
        t = cv2.resize(template, (w, h), interpolation=cv2.INTER_AREA)
        if float(t.std()) < 1e-3:
            continue  # a flat template correlates with nothing
        scores = cv2.matchTemplate(picture, t, cv2.TM_CCOEFF_NORMED)
        _, value, _, (x, y) = cv2.minMaxLoc(scores)
        if np.isfinite(value) and (best is None or value > best[0]):
            best = (float(value), x, y, w, h)
    return best


def locate(
    template: Image.Image,
    picture: Image.Image,
    *,
    long_side: int = LOCATE_LONG_SIDE,
    step: float = LOCATE_SCALE_STEP,
    min_side: float = LOCATE_MIN_TEMPLATE,
    max_scales: int = LOCATE_MAX_SCALES,
    fine_long_side: int = FINE_LONG_SIDE,
) -> Located | None:
    """The box of ``picture`` (its pixels) that looks most like ``template`` at any size.

    A coarse pass over the whole picture on a small copy, then a fine pass (finer sizes, more
    pixels) in the neighbourhood of the coarse box. None when no size fits (a template too
    small to correlate, or a flat one).
    """
    pw, ph = picture.size
    f = min(1.0, long_side / max(pw, ph))
    work = (max(1, round(pw * f)), max(1, round(ph * f)))
    grey_picture = _grey(picture, work)
    # The template's working copy: as large as the largest size the fine pass may try.
    ff = min(1.0, fine_long_side / max(pw, ph))
    tf = min(1.0, ff * max(pw, ph) / max(template.size))
    base = _grey(
        template, (max(1, round(template.width * tf)), max(1, round(template.height * tf)))
    )
    sizes = template_sizes(
        (base.shape[1], base.shape[0]), work, step=step, min_side=min_side, max_scales=max_scales
    )
    coarse = _best_match(grey_picture, base, sizes)
    if coarse is None:
        return None
    value, x, y, w, h = coarse
    box = (x / f, y / f, (x + w) / f, (y + h) / f)
    if ff > f:
        fine = _refine(picture, base, box, ff)
        if fine is not None and fine[0] >= value:
            value, box = fine
    x0, y0, x1, y1 = box
    out = (max(0, round(x0)), max(0, round(y0)), min(pw, round(x1)), min(ph, round(y1)))
    return Located(out, value)


def _refine(
    picture: Image.Image,
    template: np.ndarray,
    box: tuple[float, float, float, float],
    ff: float,
) -> tuple[float, tuple[float, float, float, float]] | None:
    """The fine pass: sizes within ±FINE_RANGE of ``box``'s, in its neighbourhood, on a
    working copy at scale ``ff``; the best correlation and box (picture pixels)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    # Neighbourhood: the box grown by the largest size change plus a coarse pixel or two.
    mx, my = bw * (FINE_RANGE - 1) + bw * 0.1, bh * (FINE_RANGE - 1) + bh * 0.1
    nx0, ny0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
    nx1, ny1 = min(picture.width, int(x1 + mx) + 1), min(picture.height, int(y1 + my) + 1)
    region = picture.crop((nx0, ny0, nx1, ny1))
    rw, rh = max(1, round(region.width * ff)), max(1, round(region.height * ff))
    grey = _grey(region, (rw, rh))
    sizes = []
    scale = 1.0 / FINE_RANGE
    while scale <= FINE_RANGE + 1e-9:
        sizes.append((round(bw * ff * scale), round(bh * ff * scale)))
        scale *= FINE_STEP
    found = _best_match(grey, template, sizes)
    if found is None:
        return None
    value, x, y, w, h = found
    sx, sy = region.width / rw, region.height / rh
    return value, (nx0 + x * sx, ny0 + y * sy, nx0 + (x + w) * sx, ny0 + (y + h) * sy)


# --- rectangles in a query ----------------------------------------------------------------

#: Rectangle proposals: working copy long side (px), the colour step (0–255, largest over
#: the channels) that counts as an edge, the shortest side (fraction of the short side), how
#: much of each side must be edge, most proposals, candidate lines kept per direction.
RECT_LONG_SIDE = 640
RECT_EDGE_STEP = 8.0
RECT_MIN_SIDE = 0.15
RECT_MIN_COVER = 0.7
RECT_WEAK_SIDE = 0.4
RECT_MAX = 10
RECT_MAX_LINES = 32
RECT_RANKED = 400


def _candidate_lines(edges: np.ndarray, min_len: int, keep: int) -> list[int]:
    """Rows of ``edges`` (bool, one row per line position) holding a run of at least
    ``min_len`` edge pixels, longest run first, one per ±2 px, at most ``keep``."""
    padded = np.pad(edges.astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1)
    longest: dict[int, int] = {}
    for row in np.nonzero(steps.any(axis=1))[0]:
        starts = np.nonzero(steps[row] == 1)[0]
        ends = np.nonzero(steps[row] == -1)[0]
        run = int((ends - starts).max())
        if run >= min_len:
            longest[int(row)] = run
    # The first and last lines are the canvas's border: always candidates, exactly there.
    kept: list[int] = [0, edges.shape[0] - 1]
    for line in sorted(longest, key=lambda r: (-longest[r], r)):
        if all(abs(line - k) > 2 for k in kept):
            kept.append(line)
        if len(kept) >= keep + 2:
            break
    return sorted(kept)


def _side_cover(edges: np.ndarray, lines: list[int], ends: np.ndarray) -> np.ndarray:
    """``out[k, i, j]``: the share of line ``lines[k]`` of ``edges`` between positions
    ``ends[i]`` and ``ends[j]`` that is edge (0 where j <= i)."""
    cum = np.zeros((edges.shape[0], edges.shape[1] + 1), np.float32)
    cum[:, 1:] = np.cumsum(edges, axis=1)
    rows = cum[lines][:, ends]  # (lines, ends)
    length = (ends[None, :] - ends[:, None]).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (rows[:, None, :] - rows[:, :, None]) / length[None]
    return np.where(length[None] > 0, out, 0.0)


def _ridge(step: np.ndarray) -> np.ndarray:
    """Where ``step`` (colour change between consecutive lines, one row per line) is at
    least ``RECT_EDGE_STEP`` and no smaller than on the lines either side: an outline is a
    sharp ridge along one line, a texture's gradient is spread over several, so its
    ridges are short and crooked rather than long straight runs."""
    padded = np.pad(step, ((1, 1), (0, 0)))
    return (step >= RECT_EDGE_STEP) & (step >= padded[:-2]) & (step > padded[2:])


def rectangle_proposals(img: Image.Image, *, max_boxes: int = RECT_MAX) -> list[Box]:
    """Axis-aligned rectangles outlined by straight edges: where a screenshot or a collage
    may show a picture (``img``'s pixels, best first, overlapping ones dropped).

    A query window only matches a picture's vector when it is aligned with the picture to a
    few percent; a grid of windows rarely is, a detected outline is by construction.
    On a small blurred copy, a pixel is a horizontal (vertical) edge where the colour
    changes by ``RECT_EDGE_STEP`` from the pixel above (left) and more than on the lines
    either side (``_ridge``), ±1 px; the canvas's own border counts as an edge (a picture
    pasted in a corner). The ``RECT_MAX_LINES`` rows and columns holding the longest edge
    runs are the candidate sides; every rectangle they make is measured directly (the share
    of each of its four sides that is edge, with prefix sums) and kept when three sides
    reach ``RECT_MIN_COVER`` and the fourth ``RECT_WEAK_SIDE``; ranked by the mean share.
    Bands between opposite borders (the canvas itself, a title bar) are not proposals.
    Measured on the quality benchmark's 52 ``contains`` queries (1280 x 800 screenshots and
    collages): a proposal within IoU 0.9 of the pasted picture for 35, against 25 for the
    first version (segment ends paired, grey steps, no ridge test). 70–100 ms a query.
    """
    width, height = img.size
    f = min(1.0, RECT_LONG_SIDE / max(width, height))
    w, h = max(1, round(width * f)), max(1, round(height * f))
    small = img if img.size == (w, h) else img.resize((w, h), Image.Resampling.BILINEAR)
    rgb = cv2.GaussianBlur(np.asarray(small.convert("RGB"), dtype=np.float32), (3, 3), 0)
    min_len = max(8, int(RECT_MIN_SIDE * min(w, h)))
    # Line y of edge_h lies between pixel rows y-1 and y (0 and h: the canvas's border).
    edge_h = np.ones((h + 1, w), bool)
    edge_h[1:h] = _ridge(np.abs(rgb[1:] - rgb[:-1]).max(axis=2))
    edge_v = np.ones((w + 1, h), bool)
    edge_v[1:w] = _ridge(np.abs(rgb[:, 1:] - rgb[:, :-1]).max(axis=2).T)
    # ±1 px: a side may fall between two rows of the working copy. (Dilation reaches the
    # border lines' neighbours; the border itself stays the exact first and last line.)
    edge_h = cv2.dilate(edge_h.astype(np.uint8), np.ones((3, 1), np.uint8)).astype(bool)
    edge_v = cv2.dilate(edge_v.astype(np.uint8), np.ones((3, 1), np.uint8)).astype(bool)
    rows = _candidate_lines(edge_h, min_len, RECT_MAX_LINES)
    cols = _candidate_lines(edge_v, min_len, RECT_MAX_LINES)
    if len(rows) < 2 or len(cols) < 2:
        return []
    ys, xs = np.array(rows), np.array(cols)
    cover_h = _side_cover(edge_h, rows, xs)  # (rows, cols, cols)
    cover_v = _side_cover(edge_v, cols, ys)  # (cols, rows, rows)
    # sides[k, t, b, l, r]: the share of edge along side k of rectangle (l, t, r, b).
    shape = (len(rows), len(rows), len(cols), len(cols))
    sides = np.stack(
        [
            np.broadcast_to(cover_h[:, None, :, :], shape),
            np.broadcast_to(cover_h[None, :, :, :], shape),
            np.broadcast_to(cover_v.transpose(1, 2, 0)[:, :, :, None], shape),
            np.broadcast_to(cover_v.transpose(1, 2, 0)[:, :, None, :], shape),
        ]
    )
    sides.sort(axis=0)
    # Three sides well outlined; the fourth may fade into the background (a picture whose
    # border looks like the canvas) but must still show.
    outlined = (sides[1] >= RECT_MIN_COVER) & (sides[0] >= RECT_WEAK_SIDE)
    mean = sides.mean(axis=0)
    big = (ys[None, :] - ys[:, None] >= min_len)[:, :, None, None] & (
        xs[None, :] - xs[:, None] >= min_len
    )[None, None, :, :]
    # Not a band between two opposite borders of the canvas (the canvas itself, a title
    # bar): a pasted picture touches at most two adjacent borders.
    across_h = (ys[:, None] == 0) & (ys[None, :] == h)
    across_w = (xs[:, None] == 0) & (xs[None, :] == w)
    big &= ~across_h[:, :, None, None] & ~across_w[None, None, :, :]
    # Best outlined first (the mean share of edge along the four sides; ties: the larger).
    # A texture outlines thousands: only the best RECT_RANKED are ranked.
    found = np.argwhere(big & outlined)
    if len(found) > RECT_RANKED:
        means = mean[tuple(found.T)]
        found = found[np.argpartition(-means, RECT_RANKED)[:RECT_RANKED]]
    order = sorted(
        (
            -float(mean[t, b, x0, x1]),
            -int((xs[x1] - xs[x0]) * (ys[b] - ys[t])),
            (int(xs[x0]), int(ys[t]), int(xs[x1]), int(ys[b])),
        )
        for t, b, x0, x1 in found
    )
    kept: list[Box] = []
    for _, _, box in order:
        if all(box_iou(box, other) < 0.7 for other in kept):
            kept.append(box)
        if len(kept) >= max_boxes:
            break
    return [
        (round(x0 / f), round(y0 / f), min(width, round(x1 / f)), min(height, round(y1 / f)))
        for x0, y0, x1, y1 in kept
    ]
