"""``OpenedImage.decode_bounded``: at most ``max_side`` px, the same pixels a full decode
would give once shrunk, orientation and transparency as ``decode`` handles them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch_common.errors import ImageTooLarge
from imgsearch_common.imaging import decode_image, open_image


def _png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


def _jpeg(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **params)
    return buf.getvalue()


def _noise(size: tuple[int, int]) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


def _max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


def test_an_image_within_the_bound_decodes_as_decode_does() -> None:
    data = _jpeg(_noise((900, 600)))
    for short in (0, 224):
        bounded = open_image(data).decode_bounded(2048, min_short_side=short)
        assert bounded.tobytes() == open_image(data).decode(short).tobytes()


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "1"])
def test_a_larger_png_equals_the_full_decode_reduced(mode: str) -> None:
    """Reduced by 3 (1800 -> 600), whatever mode it is decoded in: the result is the full
    RGB decode's box reduction, exactly."""
    src = _noise((1800, 1200)).convert(mode)
    data = _png(src)

    bounded = open_image(data).decode_bounded(600)

    assert bounded.mode == "RGB" and bounded.size == (600, 400)
    assert _max_diff(bounded, decode_image(data).reduce(3)) <= 1


def test_palette_transparency_is_white_as_in_decode() -> None:
    src = Image.new("P", (3000, 2000), 0)
    src.putpalette([20, 40, 60, 240, 200, 10] + [0, 0, 0] * 254)
    src.paste(1, (600, 400, 2400, 1600))
    data = _png(src, transparency=0)

    bounded = open_image(data).decode_bounded(1000)

    assert bounded.size == (1000, 667)
    assert bounded.getpixel((5, 5)) == (255, 255, 255)
    assert bounded.getpixel((500, 333)) == (240, 200, 10)


def test_the_long_side_is_exactly_the_bound_after_a_non_integer_factor() -> None:
    data = _png(_noise((5000, 1000)).convert("P"))  # 5000 / 2048: reduce by 2, then resize
    assert open_image(data).decode_bounded(2048).size == (2048, 410)


def test_exif_orientation_is_applied_to_the_reduced_image() -> None:
    src = _noise((1200, 400))
    src.paste((255, 0, 0), (0, 0, 100, 100))  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees clockwise
    data = _png(src.convert("P"), exif=exif)

    opened = open_image(data)
    assert opened.size == (400, 1200)
    bounded = opened.decode_bounded(600)

    assert bounded.size == (200, 600)
    red, green, blue = bounded.getpixel((190, 10))  # now the top-right corner
    assert red > 150 and green < 100 and blue < 100
    assert _max_diff(bounded, decode_image(data).reduce(2)) <= 1


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_then_shrunk() -> None:
    data = _jpeg(_noise((4400, 3300)))
    opened = open_image(data)
    # 2048 px on the long side need 1536 on the short one: 1/2 keeps 1650.
    assert opened.decoded_pixels(1536) == 2200 * 1650

    bounded = opened.decode_bounded(2048, max_decoded_pixels=4_000_000)

    assert bounded.size == (2048, 1536)


def test_max_decoded_pixels_counts_what_the_decoder_holds() -> None:
    img = _noise((3000, 2000))
    # PNG: decoded whole.
    with pytest.raises(ImageTooLarge, match="a query may decode at most"):
        open_image(_png(img.convert("L"))).decode_bounded(1024, max_decoded_pixels=5_000_000)
    # Baseline JPEG: at the DCT scale (1/2 keeps 1024 px on the long side).
    assert open_image(_jpeg(img)).decode_bounded(1024, max_decoded_pixels=2_000_000).size == (
        1024,
        683,
    )
    # Progressive JPEG: the decoder keeps every coefficient of the full size.
    progressive = _jpeg(img, progressive=True)
    assert open_image(progressive).decoded_pixels(512) == 6_000_000
    with pytest.raises(ImageTooLarge):
        open_image(progressive).decode_bounded(1024, max_decoded_pixels=5_000_000)
