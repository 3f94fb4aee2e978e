"""The CPU side of indexing one image: read → decode → windows → model inputs.

Pure and synchronous; the worker runs it in a thread pool so its event loop
never blocks. Each stage is timed (clip-retrieval style) for the metrics.

Every window ends up ``image_size`` px wide, so the image is decoded with no more
pixels than the smallest window needs (JPEG DCT scaling, see
``imgsearch_common.imaging``): the boxes are placed on the image's full size, read
from its header, and mapped onto the decoded pixels. An image still more than
``prescale`` times larger than that (PNG, WebP) is shrunk once before its windows
are cut. On a 12-megapixel JPEG this makes decode + windows about 10 times cheaper
(benchmarks/README.md, "Throughput").
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from imgsearch_common.errors import EmptyInput, ImgSearchError, PayloadTooLarge
from imgsearch_common.ids import content_hash, image_id
from imgsearch_common.imaging import (
    crops_to_model_inputs,
    model_input,
    open_image,
    prescale,
    scale_boxes,
)
from imgsearch_common.signatures import pixel_signature
from imgsearch_common.windows import Box, WindowLayout


class MissingFile(ImgSearchError):
    status_code = 404
    code = "missing_file"
    permanent = True


class FileChanging(ImgSearchError):
    """The file grew while it was read (being copied in): tried again later."""

    status_code = 409
    code = "file_changing"
    permanent = False


@dataclass
class PreparedImage:
    image_id: str
    sha256: str
    file_size: int
    width: int
    height: int
    #: Window boxes in the image's own pixels (``width`` x ``height``): what is stored.
    boxes: list[Box]
    #: ``(1 + len(boxes), S, S, 3)`` uint8: the full view first, then each window.
    pixels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    #: Size of the decoded pixels (smaller than width x height after JPEG draft decoding).
    decoded_size: tuple[int, int] = (0, 0)
    #: Whether the windows were cut from a once-shrunk copy rather than the decoded pixels.
    prescaled: bool = False
    #: The file's ``st_mtime_ns`` when it was read (:class:`FileRead`).
    mtime_ns: int | None = None
    #: The pixel signature (``imgsearch_common.signatures``), encoded as stored.
    signature: str | None = None
    #: With ``keep_decoded=True``: the decoded image and the boxes in its pixels (tests).
    decoded: Image.Image | None = None
    decoded_boxes: list[Box] | None = None


@dataclass(frozen=True)
class FileRead:
    """A file's bytes and content hash, and its modification time as ``fstat`` of the open
    file gave it before the read (a change during the read leaves a later time on disk,
    so the next queue of its folder sees the file as changed)."""

    data: bytes
    sha256: str
    mtime_ns: int

    @property
    def size(self) -> int:
        return len(self.data)


def read_file(path: str, max_bytes: int) -> bytes:
    return read_file_stat(path, max_bytes).data


def read_file_stat(path: str, max_bytes: int) -> FileRead:
    """Read a regular file of at most ``max_bytes``; its size and time from the open file."""
    try:
        # Non-blocking open: a FIFO put where a photo was cannot hold the thread.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise MissingFile("file not found") from exc
    except PermissionError as exc:
        raise MissingFile("file not readable") from exc
    except OSError as exc:
        raise MissingFile(f"file not readable ({exc.strerror or 'error'})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MissingFile("not a file")
        if st.st_size > max_bytes:
            raise PayloadTooLarge(f"file is {st.st_size} bytes; the limit is {max_bytes}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as file:
            # One byte more than fstat said tells a file that grew meanwhile (read(n)
            # allocates n bytes first: never ask for the limit itself).
            data = file.read(st.st_size + 1)
    finally:
        os.close(fd)
    if len(data) > st.st_size:
        raise FileChanging("the file grew while it was read")
    if not data:
        raise EmptyInput("file is empty")
    return FileRead(data, content_hash(data), st.st_mtime_ns)


def needed_short_side(width: int, height: int, boxes: Sequence[Box], image_size: int) -> float:
    """The short side (px) at which the smallest view the model gets — a window, or the
    full view's short side — is still ``image_size`` px: the resolution indexing needs."""
    short = min(width, height)
    smallest = min([short, *(min(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes)])
    return image_size * short / max(1, smallest)


def prepare_image(
    path: str,
    *,
    image_size: int,
    max_bytes: int,
    max_pixels: int,
    layout: WindowLayout,
    jpeg_draft: bool = True,
    prescale_factor: float = 2.0,
    keep_decoded: bool = False,
    read: FileRead | None = None,
) -> PreparedImage:
    """Read, decode and cut one image into model inputs, its windows placed by ``layout``.

    ``jpeg_draft``: decode JPEGs at the smallest DCT scale that keeps every window at
    least ``image_size`` px (crops are cut from those decoded pixels, so the vectors equal
    open_clip's for them). ``prescale_factor``: when the decoded image is more than this
    many times larger than needed, shrink it once to that size before cutting windows
    (0 = never: every crop is cut from the decoded pixels themselves). ``read``: the file
    as the caller read it already (:func:`read_file_stat`), else it is read here.
    """
    t0 = time.perf_counter()
    file = read if read is not None else read_file_stat(path, max_bytes)
    data = file.data
    t1 = time.perf_counter()
    opened = open_image(data, max_pixels=max_pixels)
    width, height = opened.size
    boxes = layout.boxes(width, height)
    need = needed_short_side(width, height, boxes, image_size)
    img = opened.decode(need if jpeg_draft else 0)
    t2 = time.perf_counter()
    cut = img
    if prescale_factor > 0 and min(img.size) > prescale_factor * need:
        cut = prescale(img, math.ceil(prescale_factor * need))
    cut_boxes = scale_boxes(boxes, cut.width / width, cut.height / height)
    pixels = np.empty((1 + len(boxes), image_size, image_size, 3), dtype=np.uint8)
    pixels[0] = model_input(cut, image_size)
    if boxes:
        pixels[1:] = crops_to_model_inputs(cut, cut_boxes, image_size)
    # From the pixels already decoded, at the size the windows are cut from (what the
    # duplicate finder verifies pairs with).
    signature = pixel_signature(cut, (width, height)).encode()
    t3 = time.perf_counter()
    sha = file.sha256
    return PreparedImage(
        image_id=image_id(sha),
        sha256=sha,
        file_size=len(data),
        width=width,
        height=height,
        boxes=boxes,
        pixels=pixels,
        timings={"read": t1 - t0, "decode": t2 - t1, "windows": t3 - t2},
        decoded_size=img.size,
        prescaled=cut is not img,
        mtime_ns=file.mtime_ns,
        signature=signature,
        decoded=img if keep_decoded else None,
        decoded_boxes=(
            scale_boxes(boxes, img.width / width, img.height / height) if keep_decoded else None
        ),
    )
