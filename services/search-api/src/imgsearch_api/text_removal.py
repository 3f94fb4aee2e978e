"""Remove overlaid text (captions, watermarks, meme text) from a query image.

Text pasted onto a picture pulls its CLIP embedding towards "an image with words" and
away from what the picture shows. We find the text with the PP-OCRv4 detection model
(a DBNet, run directly with onnxruntime; only its ``.onnx`` file is taken from the
``rapidocr-onnxruntime`` wheel) and paint over it with OpenCV's Telea inpainting.

Detection, step by step (:meth:`TextRemover.detect`):

1. resize so the long side is at most ``max_side`` px and both sides are multiples of
   32 (:func:`detector_input_size`), normalise like PaddleOCR, run the model: one text
   probability per pixel;
2. threshold the map, take each connected region's contour, keep regions whose mean
   probability is high enough (:func:`boxes_from_probability`);
3. DBNet is trained to predict a *shrunk* kernel of each text line, so each region's
   minimum-area rectangle is grown back (:func:`unclip_rect`, the offset DBNet's own
   post-processing uses) and mapped to the original image's coordinates.

Everything runs on the CPU. One :class:`TextRemover` may be shared by many threads: the
model is loaded once under a lock and ``InferenceSession.run`` is thread-safe.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import onnxruntime as ort

MODEL_PACKAGE = "rapidocr_onnxruntime"
MODEL_FILE = "ch_PP-OCRv4_det_infer.onnx"

# PaddleOCR trains the detector on arrays read by cv2 (BGR) and applies these ImageNet
# constants to the channels in that order; we feed the model the same way.
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

RotatedRect = tuple[tuple[float, float], tuple[float, float], float]


@dataclass(frozen=True)
class TextBox:
    """One detected text region in original-image pixels.

    ``polygon``: the four corners of a (possibly rotated) rectangle, clockwise from
    the top-left one. ``score``: mean text probability inside the detected kernel.
    """

    polygon: tuple[tuple[float, float], ...]
    score: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Axis-aligned ``(left, top, right, bottom)`` enclosing the polygon."""
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return (
            int(np.floor(min(xs))),
            int(np.floor(min(ys))),
            int(np.ceil(max(xs))),
            int(np.ceil(max(ys))),
        )


