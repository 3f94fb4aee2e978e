"""The search path: query → vectors → hits → aggregation → re-scoring → results.

Stage one is a fixed number of calls whatever the index holds: the query's views (its
centre view, plus, in ``contains``/``auto`` mode, the rectangles outlined in the query
(``locate.rectangle_proposals``) and a grid of query windows) go to the encoder in **one**
batched call; full-image and window searches run concurrently, each
**one** batched store call for all the query's vectors; ``aggregation`` ranks the pictures.

Stage two (*re-scoring*, image queries, ``RESCORE_TOP_K`` > 0, with partial matching or
query windows) looks again at the best ``RESCORE_TOP_K`` pictures. Indexed windows are
coarse (at most ``MAX_WINDOWS`` per picture): a small crop only half-fills its best window,
and on a 2-core CPU there is no budget for the hundreds of windows that would fit it. So,
for each top picture, the query is *located* in it (``locate.locate``: pixel correlation
over sizes, then a finer pass), the box found is cut from the picture's file, and all
these boxes go to the encoder in one more call. A box that beats the picture's first-stage
score replaces it, and becomes the matched box. For a ``contains`` match it is the other
way round: the picture is located in the query, and the query's crop there is compared
with the picture's own view. The model decides, the correlation only proposes: a query
that is not a copy of part of a picture (another photo of the same thing) gets a poor box
whose score loses to the first stage's. ``RESCORE_FRACTIONS`` adds boxes of the query's
shape centred on the best window. A picture whose file cannot be read (moved, or a server
without the files) keeps its first-stage score.

CPU work (decoding, text removal, enhancement, cutting) runs in a thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.errors import ImgSearchError
from imgsearch_common.ids import validate_collection
from imgsearch_common.imaging import (
    crops_to_model_inputs,
    model_input,
    open_image,
    scale_boxes,
)
from imgsearch_common.schemas import (
    ImageMetadata,
    MatchedBox,
    MatchMode,
    SearchResponse,
    SearchResult,
)
from imgsearch_common.vectorstore.base import Hit, VectorStore
from imgsearch_common.windows import (
    QUERY_WINDOW_MAX,
    QUERY_WINDOW_SCALES,
    Box,
    query_window_boxes,
    refine_boxes,
)

from .aggregation import (
    QueryWindowHit,
    RankedImage,
    Rescore,
    WindowHit,
    aggregate_query_windows,
    aggregate_window_hits,
    apply_rescores,
    clip_box,
    merge_matches,
)
from .enhance import enhance_image
from .locate import locate, rectangle_proposals

log = logging.getLogger(__name__)

MATCH_MODES: tuple[MatchMode, ...] = ("auto", "region", "contains")
#: Full-image candidates fetched per requested result (the merge needs some slack).
FULL_OVERFETCH = 3
#: Queries are shrunk to this long side before text removal.
TEXT_REMOVAL_MAX_SIDE = 1024
#: Largest picture file re-scoring reads.
RESCORE_MAX_FILE_BYTES = 200 * 1024 * 1024
#: Re-scoring decodes JPEGs at a reduced scale that keeps this short side (a crop of 5 %
#: of the area then still has about 224 px).
RESCORE_DECODE_SIDE = 1024


@dataclass(frozen=True)
class SearchTuning:
    """The search settings that decide quality and cost (see ``ApiSettings``)."""

    window_search_limit: int = 200
    partial_rule: str = "max"
    #: Pictures re-scored in stage two (0 = off).
    rescore_top_k: int = 8
    #: Boxes with the query's shape centred on the matched window, besides the located one
    #: (fractions of the window's area; empty: the located box only).
    rescore_fractions: tuple[float, ...] = ()
    query_window_scales: tuple[float, ...] = QUERY_WINDOW_SCALES
    query_window_max: int = QUERY_WINDOW_MAX
    #: Applied when a request gives no ``min_score`` (None: keep everything).
    default_min_score: float | None = None
    #: Mode of requests that name none.
    default_match_mode: MatchMode = "region"

    @classmethod
    def from_settings(cls, settings: Any) -> SearchTuning:
        return cls(
            window_search_limit=settings.window_search_limit,
            partial_rule=settings.partial_rule,
            rescore_top_k=settings.rescore_top_k,
            rescore_fractions=tuple(settings.rescore_fractions),
            query_window_scales=tuple(settings.query_window_scales),
            query_window_max=settings.query_window_max,
            default_min_score=settings.default_min_score,
            default_match_mode=settings.default_match_mode,
        )


@dataclass
class PreparedQuery:
    image: Image.Image
    size: tuple[int, int]
    #: ``(1 + len(window_boxes), S, S, 3)``: the centre view, then the query windows.
    pixels: np.ndarray
    window_boxes: list[Box] = field(default_factory=list)
    #: The query's own size, when ``image`` is a shrunk copy (boxes are reported in it).
    original_size: tuple[int, int] | None = None

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


class SearchService:
    def __init__(
        self,
        store: VectorStore,
        encoder: EncoderClient,
        pool: Executor,
        *,
        max_pixels: int,
        window_search_limit: int = 200,
        partial_rule: str = "max",
        remove_text: Callable[[Image.Image], Image.Image],
        tuning: SearchTuning | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.pool = pool
        self.max_pixels = max_pixels
        self.tuning = tuning or SearchTuning(
            window_search_limit=window_search_limit, partial_rule=partial_rule
        )
        self._remove_text = remove_text

    async def by_image(
        self,
        data: bytes,
        *,
        collection: str,
        use_full: bool,
        use_partial: bool,
        remove_text: bool,
        enhance: bool,
        limit: int,
        min_score: float | None,
        match_mode: MatchMode | None = None,
        tuning: SearchTuning | None = None,
    ) -> SearchResponse:
        started = time.perf_counter()
        validate_collection(collection)
        tune = tuning or self.tuning
        mode = match_mode or tune.default_match_mode
        if mode not in MATCH_MODES:
            raise ValueError(f"unknown match mode {mode!r}")
        timings: dict[str, float] = {}
        info = await self.encoder.info()
        loop = asyncio.get_running_loop()
        query_windows = mode in ("auto", "contains")
        prepared = await loop.run_in_executor(
            self.pool,
            self._prepare,
            data,
            info.image_size,
            remove_text,
            enhance,
            query_windows,
            tune,
            timings,
        )
        t0 = time.perf_counter()
        vectors = await self.encoder.embed_pixels(prepared.pixels)
        timings["encode"] = _ms(t0)
        region = mode in ("auto", "region")
        return await self._search(
            vectors[0],
            collection,
            use_full=use_full,
            use_partial=use_partial and region,
            limit=limit,
            min_score=min_score,
            tune=tune,
            timings=timings,
            started=started,
            query=prepared,
            window_vectors=vectors[1:],
            image_size=info.image_size,
        )

    async def by_text(
        self,
        text: str,
        *,
        collection: str,
        use_full: bool,
        use_partial: bool,
        limit: int,
        min_score: float | None,
        tuning: SearchTuning | None = None,
    ) -> SearchResponse:
        started = time.perf_counter()
        validate_collection(collection)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = (await self.encoder.embed_texts([text]))[0]
        timings["encode"] = _ms(t0)
        return await self._search(
            vector,
            collection,
            use_full=use_full,
            use_partial=use_partial,
            limit=limit,
            min_score=min_score,
            tune=tuning or self.tuning,
            timings=timings,
            started=started,
        )

    # --- stage one ----------------------------------------------------------------------

    def _prepare(
        self,
        data: bytes,
        image_size: int,
        remove_text: bool,
        enhance: bool,
        query_windows: bool,
        tune: SearchTuning,
        timings: dict[str, float],
    ) -> PreparedQuery:
        t0 = time.perf_counter()
        opened = open_image(data, max_pixels=self.max_pixels)
        if query_windows or remove_text or enhance:
            # These work on the query's own pixels and report boxes in them: full size.
            img = opened.decode()
        else:
            # The model sees the query through one view of ``image_size`` px, re-scoring
            # through a small working copy: a JPEG decoded at the smallest DCT scale that
            # keeps ``image_size`` px on the short side serves both (a 1280 x 800 query
            # decodes at 640 x 400, 2.5 x cheaper to decode and shrink; the workers decode
            # the indexed pictures the same way).
            img = opened.decode(min_short_side=image_size)
        timings["decode"] = _ms(t0)
        if remove_text:
            t1 = time.perf_counter()
            # The model sees 224 px; detecting and inpainting 12 MP is wasted work.
            if max(img.size) > TEXT_REMOVAL_MAX_SIDE:
                img = img.copy()
                img.thumbnail(
                    (TEXT_REMOVAL_MAX_SIDE, TEXT_REMOVAL_MAX_SIDE), Image.Resampling.BICUBIC
                )
            img = self._remove_text(img)
            timings["remove_text"] = _ms(t1)
        if enhance:
            img = enhance_image(img)
        t2 = time.perf_counter()
        boxes: list[Box] = []
        if query_windows:
            # Outlined rectangles first (aligned with a pasted picture by construction),
            # then the grid of query windows.
            boxes = list(
                dict.fromkeys(
                    rectangle_proposals(img)
                    + query_window_boxes(
                        img.width, img.height, tune.query_window_scales, tune.query_window_max
                    )
                )
            )
        pixels = np.empty((1 + len(boxes), image_size, image_size, 3), dtype=np.uint8)
        pixels[0] = model_input(img, image_size)
        if boxes:
            pixels[1:] = crops_to_model_inputs(img, boxes, image_size)
        timings["preprocess"] = _ms(t2)
        return PreparedQuery(img, img.size, pixels, boxes, opened.size)

    async def _search(
        self,
        vector: np.ndarray,
        collection: str,
        *,
        use_full: bool,
        use_partial: bool,
        limit: int,
        min_score: float | None,
        tune: SearchTuning,
        timings: dict[str, float],
        started: float,
        query: PreparedQuery | None = None,
        window_vectors: np.ndarray | None = None,
        image_size: int = 0,
    ) -> SearchResponse:
        t0 = time.perf_counter()
        q_windows = list(window_vectors) if window_vectors is not None else []
        full_hits: list[Hit] = []
        window_hits: list[Hit] = []
        q_window_hits: list[list[Hit]] = []
        calls = []
        search_full = use_full or bool(q_windows)
        if search_full:
            full_vectors = [vector, *q_windows] if q_windows else [vector]
            calls.append(
                self.store.search(collection, "full", full_vectors, limit * FULL_OVERFETCH)
            )
        if use_partial:
            calls.append(
                self.store.search(collection, "window", [vector], tune.window_search_limit)
            )
        answers = list(await asyncio.gather(*calls))
        if search_full:
            per_vector = answers.pop(0)
            full_hits = per_vector[0] if use_full else []
            q_window_hits = per_vector[1:]
        if use_partial:
            window_hits = answers.pop(0)[0]
        timings["vector_search"] = _ms(t0)

        t1 = time.perf_counter()
        payloads: dict[str, dict[str, Any]] = {
            h.id: h.payload for hits in [full_hits, *q_window_hits] for h in hits
        }
        partial = aggregate_window_hits(
            [
                WindowHit(str(h.payload["parent_id"]), h.score, _box(h.payload["box"]))
                for h in window_hits
                if "parent_id" in h.payload and "box" in h.payload
            ],
            rule=tune.partial_rule,
        )
        contains = None
        if query is not None and q_window_hits:
            contains = aggregate_query_windows(
                [
                    QueryWindowHit(h.id, h.score, box)
                    for box, hits in zip(query.window_boxes, q_window_hits, strict=True)
                    for h in hits
                ],
                {i: s for i, p in payloads.items() if (s := _size(p)) is not None},
                query.size,
            )
        threshold = min_score if min_score is not None else tune.default_min_score
        rescoring = (
            query is not None and tune.rescore_top_k > 0 and (use_partial or contains is not None)
        )
        ranked = merge_matches(
            {h.id: h.score for h in full_hits},
            partial,
            limit=max(limit, tune.rescore_top_k) if rescoring else limit,
            min_score=None if rescoring else threshold,
            contains=contains,
        )
        timings["aggregate"] = _ms(t1)

        t2 = time.perf_counter()
        missing = [r.image_id for r in ranked if r.image_id not in payloads]
        if missing:
            for hit in await self.store.retrieve(collection, "full", missing):
                payloads[hit.id] = hit.payload
        timings["fetch_metadata"] = _ms(t2)

        if rescoring and query is not None:
            t3 = time.perf_counter()
            rescores = await self._rescore(
                vector, ranked[: tune.rescore_top_k], payloads, query, image_size, tune
            )
            ranked = apply_rescores(ranked, rescores, limit=limit, min_score=threshold)
            timings["rescore"] = _ms(t3)

        results = [_result(r, payloads.get(r.image_id), collection, query) for r in ranked]
        return SearchResponse(results=results, processing_time_ms=_ms(started), timings_ms=timings)

    # --- stage two ----------------------------------------------------------------------

    async def _rescore(
        self,
        vector: np.ndarray,
        top: Sequence[RankedImage],
        payloads: dict[str, dict[str, Any]],
        query: PreparedQuery,
        image_size: int,
        tune: SearchTuning,
    ) -> dict[str, Rescore]:
        """Cut candidate boxes from the top pictures (or, for contains matches, from the
        query), encode them in one call, keep each picture's best."""
        loop = asyncio.get_running_loop()
        jobs = []
        for r in top:
            payload = payloads.get(r.image_id) or {}
            size = _size(payload)
            path = str(payload.get("stored_path") or payload.get("original_path") or "")
            if size is None or not path:
                continue
            jobs.append((r, path, size))
        if not jobs:
            return {}
        cut = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self.pool, self._candidates, r, path, size, query, image_size, tune
                )
                for r, path, size in jobs
            )
        )
        kept = [c for c in cut if c is not None]
        if not kept:
            return {}
        vectors = await self.encoder.embed_pixels(np.concatenate([c.pixels for c in kept]))
        out: dict[str, Rescore] = {}
        at = 0
        for c in kept:
            n = len(c.pixels)
            block = vectors[at : at + n]
            at += n
            # Contains: the picture's own view first, then the query's crops.
            scores = block[1:] @ block[0] if c.contains else block @ vector
            best = int(np.argmax(scores))
            out[c.image_id] = Rescore(
                c.image_id,
                float(scores[best]),
                c.boxes[best],
                c.query_boxes[best] if c.contains else None,
            )
        return out

    def _candidates(
        self,
        r: RankedImage,
        path: str,
        size: tuple[int, int],
        query: PreparedQuery,
        image_size: int,
        tune: SearchTuning,
    ) -> Candidates | None:
        """Model inputs of the candidate boxes for one picture, or None if its file is gone."""
        picture = self._read_picture(path, size)
        if picture is None:
            return None
        fx, fy = picture.width / size[0], picture.height / size[1]
        if r.contains is not None and r.score == r.contains.score:
            # Where does the picture lie in the query? The located box, and the query
            # window's estimate; each compared with the picture's own view.
            frames = [r.contains.query_box]
            found = locate(picture, query.image)
            if found is not None:
                frames.insert(0, found.box)
            frames = list(dict.fromkeys(b for b in frames if b[2] > b[0] and b[3] > b[1]))
            if not frames:
                return None
            pixels = np.empty((1 + len(frames), image_size, image_size, 3), dtype=np.uint8)
            pixels[0] = model_input(picture, image_size)
            for i, frame in enumerate(frames):
                pixels[1 + i] = model_input(query.image.crop(frame), image_size)
            full = (0, 0, size[0], size[1])
            return Candidates(r.image_id, pixels, [full] * len(frames), frames, contains=True)
        region = r.partial.boxes[0][0] if r.partial and r.partial.boxes else (0, 0, *size)
        aspect = query.size[0] / query.size[1]
        boxes = (
            refine_boxes(region, aspect, size[0], size[1], tune.rescore_fractions)
            if tune.rescore_fractions
            else []
        )
        found = locate(query.image, picture)
        if found is not None:
            x0, y0, x1, y1 = found.box
            located = (round(x0 / fx), round(y0 / fy), round(x1 / fx), round(y1 / fy))
            located = clip_box(located, *size)
            if located[2] > located[0] and located[3] > located[1]:
                boxes.insert(0, located)
        boxes = list(dict.fromkeys(boxes))
        if not boxes:
            return None
        scaled = scale_boxes(boxes, fx, fy) if picture.size != size else boxes
        pixels = crops_to_model_inputs(picture, scaled, image_size)
        return Candidates(r.image_id, pixels, boxes, [])

    def _read_picture(self, path: str, size: tuple[int, int]) -> Image.Image | None:
        """An indexed picture's pixels (JPEG: decoded at a reduced scale that keeps at
        least ``RESCORE_DECODE_SIDE`` px on the short side), or None if unreadable."""
        try:
            if not os.path.isfile(path) or os.path.getsize(path) > RESCORE_MAX_FILE_BYTES:
                return None
            with open(path, "rb") as f:
                data = f.read()
            opened = open_image(data, max_pixels=self.max_pixels)
            if opened.size != size:
                return None  # the file changed since it was indexed
            return opened.decode(RESCORE_DECODE_SIDE)
        except (OSError, ImgSearchError) as exc:
            log.info("re-scoring skipped %s: %s", path, exc)
            return None


