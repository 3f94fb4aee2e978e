"""The worker's pixel signature: computed from the pixels ``prepare_image`` decoded
anyway, carried by the full point's payload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgsearch_common.jobs import Job
from imgsearch_common.signatures import PixelSignature, pixel_digest
from imgsearch_common.windows import WindowLayout
from imgsearch_worker.pipeline import PreparedImage, prepare_image
from imgsearch_worker.points import image_points

LAYOUT = WindowLayout(scales=(0.75, 0.5), overlap=0.5, max_windows=16)


def _photo(path: Path, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(5)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def _prepare(path: Path) -> PreparedImage:
    return prepare_image(
        str(path), image_size=224, max_bytes=10**8, max_pixels=10**8, layout=LAYOUT,
        keep_decoded=True,
    )  # fmt: skip


def test_a_small_photo_gets_the_digest_of_its_full_size_pixels(tmp_path: Path) -> None:
    prepared = _prepare(_photo(tmp_path / "small.jpg", (400, 300)))
    signature = PixelSignature.decode(prepared.signature)
    assert signature is not None and prepared.decoded is not None
    assert prepared.decoded.size == (400, 300)
    assert signature.full and signature.digest == pixel_digest(prepared.decoded)


def test_a_large_jpeg_gets_the_digest_of_its_draft_decode(tmp_path: Path) -> None:
    prepared = _prepare(_photo(tmp_path / "large.jpg", (2400, 1800)))
    signature = PixelSignature.decode(prepared.signature)
    assert signature is not None and prepared.decoded is not None
    assert prepared.decoded.size < (2400, 1800)  # DCT-scaled
    assert not signature.full and signature.digest == pixel_digest(prepared.decoded)


def test_a_large_png_gets_the_digest_of_the_copy_its_windows_are_cut_from(
    tmp_path: Path,
) -> None:
    path = tmp_path / "large.png"
    with Image.open(_photo(tmp_path / "x.jpg", (3000, 2000))) as img:
        img.save(path)
    prepared = _prepare(path)
    signature = PixelSignature.decode(prepared.signature)
    assert signature is not None and prepared.decoded is not None and prepared.prescaled
    assert prepared.decoded.size == (3000, 2000)  # decoded whole, shrunk before cutting
    assert not signature.full and signature.digest != pixel_digest(prepared.decoded)


def test_copies_at_two_sizes_have_nearly_the_same_thumbnail(tmp_path: Path) -> None:
    big = _prepare(_photo(tmp_path / "big.jpg", (2400, 1800)))
    small = _prepare(_photo(tmp_path / "small.jpg", (600, 450)))
    a, b = PixelSignature.decode(big.signature), PixelSignature.decode(small.signature)
    assert a is not None and b is not None
    assert float(np.corrcoef(a.thumb.ravel(), b.thumb.ravel())[0, 1]) > 0.99


def test_the_full_point_carries_the_signature(tmp_path: Path) -> None:
    prepared = _prepare(_photo(tmp_path / "a.jpg", (400, 300)))
    job = Job("j", "b", "c", str(tmp_path / "a.jpg"), name="a.jpg")
    vectors = np.zeros((1 + len(prepared.boxes), 8), dtype=np.float32)
    request = image_points(job, prepared, vectors)
    assert request.full[0].payload.signature == prepared.signature
    assert "signature" not in request.full[0].payload.metadata().model_dump()
