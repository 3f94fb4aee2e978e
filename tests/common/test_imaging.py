"""Decoding is strict and preprocessing matches torchvision's exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgsearch_common.errors import CorruptImage, EmptyInput, ImageTooLarge, UnsupportedImage
from imgsearch_common.imaging import (
    crops_to_model_inputs,
    decode_image,
    model_input,
    open_image,
    prescale,
    scale_boxes,
)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.chelsea())  # 451 x 300


def test_exif_orientation_is_applied() -> None:
    img = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    decoded = decode_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == (300, 451)
    assert decoded.mode == "RGB"


def test_modes_become_rgb_and_transparency_goes_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    out = decode_image(_encode(rgba, "PNG"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    gray = decode_image(_encode(Image.new("L", (8, 8), 77), "PNG"))
    assert gray.getpixel((3, 3)) == (77, 77, 77)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_allowed_formats_decode(fmt: str) -> None:
    assert decode_image(_encode(_photo().convert("RGB"), fmt)).size == (451, 300)


@pytest.mark.parametrize("fmt", ["TGA", "PCX", "ICO", "PPM"])
def test_other_formats_are_refused(fmt: str) -> None:
    with pytest.raises(UnsupportedImage):
        decode_image(_encode(Image.new("RGB", (16, 16)), fmt))


def test_bad_bytes() -> None:
    with pytest.raises(EmptyInput):
        decode_image(b"")
    with pytest.raises(UnsupportedImage):
        decode_image(b"hello world, not an image")
    data = _encode(_photo(), "JPEG")
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2])
    png = _encode(_photo(), "PNG")
    with pytest.raises(CorruptImage):
        decode_image(png[:200])


def test_pixel_cap_is_checked_before_decoding() -> None:
    data = _encode(Image.new("RGB", (400, 300)), "PNG")
    assert decode_image(data, max_pixels=120_000).size == (400, 300)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=119_999)


def test_model_input_equals_torchvision_resize_and_centre_crop() -> None:
    from torchvision import transforms

    reference = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
        ]
    )
    img = _photo()
    for box in [(0, 0, 451, 300), (10, 20, 310, 220), (100, 0, 170, 300), (0, 0, 150, 151)]:
        crop = img.crop(box)
        ours = model_input(crop, 224)
        theirs = np.asarray(reference(crop))
        assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
        assert np.array_equal(ours, theirs), box


def test_crops_to_model_inputs_stacks_in_order() -> None:
    img = _photo()
    boxes = [(0, 0, 200, 200), (200, 50, 450, 300)]
    out = crops_to_model_inputs(img, boxes, 32)
    assert out.shape == (2, 32, 32, 3)
    assert np.array_equal(out[1], model_input(img.crop(boxes[1]), 32))


def test_open_image_reports_the_oriented_size_before_decoding() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    opened = open_image(_encode(_photo(), "JPEG", exif=exif.tobytes(), quality=95))
    assert opened.size == (300, 451)
    assert opened.decode().size == (300, 451)


def test_jpeg_draft_decodes_at_the_smallest_scale_that_keeps_the_requested_side() -> None:
    big = _photo().resize((1804, 1200))
    data = _encode(big, "JPEG", quality=90)
    assert open_image(data).reduction_for(500) == 2  # 600 px >= 500 > 300 px
    assert open_image(data).decode(min_short_side=500).size == (902, 600)
    assert open_image(data).decode(min_short_side=100).size == (226, 150)  # 1/8 at most
    assert open_image(data).decode(min_short_side=1200).size == (1804, 1200)
    assert open_image(data).decode().size == (1804, 1200)
    # Other formats decode at full size whatever is asked.
    png = _encode(big, "PNG")
    assert open_image(png).reduction_for(100) == 1
    assert open_image(png).decode(min_short_side=100).size == (1804, 1200)


def test_open_image_checks_before_decoding() -> None:
    with pytest.raises(EmptyInput):
        open_image(b"")
    with pytest.raises(UnsupportedImage):
        open_image(b"not an image")
    with pytest.raises(ImageTooLarge):
        open_image(_encode(Image.new("RGB", (400, 300)), "PNG"), max_pixels=1000)
    data = _encode(_photo(), "JPEG")
    with pytest.raises(CorruptImage):
        open_image(data[: len(data) // 2]).decode(min_short_side=100)


def test_prescale_shrinks_once_and_boxes_follow() -> None:
    img = _photo()  # 451 x 300
    small = prescale(img, 150)
    assert small.size == (226, 150)
    assert prescale(img, 300) is img and prescale(img, 400) is img  # never enlarges
    boxes = [(0, 0, 300, 300), (151, 0, 451, 300)]
    assert scale_boxes(boxes, small.width / 451, small.height / 300) == [
        (0, 0, 150, 150),
        (76, 0, 226, 150),
    ]