def default_model_path() -> Path:
    """Where the PP-OCRv4 detection model lies inside the installed rapidocr wheel.

    ``find_spec`` on a top-level package locates it without running its
    ``__init__`` (which would import the GUI build of OpenCV that we do not install).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = (spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "models" / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{MODEL_FILE} not found: install {MODEL_PACKAGE} (with --no-deps) "
        "or pass model_path to TextRemover"
    )


def detector_input_size(width: int, height: int, max_side: int = 960) -> tuple[int, int]:
    """``(width, height)`` to feed the detector: long side at most ``max_side``, both
    sides rounded to a multiple of 32 (the network downsamples by 32), at least 32.

    Small images are not enlarged: the text the model sees is as large as it can be.
    """
    scale = min(1.0, max_side / max(width, height))
    # Half-way cases round up (``round`` would round 12.5 to 12).
    return (
        max(32, int(width * scale / 32 + 0.5) * 32),
        max(32, int(height * scale / 32 + 0.5) * 32),
    )


def unclip_rect(rect: RotatedRect, ratio: float) -> RotatedRect:
    """Grow a rotated rectangle by DBNet's unclip offset ``area * ratio / perimeter``
    on every side, restoring the text region from its predicted kernel.

    For a long, thin line the offset is about ``ratio / 2`` times its height, so the
    height grows by about ``1 + ratio`` times; a square grows less, relatively.
    """
    (cx, cy), (w, h), angle = rect
    perimeter = 2.0 * (w + h)
    if perimeter <= 0:
        return rect
    offset = w * h * ratio / perimeter
    return (cx, cy), (w + 2 * offset, h + 2 * offset), angle


def _clockwise_from_top_left(points: np.ndarray) -> np.ndarray:
    """Order four rectangle corners: top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def boxes_from_probability(
    prob: np.ndarray,
    *,
    threshold: float = 0.3,
    box_threshold: float = 0.5,
    unclip_ratio: float = 1.6,
    min_size: float = 3.0,
    max_line_height: float = 0.2,
    max_candidates: int = 1000,
) -> list[tuple[np.ndarray, float]]:
    """Text rectangles from a DBNet probability map, in the map's own pixels.

    ``prob``: ``(H, W)`` float probabilities. A region is a connected area above
    ``threshold``; it is kept when its mean probability is at least ``box_threshold``,
    its kernel is at least ``min_size`` px thick and, once grown, it is at most
    ``max_line_height`` times the map's short side thick. Returns ``(corners, score)``
    pairs, ``corners`` a ``(4, 2)`` float32 array clockwise from the top-left corner,
    already grown by :func:`unclip_rect`.

    Why ``max_line_height``: on photos the model's confident false positives are
    large compact blobs (a cup seen from above, a horse's silhouette, a moon crater
    each scored above 0.98 and were a fifth to three fifths of the image's short
    side thick), while overlay text comes in lines far thinner than that; painting
    over such a blob would wreck the query far more than leaving the text would.
    """
    bitmap = (prob > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    height, width = prob.shape
    max_thickness = max_line_height * min(height, width)
    found: list[tuple[np.ndarray, float]] = []
    for contour in contours[:max_candidates]:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        rect: RotatedRect = ((cx, cy), (w, h), angle)
        if min(w, h) < min_size:
            continue
        score = _mean_inside(prob, contour)
        if score < box_threshold:
            continue
        grown = unclip_rect(rect, unclip_ratio)
        if not min_size + 2 <= min(grown[1]) <= max_thickness:
            continue
        corners = cv2.boxPoints(grown)
        corners[:, 0] = np.clip(corners[:, 0], 0, width)
        corners[:, 1] = np.clip(corners[:, 1], 0, height)
        found.append((_clockwise_from_top_left(corners), score))
    return found


def _mean_inside(prob: np.ndarray, contour: np.ndarray) -> float:
    """Mean of ``prob`` over the pixels inside ``contour`` (its outline included)."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [contour - np.array([x, y], dtype=contour.dtype)], 1)
    return float(cv2.mean(prob[y : y + h, x : x + w], mask=mask)[0])


def text_mask(size: tuple[int, int], boxes: Sequence[TextBox], margin: int = 2) -> np.ndarray:
    """``(height, width)`` uint8 mask, 255 inside every box grown by ``margin`` px.

    The margin catches the anti-aliased fringe and drop shadows around glyphs, which
    would otherwise be smeared into the inpainted area.
    """
    width, height = size
    mask: np.ndarray = np.zeros((height, width), dtype=np.uint8)
    polygons = [np.round(np.array(b.polygon)).astype(np.int32) for b in boxes]
    cv2.fillPoly(mask, polygons, 255)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


class TextRemover:
    """Find text with PP-OCRv4 detection and inpaint it away.

    The ONNX model is loaded on first use (or by :meth:`load`, to preload it in the
    service's lifespan) under a lock; afterwards every method may be called from
    several threads at once. ``intra_op_threads`` is onnxruntime's thread count per
    call (0: its default, all cores); lower it when many calls run side by side.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        max_side: int = 960,
        threshold: float = 0.3,
        box_threshold: float = 0.5,
        unclip_ratio: float = 1.6,
        max_line_height: float = 0.2,
        mask_margin: int = 2,
        inpaint_radius: int = 3,
        intra_op_threads: int = 0,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"text detection model not found: {self.model_path}")
        self.max_side = max_side
        self.threshold = threshold
        self.box_threshold = box_threshold
        self.unclip_ratio = unclip_ratio
        self.max_line_height = max_line_height
        self.mask_margin = mask_margin
        self.inpaint_radius = inpaint_radius
        self.intra_op_threads = intra_op_threads
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now rather than on the first image."""
        self._get_session()

    def _get_session(self) -> ort.InferenceSession:
        session = self._session
        if session is not None:
            return session
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.intra_op_threads
                self._session = ort.InferenceSession(
                    str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def detect(self, img: Image.Image) -> list[TextBox]:
        """Text regions of ``img``, in its own pixel coordinates."""
        return self._detect(np.asarray(_rgb(img)))

    def _detect(self, rgb: np.ndarray) -> list[TextBox]:
        height, width = rgb.shape[:2]
        in_w, in_h = detector_input_size(width, height, self.max_side)
        resized = cv2.resize(rgb, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        bgr = resized[:, :, ::-1].astype(np.float32) / 255.0
        tensor = ((bgr - _MEAN) / _STD).transpose(2, 0, 1)[np.newaxis]
        session = self._get_session()
        (prob,) = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(tensor)})
        found = boxes_from_probability(
            prob[0, 0],
            threshold=self.threshold,
            box_threshold=self.box_threshold,
            unclip_ratio=self.unclip_ratio,
            max_line_height=self.max_line_height,
        )
        scale = np.array([width / in_w, height / in_h], dtype=np.float32)
        return [
            TextBox(
                polygon=tuple((float(x), float(y)) for x, y in corners * scale),
                score=score,
            )
            for corners, score in found
        ]

    def remove(self, img: Image.Image) -> Image.Image:
        """``img`` as RGB with every detected text region inpainted, same size.

        Without any text the RGB image is returned as it is (no copy).
        """
        rgb_img = _rgb(img)
        rgb = np.asarray(rgb_img)
        boxes = self._detect(rgb)
        if not boxes:
            return rgb_img
        mask = text_mask(rgb_img.size, boxes, self.mask_margin)
        painted = cv2.inpaint(
            np.ascontiguousarray(rgb), mask, self.inpaint_radius, cv2.INPAINT_TELEA
        )
        return Image.fromarray(painted)


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def remove_text(img: Image.Image, remover: TextRemover | None = None) -> Image.Image:
    """:meth:`TextRemover.remove` with ``remover``, or a new remover with default settings.

    The service should own one :class:`TextRemover` (created and preloaded in its
    lifespan) and pass it; without one, the model is loaded on every call.
    """
    return (remover or TextRemover()).remove(img)
