"""Text detection and removal: the pure geometry with exact numbers, then the real
PP-OCRv4 model (from the installed rapidocr wheel) on drawn text and on real photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFont

from imgsearch_api.text_removal import (
    TextBox,
    TextRemover,
    boxes_from_probability,
    default_model_path,
    detector_input_size,
    remove_text,
    text_mask,
    unclip_rect,
)

Bbox = tuple[int, int, int, int]

# --- pure functions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((640, 480), (640, 480)),  # fits, already multiples of 32
        ((600, 400), (608, 416)),  # fits, rounded to the nearest multiple of 32
        ((1920, 1080), (960, 544)),  # halved: 540 rounds to 544
        ((1080, 1920), (544, 960)),
        ((100, 20), (96, 32)),  # never below 32
        ((4000, 10), (960, 32)),
    ],
)
def test_detector_input_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert detector_input_size(*size, max_side=960) == expected


def test_unclip_rect_grows_every_side_by_area_times_ratio_over_perimeter() -> None:
    # area 1000, perimeter 220: offset 1000 * 1.5 / 220 = 6.8181...
    (cx, cy), (w, h), angle = unclip_rect(((10.0, 20.0), (100.0, 10.0), 30.0), 1.5)
    assert (cx, cy, angle) == (10.0, 20.0, 30.0)
    assert w == pytest.approx(100 + 2 * 1000 * 1.5 / 220)
    assert h == pytest.approx(10 + 2 * 1000 * 1.5 / 220)


def test_unclip_rect_of_a_degenerate_rect_is_unchanged() -> None:
    assert unclip_rect(((1.0, 2.0), (0.0, 0.0), 0.0), 1.6) == ((1.0, 2.0), (0.0, 0.0), 0.0)


def test_boxes_from_probability_finds_a_line_and_unclips_it() -> None:
    prob = np.zeros((200, 300), dtype=np.float32)
    prob[40:50, 20:120] = 0.9  # a text kernel 100 px long, 10 px thick
    [(corners, score)] = boxes_from_probability(prob, unclip_ratio=1.6)
    assert score == pytest.approx(0.9)
    # The contour runs through pixel centres: a 99 x 9 rectangle centred on (69.5, 44.5);
    # offset 99 * 9 * 1.6 / (2 * (99 + 9)) = 6.6 px on every side.
    offset = 99 * 9 * 1.6 / (2 * (99 + 9))
    left, right = 69.5 - 49.5 - offset, 69.5 + 49.5 + offset
    top, bottom = 44.5 - 4.5 - offset, 44.5 + 4.5 + offset
    expected = [(left, top), (right, top), (right, bottom), (left, bottom)]
    np.testing.assert_allclose(corners, expected, atol=1e-3)


def test_boxes_from_probability_drops_weak_thin_and_huge_regions() -> None:
    prob = np.zeros((200, 300), dtype=np.float32)
    prob[10:20, 10:100] = 0.35  # above the pixel threshold, mean below box_threshold
    prob[30:32, 10:100] = 0.99  # a 2 px kernel: below min_size
    prob[60:160, 100:200] = 0.99  # a 100 px blob: thicker than 0.2 x 200 once grown
    prob[170:180, 150:250] = 0.8  # the one real line
    found = boxes_from_probability(prob, box_threshold=0.5, min_size=3, max_line_height=0.2)
    assert len(found) == 1
    corners, score = found[0]
    assert score == pytest.approx(0.8)
    assert corners[:, 1].min() > 160
    scores = sorted(score for _, score in boxes_from_probability(prob, max_line_height=1.0))
    assert scores == pytest.approx([0.8, 0.99])


def test_boxes_from_probability_clips_to_the_map() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[0:8, 150:200] = 1.0  # grows past the top and right edges
    [(corners, _)] = boxes_from_probability(prob)
    assert corners[:, 1].min() == 0.0
    assert corners[:, 0].max() == 200.0
    assert corners[:, 0].min() > 130


def test_empty_probability_map_gives_no_boxes() -> None:
    assert boxes_from_probability(np.zeros((64, 64), dtype=np.float32)) == []


def test_text_box_bbox_encloses_the_polygon() -> None:
    box = TextBox(polygon=((10.2, 5.7), (50.0, 4.1), (50.9, 20.0), (9.9, 21.5)), score=0.9)
    assert box.bbox == (9, 4, 51, 22)


def test_text_mask_fills_boxes_grown_by_the_margin() -> None:
    box = TextBox(polygon=((10, 10), (29, 10), (29, 19), (10, 19)), score=1.0)
    mask = text_mask((40, 30), [box], margin=2)
    assert mask.shape == (30, 40)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (8, 31, 8, 21)
    assert set(np.unique(mask)) == {0, 255}
    assert not text_mask((40, 30), [], margin=2).any()


# --- the real model -----------------------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    font = ImageFont.load_default(size=size)
    if isinstance(font, ImageFont.FreeTypeFont):
        return font
    for path in Path("/usr/share/fonts").rglob("DejaVuSans.ttf"):
        return ImageFont.truetype(str(path), size)
    pytest.skip("no scalable font available to draw test text")


def _draw(
    clean: Image.Image, xy: tuple[int, int], text: str, **style: object
) -> tuple[Image.Image, Bbox]:
    img = clean.copy()
    draw = ImageDraw.Draw(img)
    font = _font(48)
    draw.text(xy, text, font=font, **style)  # type: ignore[arg-type]
    stroke = style.get("stroke_width", 0)
    left, top, right, bottom = draw.textbbox(xy, text, font=font, stroke_width=stroke)  # type: ignore[arg-type]
    return img, (int(left), int(top), int(right), int(bottom))


def _iou(a: Bbox, b: Bbox) -> float:
    inter_w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def _gradient(width: int = 640, height: int = 480) -> Image.Image:
    row = np.linspace(180, 250, width).astype(np.uint8)
    return Image.fromarray(np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2))


def _mean_abs_diff(a: Image.Image, b: Image.Image, box: Bbox) -> float:
    left, top, right, bottom = box
    pa = np.asarray(a, dtype=np.int16)[top:bottom, left:right]
    pb = np.asarray(b, dtype=np.int16)[top:bottom, left:right]
    return float(np.abs(pa - pb).mean())


@pytest.fixture(scope="module")
def remover() -> TextRemover:
    remover = TextRemover()
    remover.load()
    return remover


def test_model_file_is_found_in_the_rapidocr_wheel() -> None:
    path = default_model_path()
    assert path.name == "ch_PP-OCRv4_det_infer.onnx"
    assert path.is_file()
    assert path.stat().st_size > 1_000_000


def test_model_path_can_be_overridden(tmp_path: Path) -> None:
    assert TextRemover(model_path=default_model_path()).model_path == default_model_path()
    with pytest.raises(FileNotFoundError):
        TextRemover(model_path=tmp_path / "missing.onnx")


def test_dark_text_on_a_light_background_is_found_and_removed(remover: TextRemover) -> None:
    clean = _gradient()
    img, text_box = _draw(clean, (60, 200), "Hello World 2024", fill=(0, 0, 0))

    boxes = remover.detect(img)
    assert len(boxes) == 1
    assert boxes[0].score > 0.9
    assert _iou(boxes[0].bbox, text_box) > 0.8

    out = remover.remove(img)
    assert out.size == img.size
    assert out.mode == "RGB"
    before = _mean_abs_diff(img, clean, text_box)
    after = _mean_abs_diff(out, clean, text_box)
    assert before > 30
    assert after < 0.2 * before

    # Only the masked pixels change: everything well outside the detected box is identical.
    left, top, right, bottom = boxes[0].bbox
    margin = remover.mask_margin + 2
    outside = np.ones((img.height, img.width), dtype=bool)
    outside[top - margin : bottom + margin, left - margin : right + margin] = False
    assert np.array_equal(np.asarray(out)[outside], np.asarray(img)[outside])


def test_meme_caption_on_a_photo_is_found_and_removed(remover: TextRemover) -> None:
    clean = Image.fromarray(skimage.data.astronaut())
    img, text_box = _draw(
        clean,
        (40, 420),
        "WHEN YOU LAND",
        fill=(255, 255, 255),
        stroke_width=3,
        stroke_fill=(0, 0, 0),
    )
    boxes = remover.detect(img)
    assert max(_iou(b.bbox, text_box) for b in boxes) > 0.8
    out = remover.remove(img)
    assert _mean_abs_diff(out, clean, text_box) < 0.5 * _mean_abs_diff(img, clean, text_box)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut", "camera", "horse"])
def test_photos_without_text_are_left_alone(remover: TextRemover, name: str) -> None:
    # coffee and horse hold large compact shapes the model scores as text with
    # p > 0.98 (see max_line_height); they must not be painted over.
    pixels = getattr(skimage.data, name)()
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    img = Image.fromarray(pixels).convert("RGB")
    assert remover.detect(img) == []
    assert np.array_equal(np.asarray(remover.remove(img)), np.asarray(img))


def test_other_modes_are_accepted_and_rgb_comes_back(remover: TextRemover) -> None:
    img, _ = _draw(_gradient().convert("L"), (60, 200), "Hello World 2024", fill=0)
    assert len(remover.detect(img)) == 1
    out = remover.remove(img)
    assert (out.mode, out.size) == ("RGB", img.size)
    plain = Image.new("RGBA", (200, 100), (200, 200, 200, 255))
    assert remover.remove(plain).mode == "RGB"


def test_concurrent_first_use_loads_once_and_agrees() -> None:
    fresh = TextRemover()
    img, _ = _draw(_gradient(), (60, 200), "Hello World 2024", fill=(0, 0, 0))
    results: list[list[TextBox]] = []
    sessions: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        boxes = fresh.detect(img)
        with lock:
            results.append(boxes)
            sessions.append(fresh._session)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert len(results[0]) == 1
    assert all(s is sessions[0] for s in sessions)


def test_remove_text_uses_the_given_remover(remover: TextRemover) -> None:
    img, text_box = _draw(_gradient(), (60, 200), "Hello World 2024", fill=(0, 0, 0))
    out = remove_text(img, remover)
    assert _mean_abs_diff(out, _gradient(), text_box) < 0.2 * _mean_abs_diff(
        img, _gradient(), text_box
    )
