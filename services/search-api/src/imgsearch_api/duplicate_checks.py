"""The pixel checks of the duplicate finder (``duplicates.py``): pure functions, no I/O.

A model's similarity only *proposes* pairs; these decide, on pixels:

- :func:`near_checks` — two pictures are near duplicates (re-encoded, resized, lightly
  edited copies) when their aspect ratios agree, their signature thumbnails correlate
  (``NEAR_MIN_CORRELATION``) *and* so do the thumbnails' gradients (``NEAR_MIN_DETAIL``).
  The second test is what keeps two different smooth pictures apart (a blurred sky and
  another: 0.89 on grey levels, -0.10 on gradients, on the benchmark's wallpapers).
- :func:`image_hashes` — a 64-bit DCT hash of each thumbnail, whose 16-bit bands
  propose pairs the model missed (:func:`hash_candidates`).
- :func:`coarse_crop` — a first look, on the signatures alone, at whether a picture may
  be a crop of another: the child's thumbnail slid over the parent's at sizes around
  the matching window's.
- :func:`locate_crop` — where a child lies in a parent's pixels (read from their files):
  normalised cross-correlation over sizes around a prior on a small copy, refined on a
  larger one, then verified by the correlation of the pixels there and of their
  gradients at ``VERIFY_SIDE`` px, and by the child having some texture (a featureless
  child fits anywhere).

The thresholds were chosen on a calibration set of generated copies of real photos and
measured on a held-out one (``benchmarks/duplicates.py``, benchmarks/README.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from imgsearch_common.signatures import THUMB_SIDE, PixelSignature
from imgsearch_common.windows import Box

#: Two pictures whose aspect ratios differ by more than this (|log ratio|) are not copies.
NEAR_MAX_ASPECT = 0.04
#: Near duplicates: least correlation of the thumbnails' grey levels, and of their
#: gradients. On the calibration half (253 828 pairs of 713 files): unrelated pictures of
#: one aspect ratio reached 0.88 and 0.34; 99 % of copies 0.99 and 0.98; a brightened
#: copy whose whites clip, 0.785 and 0.91.
NEAR_MIN_CORRELATION = 0.70
NEAR_MIN_DETAIL = 0.60
#: Flat pictures (``signatures.FLAT_STD``) pair when their grey levels differ by at most this.
FLAT_MAX_MEAN_DIFF = 3.0
#: Pairs this alike (both correlations) and of the same size may hold identical pixels:
#: compared pixel by pixel from their files.
PIXELS_MIN_CORRELATION = 0.995
#: Hash bands of 16 bits; a bucket holding more images than this proposes nothing (a
#: common hash, e.g. of near-flat pictures, says little).
HASH_BANDS = 4
HASH_BUCKET_MAX = 32

#: Contained: the child covers at most this share of the parent (more: a near copy).
CONTAINED_MAX_AREA = 0.9
#: The first look on the signatures: least correlation of the child's thumbnail with the
#: parent's at some place and size; templates smaller than this (px of the thumbnail)
#: are not tried (the child is then looked at in the files directly).
COARSE_MIN_CORRELATION = 0.5
COARSE_MIN_SIDE = 6
#: Sizes tried around the prior (the matching window's), by this step, this many each way.
PRIOR_STEP = 1.09
PRIOR_STEPS = 7
#: Long side of the parent's copies: coarse pass, fine pass (px).
COARSE_LONG_SIDE = 160
FINE_LONG_SIDE = 448
#: The fine pass: sizes within ±FINE_RANGE of the coarse box by FINE_STEP.
FINE_RANGE = 1.07
FINE_STEP = 1.015
#: Side of the verification (px): the child and the parent's box there, compared.
VERIFY_SIDE = 64
#: Contained: least correlation at the box (fine pass), of the gradients at VERIFY_SIDE,
#: and least texture of the child (RMS of its gradients at VERIFY_SIDE, grey levels).
#: The gradients decide: on the calibration half, crops of the same photo that do not hold
#: the child reached a pixel correlation of 0.998 but gradients of 0.94 (99 %: 0.81);
#: 95 % of true crops are above 0.87.
CONTAINED_MIN_CORRELATION = 0.85
CONTAINED_MIN_DETAIL = 0.85
CONTAINED_MIN_TEXTURE = 1.0


# --- thumbnails ------------------------------------------------------------------------------


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit length (zero rows stay zero)."""
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: np.ndarray = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 1e-6)
    return out


