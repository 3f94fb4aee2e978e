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

#: Rectangle proposals: working copy long side (px), the grey-level step that counts as an
#: edge, the shortest side (fraction of the short side), how much of each side must be edge.
RECT_LONG_SIDE = 640
RECT_EDGE_STEP = 6.0
RECT_MIN_SIDE = 0.15
RECT_MIN_COVER = 0.75
RECT_MAX = 10
#: Edge segments kept per direction (longest first): bounds the pairing work.
RECT_MAX_SEGMENTS = 60


def _runs(mask: np.ndarray, min_len: int) -> list[list[int]]:
    """``[row, start, end]`` of every run of True of at least ``min_len`` along axis 1."""
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1)
    out: list[list[int]] = []
    for row in np.nonzero(steps.any(axis=1))[0]:
        starts = np.nonzero(steps[row] == 1)[0]
        ends = np.nonzero(steps[row] == -1)[0]
        out.extend(
            [int(row), int(s), int(e)]
            for s, e in zip(starts, ends, strict=True)
            if e - s >= min_len
        )
    return out


def _merge_segments(segments: list[list[int]], tol: int = 2, gap: int = 4) -> list[list[int]]:
    """Collinear segments (same line within ``tol`` px, ends within ``gap``) merged."""
    out: list[list[int]] = []
    for line, a0, a1 in sorted(segments):
        for seg in out:
            if abs(seg[0] - line) <= tol and a0 <= seg[2] + gap and a1 >= seg[1] - gap:
                seg[1], seg[2] = min(seg[1], a0), max(seg[2], a1)
                break
        else:
            out.append([line, a0, a1])
    return out


def _cover(segments: list[list[int]], line: int, a0: int, a1: int, tol: int) -> float:
    """The largest share of ``a0..a1`` that one segment near ``line`` covers."""
    best = 0.0
    for at, s0, s1 in segments:
        if abs(at - line) <= tol:
            best = max(best, (min(s1, a1) - max(s0, a0)) / max(1, a1 - a0))
    return best


def rectangle_proposals(img: Image.Image, *, max_boxes: int = RECT_MAX) -> list[Box]:
    """Axis-aligned rectangles outlined by straight edges: where a screenshot or a collage
    may show a picture (``img``'s pixels, best first, overlapping ones dropped).

    A query window only matches a picture's vector when it is aligned with the picture to a
    few percent; a grid of windows rarely is, a detected outline is by construction.
    Straight horizontal and vertical edge segments are found on a small grey copy (runs of
    grey-level steps of at least ``RECT_EDGE_STEP``); two vertical segments and the two
    horizontal ones joining their ends, each covering ``RECT_MIN_COVER`` of its side, make a
    rectangle.
    """
    width, height = img.size
    f = min(1.0, RECT_LONG_SIDE / max(width, height))
    w, h = max(1, round(width * f)), max(1, round(height * f))
    grey = cv2.GaussianBlur(_grey(img, (w, h)), (3, 3), 0)
    min_len = max(8, int(RECT_MIN_SIDE * min(w, h)))
    step_h = np.zeros_like(grey)
    step_h[1:] = np.abs(grey[1:] - grey[:-1])
    step_v = np.zeros_like(grey)
    step_v[:, 1:] = np.abs(grey[:, 1:] - grey[:, :-1])
    close_h = np.ones((1, 7), np.uint8)
    close_v = np.ones((7, 1), np.uint8)
    mask_h = cv2.morphologyEx((step_h > RECT_EDGE_STEP).astype(np.uint8), cv2.MORPH_CLOSE, close_h)
    mask_v = cv2.morphologyEx((step_v > RECT_EDGE_STEP).astype(np.uint8), cv2.MORPH_CLOSE, close_v)
    horizontal = _merge_segments(_runs(mask_h.astype(bool), min_len))
    vertical = _merge_segments(_runs(mask_v.astype(bool).T, min_len))
    horizontal = sorted(horizontal, key=lambda s: s[1] - s[2])[:RECT_MAX_SEGMENTS]
    vertical = sorted(sorted(vertical, key=lambda s: s[1] - s[2])[:RECT_MAX_SEGMENTS])
    tol = 3
    found: list[tuple[float, int, Box]] = []
    for xl, l0, l1 in vertical:
        for xr, r0, r1 in vertical:
            if xr - xl < min_len or min(l1, r1) - max(l0, r0) < min_len:
                continue
            for top in {l0, r0}:
                for bottom in {l1, r1}:
                    if bottom - top < min_len:
                        continue
                    span = bottom - top
                    cover = min(
                        _cover(horizontal, top, xl, xr, tol),
                        _cover(horizontal, bottom, xl, xr, tol),
                        (min(l1, bottom) - max(l0, top)) / span,
                        (min(r1, bottom) - max(r0, top)) / span,
                    )
                    if cover >= RECT_MIN_COVER:
                        found.append((round(cover, 1), (xr - xl) * span, (xl, top, xr, bottom)))
    found.sort(key=lambda t: (-t[0], -t[1], t[2]))
    kept: list[Box] = []
    for _, _, box in found:
        if all(box_iou(box, other) < 0.7 for other in kept):
            kept.append(box)
        if len(kept) >= max_boxes:
            break
    return [
        (round(x0 / f), round(y0 / f), min(width, round(x1 / f)), min(height, round(y1 / f)))
        for x0, y0, x1, y1 in kept
    ]
