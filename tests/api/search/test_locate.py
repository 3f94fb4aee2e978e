"""Box proposals by pixel correlation (imgsearch_api.search.locate): exact numbers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imgsearch_api.search.locate import locate, rectangle_proposals, template_sizes
from imgsearch_common.windows import box_iou


def _texture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smoothed colour noise: every region looks different."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    img = Image.fromarray(noise).resize((width, height), Image.Resampling.BICUBIC)
    return img.filter(ImageFilter.GaussianBlur(2))


def test_template_sizes_keep_the_aspect_and_shrink_by_the_step() -> None:
    # 100x50 in 320x200: the largest fitting is 320x160, then /1.15 ... down to 12 px.
    sizes = template_sizes((100, 50), (320, 200), step=2.0)
    assert sizes == [(320, 160), (160, 80), (80, 40), (40, 20)]
    assert template_sizes((100, 50), (320, 200), step=2.0, max_scales=2) == sizes[:2]
    assert template_sizes((10, 10), (8, 8), min_side=12) == []
    with pytest.raises(ValueError):
        template_sizes((0, 10), (10, 10))
    with pytest.raises(ValueError):
        template_sizes((10, 10), (10, 10), step=1.0)


@pytest.mark.parametrize("box", [(100, 60, 260, 180), (400, 300, 560, 420), (0, 0, 320, 240)])
def test_a_crop_is_found_where_it_was_cut(box: tuple[int, int, int, int]) -> None:
    picture = _texture(640, 480)
    found = locate(picture.crop(box), picture)
    assert found is not None
    assert found.correlation > 0.95
    assert box_iou(found.box, box) > 0.8


def test_a_resized_crop_is_found_at_its_size_in_the_picture() -> None:
    picture = _texture(800, 600, seed=1)
    box = (300, 200, 540, 380)
    query = picture.crop(box).resize((120, 90), Image.Resampling.BICUBIC)  # half size
    found = locate(query, picture)
    assert found is not None
    assert box_iou(found.box, box) > 0.75


def test_an_unrelated_query_correlates_weakly_and_flat_ones_not_at_all() -> None:
    picture = _texture(640, 480, seed=2)
    other = _texture(200, 150, seed=3)
    found = locate(other, picture)
    assert found is not None and found.correlation < 0.6
    assert locate(Image.new("RGB", (200, 150), (90, 90, 90)), picture) is None
    assert locate(_texture(64, 64), _texture(8, 8)) is None  # no template size fits


def test_rectangle_proposals_outline_a_pasted_picture() -> None:
    canvas = Image.new("RGB", (1200, 800), (240, 240, 244))
    canvas.paste(_texture(480, 300, seed=4), (500, 250))
    boxes = rectangle_proposals(canvas)
    assert boxes, "no rectangle found"
    assert box_iou(boxes[0], (500, 250, 980, 550)) > 0.95
    assert rectangle_proposals(Image.new("RGB", (600, 400), (30, 30, 30))) == []


def test_rectangle_proposals_use_the_canvas_border() -> None:
    # A picture pasted in a corner: two of its sides are the canvas's border.
    canvas = Image.new("RGB", (1200, 800), (30, 32, 36))
    canvas.paste(_texture(400, 300, seed=5), (800, 500))
    boxes = rectangle_proposals(canvas)
    assert boxes and box_iou(boxes[0], (800, 500, 1200, 800)) > 0.95