@dataclass
class Candidates:
    image_id: str
    #: Region: one model input per box. Contains: the picture's view, then one query crop
    #: per box.
    pixels: np.ndarray
    #: The picture's pixels each candidate stands for.
    boxes: list[Box]
    #: Contains: where the picture lies in the query, per candidate.
    query_boxes: list[Box]
    contains: bool = False


def _result(
    r: RankedImage,
    payload: dict[str, Any] | None,
    collection: str,
    query: PreparedQuery | None = None,
) -> SearchResult:
    part = r.partial
    cont = r.contains if r.match_type == "contains" else None
    return SearchResult(
        id=r.image_id,
        score=round(r.score, 6),
        metadata=_metadata(payload),
        matched_regions=part.count if part else 0,
        avg_score=round(part.mean_score, 6) if part else None,
        match_type=r.match_type,  # type: ignore[arg-type]
        full_score=None if r.full_score is None else round(r.full_score, 6),
        partial_score=round(part.score, 6) if part else None,
        contains_score=round(r.contains.score, 6) if r.contains else None,
        matched_boxes=(
            [MatchedBox(box=list(cont.image_box), score=round(cont.score, 6))]
            if cont
            else [
                MatchedBox(box=list(b), score=round(s, 6)) for b, s in (part.boxes if part else [])
            ]
        ),
        query_box=(
            (query.to_original(cont.query_box) if query else list(cont.query_box)) if cont else None
        ),
        image_url=f"/api/image/{r.image_id}?collection={collection}",
    )


def _size(payload: dict[str, Any] | None) -> tuple[int, int] | None:
    if not payload:
        return None
    try:
        width, height = int(payload["width"]), int(payload["height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _box(value: Any) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in value)
    return (x0, y0, x1, y1)


def _metadata(payload: dict[str, Any] | None) -> ImageMetadata | None:
    if not payload:
        return None
    try:
        return ImageMetadata.model_validate(payload)
    except ValueError:
        return None


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)
