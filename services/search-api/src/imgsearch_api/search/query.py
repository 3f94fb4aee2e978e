"""What is searched: the request in our own terms, and an image query prepared for the model.

The public options keep the original system's names (``use_partial_matching``); they are
mapped once, here, to the words the code uses (*windows*). Preparing an image query is CPU
work (decoding, text removal, enhancement, cutting the query's own windows) and runs in
the search API's thread pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from imgsearch_common.imaging import crops_to_model_inputs, model_input, open_image
from imgsearch_common.schemas import MatchMode, SearchOptions, TextSearchRequest
from imgsearch_common.signatures import PixelSignature, pixel_signature
from imgsearch_common.windows import Box, query_window_boxes

from ..enhance import enhance_image
from .locate import rectangle_proposals
from .timings import Timings
from .tuning import MATCH_MODES, SearchTuning

#: Queries are shrunk to this long side before text removal (``MAX_QUERY_SIDE`` applies first).
TEXT_REMOVAL_MAX_SIDE = 1024


def searched_collections(collection: str, collections: Sequence[str] | None) -> tuple[str, ...]:
    """The collections a request searches: ``collections`` (each once, in the order named)
    when it names any, else ``collection``."""
    return tuple(dict.fromkeys(collections)) if collections else (collection,)


@dataclass(frozen=True)
class SearchScope:
    """Where to search, with which evidence, and how many results to return."""

    #: At least one; results of several are merged by score.
    collections: tuple[str, ...]
    use_full: bool = True
    #: The indexed pictures' windows (the public ``use_partial_matching``).
    use_windows: bool = True
    limit: int = 10
    #: None: the server's ``DEFAULT_MIN_SCORE``.
    min_score: float | None = None

    @classmethod
    def from_options(cls, options: SearchOptions | TextSearchRequest) -> SearchScope:
        return cls(
            collections=searched_collections(options.collection, options.collections),
            use_full=options.use_full_matching,
            use_windows=options.use_partial_matching,
            limit=options.limit,
            min_score=options.min_score,
        )


@dataclass(frozen=True)
class ImageSearch:
    """A search by image: the scope and what to do to the query first."""

    scope: SearchScope
    remove_text: bool = False
    enhance: bool = False
    #: None: the server's ``DEFAULT_MATCH_MODE``.
    match_mode: MatchMode | None = None

    @classmethod
    def from_options(cls, options: SearchOptions) -> ImageSearch:
        return cls(
            scope=SearchScope.from_options(options),
            remove_text=options.remove_text,
            enhance=options.enhance_image,
            match_mode=options.match_mode,
        )

    def mode(self, tuning: SearchTuning) -> MatchMode:
        mode = self.match_mode or tuning.default_match_mode
        if mode not in MATCH_MODES:
            raise ValueError(f"unknown match mode {mode!r}")
        return mode


@dataclass
class PreparedQuery:
    image: Image.Image
    size: tuple[int, int]
    #: ``(1 + len(window_boxes), S, S, 3)``: the centre view, then the query windows.
    pixels: np.ndarray
    window_boxes: list[Box] = field(default_factory=list)
    #: The query's own size, when ``image`` is a shrunk copy (boxes are reported in it).
    original_size: tuple[int, int] | None = None
    #: The pixel signature of ``image``, as the workers compute the indexed pictures'
    #: (``signatures``): what tells a copy of the query from a merely similar picture.
    signature: PixelSignature | None = None

    def to_original(self, box: Sequence[int]) -> list[int]:
        """A box on ``image`` in the query's own pixels."""
        if self.original_size is None or self.original_size == self.size:
            return list(box)
        fx = self.original_size[0] / self.size[0]
        fy = self.original_size[1] / self.size[1]
        w, h = self.original_size
        x0, y0, x1, y1 = box
        return [
            min(w, round(x0 * fx)),
            min(h, round(y0 * fy)),
            min(w, round(x1 * fx)),
            min(h, round(y1 * fy)),
        ]


@dataclass(frozen=True)
class QueryPreparer:
    """Turns an uploaded query into model inputs (synchronous: run it in the pool)."""

    max_pixels: int
    remove_text: Callable[[Image.Image], Image.Image]
    query_window_scales: tuple[float, ...]
    query_window_max: int
    #: ``MAX_QUERY_SIDE`` and ``MAX_QUERY_PIXELS`` (see ``ApiSettings``).
    max_side: int = 2048
    max_decoded_pixels: int | None = None

    def prepare(
        self,
        data: bytes,
        image_size: int,
        request: ImageSearch,
        query_windows: bool,
        timings: Timings,
    ) -> PreparedQuery:
        with timings.stage("decode"):
            opened = open_image(data, max_pixels=self.max_pixels)
            # Whatever the query's size, what is worked on has at most ``max_side`` px on
            # its long side, and a larger query never exists as a full-size RGB copy
            # (a 10 KB 1-bit PNG of 10000 x 8000 px would be 320 MB of RGB).
            # Query windows, text removal and enhancement work on the query's own pixels
            # (boxes are reported in them, ``PreparedQuery.to_original``): as many as the
            # bound keeps. Otherwise the model sees the query through one view of
            # ``image_size`` px, re-scoring through a small working copy: a JPEG decoded
            # at the smallest DCT scale that keeps ``image_size`` px on the short side
            # serves both (a 1280 x 800 query decodes at 640 x 400, 2.5 x cheaper to
            # decode and shrink; the workers decode the indexed pictures the same way).
            full = query_windows or request.remove_text or request.enhance
            img = opened.decode_bounded(
                self.max_side,
                min_short_side=0 if full else image_size,
                max_decoded_pixels=self.max_decoded_pixels,
            )
        if request.remove_text:
            with timings.stage("remove_text"):
                # The model sees 224 px; detecting and inpainting 12 MP is wasted work.
                if max(img.size) > TEXT_REMOVAL_MAX_SIDE:
                    img = img.copy()
                    img.thumbnail(
                        (TEXT_REMOVAL_MAX_SIDE, TEXT_REMOVAL_MAX_SIDE), Image.Resampling.BICUBIC
                    )
                img = self.remove_text(img)
        if request.enhance:
            img = enhance_image(img)
        with timings.stage("preprocess"):
            boxes: list[Box] = []
            if query_windows:
                # Outlined rectangles first (aligned with a pasted picture by construction),
                # then the grid of query windows.
                grid = query_window_boxes(
                    img.width, img.height, self.query_window_scales, self.query_window_max
                )
                boxes = list(dict.fromkeys(rectangle_proposals(img) + grid))
            pixels = np.empty((1 + len(boxes), image_size, image_size, 3), dtype=np.uint8)
            pixels[0] = model_input(img, image_size)
            if boxes:
                pixels[1:] = crops_to_model_inputs(img, boxes, image_size)
            signature = pixel_signature(img, opened.size)
        return PreparedQuery(img, img.size, pixels, boxes, opened.size, signature)
