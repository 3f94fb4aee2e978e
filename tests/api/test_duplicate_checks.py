"""The duplicate finder's pixel checks (``imgsearch_api.duplicate_checks``): pure
functions, on synthetic pictures with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch_api.duplicate_checks import (
    CONTAINED_MAX_AREA,
    HASH_BUCKET_MAX,
    ThumbTable,
    coarse_crop,
    flat_candidates,
    grey_copy,
    hash_candidates,
    image_hashes,
    locate_crop,
    near_checks,
)
from imgsearch_common.signatures import PixelSignature, pixel_signature
from imgsearch_common.windows import box_iou


def _texture(seed: int, size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A picture with structure at every scale (smoothed noise of three sizes)."""
    rng = np.random.default_rng(seed)
    w, h = size
    total = np.zeros((h, w), np.float32)
    for cells, weight in ((8, 1.0), (32, 0.8), (128, 0.6)):
        noise = rng.random((max(2, cells * h // w), cells), dtype=np.float32)
        layer = Image.fromarray((noise * 255).astype(np.uint8)).resize(
            size, Image.Resampling.BICUBIC
        )
        total += weight * np.asarray(layer, np.float32)
    grey = (255 * (total - total.min()) / (total.max() - total.min())).astype(np.uint8)
    return Image.fromarray(np.stack([grey, np.roll(grey, 7, axis=1), 255 - grey], axis=2))


def _signed(img: Image.Image) -> tuple[PixelSignature, tuple[int, int]]:
    return pixel_signature(img, img.size), img.size


def _table(*images: Image.Image) -> ThumbTable:
    signed = [_signed(i) for i in images]
    return ThumbTable.of([s for s, _ in signed], [z for _, z in signed])


def test_a_resized_brightened_copy_passes_and_another_picture_does_not() -> None:
    original = _texture(1)
    copy = original.resize((240, 160), Image.Resampling.LANCZOS).point(lambda v: min(255, v + 20))
    other = _texture(2)
    same, different = near_checks(_table(original, copy, other), [(0, 1), (0, 2)])
    assert same.passed and same.correlation is not None and same.correlation > 0.99
    assert same.detail is not None and same.detail > 0.9
    assert not different.passed and different.correlation is not None
    assert abs(different.correlation) < 0.5


def test_another_aspect_ratio_is_never_a_copy() -> None:
    original = _texture(1)
    squashed = original.resize((480, 240))  # same thumbnail grid, other shape
    (check,) = near_checks(_table(original, squashed), [(0, 1)])
    assert check.correlation is not None and check.correlation > 0.9
    assert not check.passed


def test_a_negative_correlates_minus_one() -> None:
    original = _texture(3)
    negative = Image.eval(original, lambda v: 255 - v)
    (check,) = near_checks(_table(original, negative), [(0, 1)])
    assert check.correlation == pytest.approx(-1.0, abs=0.02)
    assert not check.passed


def test_flat_pictures_pair_by_grey_level() -> None:
    white, whiter, grey = (Image.new("RGB", (60, 40), (c, c, c)) for c in (250, 252, 128))
    table = _table(white, whiter, grey, _texture(4, (60, 40)))
    checks = near_checks(table, [(0, 1), (0, 2), (0, 3)])
    assert [c.passed for c in checks] == [True, False, False]
    assert checks[0].correlation is None and checks[0].score == 1.0
    assert flat_candidates(table) == {(0, 1)}


def test_copies_share_a_hash_band_and_crowded_buckets_propose_nothing() -> None:
    original = _texture(5)
    copy = original.resize((300, 200), Image.Resampling.BICUBIC)
    signatures = [pixel_signature(i, i.size) for i in (original, copy, _texture(6))]
    hashes = image_hashes(signatures)
    assert hashes.dtype == np.uint64 and hashes[0] != hashes[2]
    assert (0, 1) in hash_candidates(hashes)
    same = np.array([hashes[0]] * (HASH_BUCKET_MAX + 1), dtype=np.uint64)
    assert hash_candidates(same) == set()
    assert hash_candidates(hashes, skip=np.array([True, False, False])) == set()


BOX = (150, 80, 390, 240)  # 240 x 160 px: a quarter of the picture


def _in_parent(box: tuple[float, ...], grey: np.ndarray, parent: Image.Image) -> tuple[int, ...]:
    """A box in ``grey``'s pixels (the parent's copy, long side at most 448) in the
    parent's own pixels."""
    s = parent.width / grey.shape[1]
    return tuple(round(v * s) for v in box)


def test_a_crop_is_located_at_its_box() -> None:
    parent = _texture(7)
    child = parent.crop(BOX).resize((180, 120), Image.Resampling.LANCZOS)
    grey = grey_copy(parent)
    assert grey.shape == (299, 448)  # shrunk: what the boxes are measured in
    s = grey.shape[1] / parent.width
    match = locate_crop(grey_copy(child), grey, (200.0 * s, 150.0 * s))
    assert match is not None and match.passed
    assert box_iou(_in_parent(match.box, grey, parent), BOX) > 0.95  # type: ignore[arg-type]
    assert match.area == pytest.approx(0.25, abs=0.02)
    assert match.correlation > 0.95 and match.detail > 0.8


def test_without_a_prior_every_size_is_tried() -> None:
    parent = _texture(7)
    grey = grey_copy(parent)
    match = locate_crop(grey_copy(parent.crop(BOX)), grey)
    assert match is not None and match.passed
    assert box_iou(_in_parent(match.box, grey, parent), BOX) > 0.95  # type: ignore[arg-type]


def test_a_crop_of_another_picture_or_a_featureless_one_is_not_contained() -> None:
    parent = _texture(8)
    stranger = locate_crop(grey_copy(_texture(9).crop(BOX)), grey_copy(parent), (240.0, 160.0))
    assert stranger is not None and not stranger.passed
    rng = np.random.default_rng(0)
    faint = (128 + rng.normal(0, 0.3, (160, 240))).clip(0, 255).astype(np.uint8)
    featureless = locate_crop(grey_copy(Image.fromarray(faint).convert("RGB")), grey_copy(parent))
    assert featureless is None or not featureless.passed  # fits anywhere: nothing to tell


def test_the_whole_picture_is_a_copy_not_a_crop() -> None:
    parent = _texture(10)
    match = locate_crop(grey_copy(parent.resize((240, 160))), grey_copy(parent), (480.0, 320.0))
    assert match is not None and match.area > CONTAINED_MAX_AREA and not match.passed


def test_the_signatures_first_look() -> None:
    parent = _texture(11)
    child = parent.crop(BOX)
    psig, csig = pixel_signature(parent, parent.size), pixel_signature(child, child.size)
    assert (coarse_crop(csig, child.size, psig, parent.size, BOX) or 0) > 0.8
    other = pixel_signature(_texture(12).crop(BOX), child.size)
    assert (coarse_crop(other, child.size, psig, parent.size, BOX) or 1) < 0.6
    tiny = (200, 140, 230, 160)  # 2 x 1 px of the parent's thumbnail: too small to tell
    assert coarse_crop(csig, (30, 20), psig, parent.size, tiny) is None
