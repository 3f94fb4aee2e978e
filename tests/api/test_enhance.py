"""enhance_image against numbers worked out by hand from the three factors.

Pillow's enhancers blend with a "degenerate" image: contrast with the flat image of the
mean grey level, brightness with black, sharpness with a 3x3 smoothed copy. So a pixel
``v`` in an image of mean grey ``m`` ends up near ``1.1 * (m + 1.2 * (v - m))`` away from
edges; Pillow truncates after each step, hence the tolerances of a level or two.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch_api.enhance import enhance_image


def expected_level(value: float, mean: float) -> float:
    return 1.1 * (mean + 1.2 * (value - mean))


def test_flat_mid_grey_gets_ten_percent_brighter() -> None:
    out = np.asarray(enhance_image(Image.new("RGB", (32, 32), (128, 128, 128))))
    # A flat image has no contrast or edges to boost: only brightness acts, 128 * 1.1 = 140.8.
    assert out.min() == out.max()
    assert out[0, 0, 0] == pytest.approx(128 * 1.1, abs=1)


def test_flat_colour_moves_away_from_its_grey_mean_then_brightens() -> None:
    colour = (100, 120, 140)
    out = np.asarray(enhance_image(Image.new("RGB", (16, 16), colour)))
    grey = round(0.299 * 100 + 0.587 * 120 + 0.114 * 140)  # 116, Pillow's "L" conversion
    for channel, value in enumerate(colour):
        assert out[8, 8, channel] == pytest.approx(expected_level(value, grey), abs=2)


def test_two_tone_contrast_grows_by_the_product_of_factors() -> None:
    pixels = np.full((40, 40), 100, dtype=np.uint8)
    pixels[:, 20:] = 150  # mean grey 125
    out = np.asarray(enhance_image(Image.fromarray(pixels))).astype(int)
    dark, bright = out[20, 5], out[20, 35]
    assert dark == pytest.approx(expected_level(100, 125), abs=1)  # 104.5
    assert bright == pytest.approx(expected_level(150, 125), abs=1)  # 170.5
    assert bright - dark == pytest.approx(50 * 1.2 * 1.1, abs=2)  # 66


def test_sharpening_overshoots_at_an_edge() -> None:
    pixels = np.full((40, 40), 100, dtype=np.uint8)
    pixels[:, 20:] = 150
    out = np.asarray(enhance_image(Image.fromarray(pixels))).astype(int)
    # Next to the edge the 3x3 smoothing mixes in 3/13 of the other side; sharpening by
    # 1.1 pushes the pixel 0.1 * 3/13 * 66 = 1.5 levels further away from it.
    assert out[20, 19] <= out[20, 5] - 1
    assert out[20, 20] >= out[20, 35] + 1


def test_size_and_mode_are_kept_and_the_input_is_untouched() -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    before = np.asarray(rgb).copy()
    out = enhance_image(rgb)
    assert (out.mode, out.size) == ("RGB", (50, 30))
    assert out is not rgb
    assert np.array_equal(np.asarray(rgb), before)
    grey = enhance_image(rgb.convert("L"))
    assert (grey.mode, grey.size) == ("L", (50, 30))


def test_other_modes_come_back_as_rgb() -> None:
    out = enhance_image(Image.new("RGBA", (10, 12), (10, 20, 30, 128)))
    assert (out.mode, out.size) == ("RGB", (10, 12))
    assert enhance_image(Image.new("P", (8, 8))).mode == "RGB"