def _gradients(thumbs: np.ndarray) -> np.ndarray:
    """``(n, S, S)`` -> ``(n, 2·S·(S-1))``: horizontal then vertical differences."""
    dx = thumbs[:, :, 1:] - thumbs[:, :, :-1]
    dy = thumbs[:, 1:, :] - thumbs[:, :-1, :]
    n, h, w = thumbs.shape
    return np.concatenate([dx.reshape(n, h * (w - 1)), dy.reshape(n, (h - 1) * w)], axis=1)


@dataclass(frozen=True)
class ThumbTable:
    """The signatures of many images as rows, ready for pairwise checks."""

    #: ``(n, S·S)`` unit rows of the grey levels, and of their gradients.
    grey: np.ndarray
    detail: np.ndarray
    #: ``log(width / height)`` per image.
    log_aspect: np.ndarray
    flat: np.ndarray
    mean: np.ndarray

    @classmethod
    def of(
        cls, signatures: Sequence[PixelSignature], sizes: Sequence[tuple[int, int]]
    ) -> ThumbTable:
        n = len(signatures)
        side = THUMB_SIDE
        thumbs = np.zeros((n, side, side), dtype=np.float32)
        for k, signature in enumerate(signatures):
            thumbs[k] = signature.thumb
        return cls(
            grey=_unit(thumbs.reshape(n, side * side)),
            detail=_unit(_gradients(thumbs)),
            log_aspect=np.array([math.log(w / h) for w, h in sizes], dtype=np.float64),
            flat=np.array([s.flat for s in signatures], dtype=bool),
            mean=np.array([s.mean for s in signatures], dtype=np.float32),
        )


@dataclass(frozen=True)
class NearCheck:
    i: int
    j: int
    #: None for two flat pictures (no structure to correlate).
    correlation: float | None
    detail: float | None
    passed: bool

    @property
    def score(self) -> float:
        return self.correlation if self.correlation is not None else 1.0


def near_checks(table: ThumbTable, pairs: Iterable[tuple[int, int]]) -> list[NearCheck]:
    """The near-duplicate check of each pair of rows of ``table``."""
    pairs = list(pairs)
    if not pairs:
        return []
    i = np.array([p[0] for p in pairs])
    j = np.array([p[1] for p in pairs])
    same_shape = np.abs(table.log_aspect[i] - table.log_aspect[j]) <= NEAR_MAX_ASPECT
    grey = np.einsum("ij,ij->i", table.grey[i], table.grey[j])
    detail = np.einsum("ij,ij->i", table.detail[i], table.detail[j])
    out = []
    for k in range(len(pairs)):
        a, b = int(i[k]), int(j[k])
        if table.flat[a] or table.flat[b]:
            both = bool(table.flat[a] and table.flat[b])
            close = abs(float(table.mean[a]) - float(table.mean[b])) <= FLAT_MAX_MEAN_DIFF
            out.append(NearCheck(a, b, None, None, both and close and bool(same_shape[k])))
            continue
        c, d = float(grey[k]), float(detail[k])
        passed = bool(same_shape[k]) and c >= NEAR_MIN_CORRELATION and d >= NEAR_MIN_DETAIL
        out.append(NearCheck(a, b, c, d, passed))
    return out


@lru_cache(maxsize=1)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.astype(np.float32)


def image_hashes(signatures: Sequence[PixelSignature]) -> np.ndarray:
    """A 64-bit DCT hash of each thumbnail (uint64): the 8 x 8 lowest frequencies but the
    constant one, plus the next vertical one, each above or below their median."""
    if not signatures:
        return np.zeros(0, dtype=np.uint64)
    d = _dct_matrix(THUMB_SIDE)
    thumbs = np.stack([s.thumb for s in signatures]).astype(np.float32)
    coeffs = d @ thumbs @ d.T
    low = coeffs[:, :8, :8].reshape(len(signatures), 64)[:, 1:]
    values = np.concatenate([low, coeffs[:, 8:9, 0]], axis=1)
    bits = values > np.median(values, axis=1, keepdims=True)
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    hashes: np.ndarray = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return hashes


