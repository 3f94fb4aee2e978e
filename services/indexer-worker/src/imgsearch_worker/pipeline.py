"""The CPU side of indexing one image: read → decode → windows → model inputs.

Pure and synchronous; the worker runs it in a thread pool so its event loop
never blocks. Each stage is timed (clip-retrieval style) for the metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch_common.errors import EmptyInput, ImgSearchError, PayloadTooLarge
from imgsearch_common.ids import content_hash, image_id
from imgsearch_common.imaging import crops_to_model_inputs, decode_image, model_input
from imgsearch_common.windows import Box, window_boxes


class MissingFile(ImgSearchError):
    status_code = 404
    code = "missing_file"
    permanent = True


@dataclass
class PreparedImage:
    image_id: str
    sha256: str
    file_size: int
    width: int
    height: int
    boxes: list[Box]
    #: ``(1 + len(boxes), S, S, 3)`` uint8: the full view first, then each window.
    pixels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def read_file(path: str, max_bytes: int) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise PayloadTooLarge(f"file is {size} bytes; the limit is {max_bytes}")
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise MissingFile("file not found") from exc
    except IsADirectoryError as exc:
        raise MissingFile("not a file") from exc
    except PermissionError as exc:
        raise MissingFile("file not readable") from exc
    if not data:
        raise EmptyInput("file is empty")
    return data


def prepare_image(
    path: str,
    *,
    image_size: int,
    max_bytes: int,
    max_pixels: int,
    scales: Sequence[float],
    overlap: float,
    max_windows: int,
) -> PreparedImage:
    t0 = time.perf_counter()
    data = read_file(path, max_bytes)
    t1 = time.perf_counter()
    img = decode_image(data, max_pixels=max_pixels)
    t2 = time.perf_counter()
    width, height = img.size
    boxes = window_boxes(width, height, scales, overlap, max_windows)
    pixels = np.empty((1 + len(boxes), image_size, image_size, 3), dtype=np.uint8)
    pixels[0] = model_input(img, image_size)
    if boxes:
        pixels[1:] = crops_to_model_inputs(img, boxes, image_size)
    t3 = time.perf_counter()
    sha = content_hash(data)
    return PreparedImage(
        image_id=image_id(sha),
        sha256=sha,
        file_size=len(data),
        width=width,
        height=height,
        boxes=boxes,
        pixels=pixels,
        timings={"read": t1 - t0, "decode": t2 - t1, "windows": t3 - t2},
    )
