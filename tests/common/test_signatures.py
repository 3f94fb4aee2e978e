"""The pixel signature (``imgsearch_common.signatures``): what it keeps of a picture, and
that what the worker writes reads back the same."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch_common.signatures import (
    THUMB_SIDE,
    PixelSignature,
    pixel_digest,
    pixel_signature,
    thumbnail,
)


def _gradient(width: int = 120, height: int = 80) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 60, height, dtype=np.float32)[:, None]
    grey = (x * 0.8 + y).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, grey // 2, 255 - grey], axis=2))


def test_encode_then_decode_keeps_every_field() -> None:
    img = _gradient()
    signature = pixel_signature(img, img.size)
    text = signature.encode()
    assert len(text) == 1396  # 1 045 bytes in base64: small beside a payload's paths
    back = PixelSignature.decode(text)
    assert back is not None
    assert back.digest == signature.digest and back.full is True
    assert back.mean == round(signature.mean)
    assert back.std == pytest.approx(signature.std, rel=1e-3)
    # int8 at 1/32 of a standard deviation: within half a step of what was computed.
    assert np.abs(back.thumb - signature.thumb).max() <= 0.5 / 32 + 1e-6


@pytest.mark.parametrize("text", [None, "", "not base64!", "AAAA", "A" * 1396])
def test_anything_else_decodes_to_none(text: str | None) -> None:
    assert PixelSignature.decode(text) is None


def test_the_thumbnail_is_standardised_block_means() -> None:
    values, mean, std = thumbnail(_gradient())
    assert values.shape == (THUMB_SIDE, THUMB_SIDE)
    assert float(values.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(values.std()) == pytest.approx(1.0, abs=1e-3)
    assert 0 < mean < 255 and std > 10


def test_a_faint_picture_keeps_its_structure_and_a_flat_one_is_flat() -> None:
    faint = np.full((64, 64, 3), 128, np.uint8)
    faint[:, 32:] += 1  # one grey level: below what an 8-bit thumbnail would keep
    values, _, std = thumbnail(Image.fromarray(faint))
    assert std == pytest.approx(0.5, abs=0.01)
    flat = PixelSignature(values, 128.0, std, b"\0" * 16, True)
    assert flat.flat  # under FLAT_STD: compared by grey level, not structure
    stripes = faint.copy()
    stripes[:, 32:] += 9
    values, _, std = thumbnail(Image.fromarray(stripes))
    assert std > 1 and values[:, :16].mean() < 0 < values[:, 16:].mean()


def test_the_digest_is_of_the_pixels_and_their_size() -> None:
    img = _gradient()
    assert pixel_digest(img) == pixel_digest(img.copy())
    changed = img.copy()
    changed.putpixel((3, 4), (0, 0, 0))
    assert pixel_digest(changed) != pixel_digest(img)
    # The same bytes in another shape are other pixels.
    reshaped = Image.frombytes("RGB", (80, 120), img.tobytes())
    assert pixel_digest(reshaped) != pixel_digest(img)


def test_full_says_whether_the_decode_was_full_size() -> None:
    img = _gradient()
    assert pixel_signature(img, img.size).full is True
    assert pixel_signature(img, (img.width * 2, img.height * 2)).full is False


def test_a_shrunk_copy_gives_nearly_the_same_thumbnail_and_a_reduced_digest() -> None:
    img = _gradient(960, 640)
    small = img.resize((240, 160), Image.Resampling.BICUBIC)
    whole = pixel_signature(img, img.size)
    cheap = pixel_signature(small, img.size)
    assert cheap.digest == pixel_digest(small) and cheap.full is False
    assert float(np.corrcoef(cheap.thumb.ravel(), whole.thumb.ravel())[0, 1]) > 0.999