def hash_candidates(hashes: np.ndarray, skip: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose hashes agree on a whole band (every pair within
    ``HASH_BANDS - 1`` differing bits, and more); rows where ``skip`` is set take no part."""
    pairs: set[tuple[int, int]] = set()
    for band in range(HASH_BANDS):
        buckets: dict[int, list[int]] = defaultdict(list)
        for idx, h in enumerate(hashes.tolist()):
            if skip is None or not skip[idx]:
                buckets[(int(h) >> (16 * band)) & 0xFFFF].append(idx)
        for members in buckets.values():
            if 1 < len(members) <= HASH_BUCKET_MAX:
                for x in range(len(members)):
                    for y in range(x + 1, len(members)):
                        pairs.add((members[x], members[y]))
    return pairs


def flat_candidates(table: ThumbTable) -> set[tuple[int, int]]:
    """Pairs of flat pictures of about the same grey level (each with the next few)."""
    flat = np.nonzero(table.flat)[0]
    order = flat[np.argsort(table.mean[flat], kind="stable")]
    pairs: set[tuple[int, int]] = set()
    for x, a in enumerate(order.tolist()):
        for b in order[x + 1 : x + 1 + HASH_BUCKET_MAX].tolist():
            if table.mean[b] - table.mean[a] > FLAT_MAX_MEAN_DIFF:
                break
            pairs.add((min(a, b), max(a, b)))
    return pairs


# --- crops ---------------------------------------------------------------------------------


def short_side_for(size: tuple[int, int], long_side: float) -> float:
    """The short side a decode needs for a copy of ``size`` with ``long_side`` px."""
    return long_side * min(size) / max(size)


def grey_copy(img: Image.Image, long_side: int = FINE_LONG_SIDE) -> np.ndarray:
    """``img``'s grey levels (float32), shrunk (block means) to at most ``long_side`` px:
    what :func:`locate_crop` compares."""
    f = min(1.0, long_side / max(img.size))
    size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
    grey = img.convert("L")
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32)


def _area_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out: np.ndarray = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    return out


def _sizes_around(
    prior: float, aspect: float, fits: tuple[int, int], min_side: float
) -> list[tuple[int, int]]:
    """Template sizes (w, h) of aspect ``aspect`` whose geometric mean side is ``prior``
    times PRIOR_STEP^k, |k| <= PRIOR_STEPS, that fit in ``fits`` and are at least
    ``min_side`` px."""
    out: list[tuple[int, int]] = []
    root = math.sqrt(aspect)
    for k in range(-PRIOR_STEPS, PRIOR_STEPS + 1):
        side = prior * PRIOR_STEP**k
        size = (round(side * root), round(side / root))
        if min(size) >= min_side and size[0] <= fits[0] and size[1] <= fits[1] and size not in out:
            out.append(size)
    return out


def _sizes_down(aspect: float, fits: tuple[int, int], min_side: float) -> list[tuple[int, int]]:
    """Without a prior: from the largest size that fits down, by PRIOR_STEP."""
    w = min(fits[0], fits[1] * aspect)
    out: list[tuple[int, int]] = []
    while True:
        size = (round(w), round(w / aspect))
        if min(size) < min_side:
            return out
        if size not in out:
            out.append(size)
        w /= PRIOR_STEP


def _best_placements(
    picture: np.ndarray, template: np.ndarray, sizes: Iterable[tuple[int, int]], keep: int
) -> list[tuple[float, int, int, int, int]]:
    """The ``keep`` best ``(correlation, x, y, w, h)`` of ``template`` resized to each size."""
    found = []
    ph, pw = picture.shape
    for w, h in sizes:
        if w > pw or h > ph or min(w, h) < 2:
            continue
        t = _area_resize(template, (w, h))
        if float(t.std()) < 1e-3:
            continue  # flat: correlates with nothing
        scores = cv2.matchTemplate(picture, t, cv2.TM_CCOEFF_NORMED)
        _, value, _, (x, y) = cv2.minMaxLoc(scores)
        if np.isfinite(value):
            found.append((float(value), x, y, w, h))
    found.sort(reverse=True)
    return found[:keep]


def _shrunk_to(template: np.ndarray, sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """``template`` shrunk once to the largest of ``sizes`` (when larger): resizing that
    copy to each size costs a fraction of resizing the original each time."""
    if not sizes:
        return template
    w = max(s[0] for s in sizes)
    h = max(s[1] for s in sizes)
    if template.shape[1] <= w or template.shape[0] <= h:
        return template
    return _area_resize(template, (w, h))


def coarse_crop(
    child: PixelSignature,
    child_size: tuple[int, int],
    parent: PixelSignature,
    parent_size: tuple[int, int],
    prior: Box | None,
) -> float | None:
    """The best correlation of ``child``'s thumbnail placed in ``parent``'s at sizes around
    ``prior`` (a box in the parent's pixels: the matching window), or None when the
    child would be too small there to tell (look at the files instead)."""
    if child.flat or parent.flat:
        return -1.0
    pw, ph = parent_size
    fx, fy = THUMB_SIDE / pw, THUMB_SIDE / ph
    aspect = child_size[0] / child_size[1]
    if prior is not None:
        side = math.sqrt(max(0, prior[2] - prior[0]) * max(0, prior[3] - prior[1]))
    else:
        side = math.sqrt(pw * ph * CONTAINED_MAX_AREA)
    sizes = []
    for w, h in _sizes_around(side, aspect, (pw, ph), 1):
        size = (round(w * fx), round(h * fy))
        if min(size) >= COARSE_MIN_SIDE and size not in sizes:
            sizes.append(size)
    if not sizes:
        return None
    best = _best_placements(
        parent.thumb.astype(np.float32), child.thumb.astype(np.float32), sizes, 1
    )
    return best[0][0] if best else -1.0


@dataclass(frozen=True)
class CropMatch:
    #: The child's box in the parent's pixels (the ``parent`` array's, scaled by the caller).
    box: tuple[float, float, float, float]
    #: Normalised cross-correlation at the box (fine pass).
    correlation: float
    #: Correlation of the gradients at VERIFY_SIDE px.
    detail: float
    #: RMS of the child's gradients at VERIFY_SIDE px (grey levels).
    texture: float
    #: The box's share of the parent's area.
    area: float

    @property
    def passed(self) -> bool:
        return (
            self.correlation >= CONTAINED_MIN_CORRELATION
            and self.detail >= CONTAINED_MIN_DETAIL
            and self.texture >= CONTAINED_MIN_TEXTURE
            and self.area <= CONTAINED_MAX_AREA
        )


def locate_crop(
    child: np.ndarray, parent: np.ndarray, prior: tuple[float, float] | None = None
) -> CropMatch | None:
    """Where ``child`` (grey float32) lies in ``parent`` (grey float32, long side about
    FINE_LONG_SIDE), and how well it matches there. ``prior``: the expected box size
    (w, h) in ``parent``'s pixels (the matching window's), else every size is tried."""
    ph, pw = parent.shape
    ch, cw = child.shape
    if min(ph, pw, ch, cw) < 4:
        return None
    aspect = cw / ch
    f = min(1.0, COARSE_LONG_SIDE / max(pw, ph))
    small = _area_resize(parent, (max(1, round(pw * f)), max(1, round(ph * f))))
    fits = (small.shape[1], small.shape[0])
    if prior is not None:
        sizes = _sizes_around(
            math.sqrt(max(0.0, prior[0]) * max(0.0, prior[1])) * f, aspect, fits, 8
        )
    else:
        sizes = _sizes_down(aspect, fits, 8)
    coarse = _best_placements(small, _shrunk_to(child, sizes), sizes, 2)
    best: tuple[float, tuple[float, float, float, float]] | None = None
    for _, x, y, w, h in coarse:
        x0, y0, bw, bh = x / f, y / f, w / f, h / f
        mx, my = (FINE_RANGE - 1 + 0.05) * bw + 2 / f, (FINE_RANGE - 1 + 0.05) * bh + 2 / f
        nx0, ny0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        nx1, ny1 = min(pw, int(x0 + bw + mx) + 1), min(ph, int(y0 + bh + my) + 1)
        region = parent[ny0:ny1, nx0:nx1]
        fine_sizes = []
        scale = 1 / FINE_RANGE
        while scale <= FINE_RANGE + 1e-9:
            size = (round(bw * scale), round(bh * scale))
            if size not in fine_sizes:
                fine_sizes.append(size)
            scale *= FINE_STEP
        found = _best_placements(region, _shrunk_to(child, fine_sizes), fine_sizes, 1)
        if found:
            value, fx0, fy0, fw, fh = found[0]
            box = (float(nx0 + fx0), float(ny0 + fy0), float(nx0 + fx0 + fw), float(ny0 + fy0 + fh))
            if best is None or value > best[0]:
                best = (value, box)
    if best is None:
        return None
    value, box = best
    x0, y0, x1, y1 = (round(v) for v in box)
    a = _area_resize(child, (VERIFY_SIDE, VERIFY_SIDE))
    b = _area_resize(parent[y0:y1, x0:x1], (VERIFY_SIDE, VERIFY_SIDE))
    grads = _gradients(np.stack([a, b]))
    texture = float(np.sqrt((grads[0] ** 2).mean()))
    unit = _unit(grads)
    area = (box[2] - box[0]) * (box[3] - box[1]) / (pw * ph)
    return CropMatch(box, value, float(unit[0] @ unit[1]), texture, area)
