"""The search path: query → vector → full and window hits → aggregation → results.

CPU work (decoding, text removal, enhancement, preprocessing) runs in a thread
pool; encoding goes to the encoder service (batched there with everything else);
full-image and window searches run concurrently, each one batched call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
from PIL import Image

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.ids import validate_collection
from imgsearch_common.imaging import decode_image, model_input
from imgsearch_common.schemas import (
    ImageMetadata,
    MatchedBox,
    SearchResponse,
    SearchResult,
)
from imgsearch_common.vectorstore.base import Hit, VectorStore

from .aggregation import WindowHit, aggregate_window_hits, merge_matches
from .enhance import enhance_image

#: Full-image candidates fetched per requested result (the merge needs some slack).
FULL_OVERFETCH = 3
#: Queries are shrunk to this long side before text removal.
TEXT_REMOVAL_MAX_SIDE = 1024


class SearchService:
    def __init__(
        self,
        store: VectorStore,
        encoder: EncoderClient,
        pool: Executor,
        *,
        max_pixels: int,
        window_search_limit: int,
        partial_rule: str = "max",
        remove_text: Callable[[Image.Image], Image.Image],
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.pool = pool
        self.max_pixels = max_pixels
        self.window_search_limit = window_search_limit
        self.partial_rule = partial_rule
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
    ) -> SearchResponse:
        started = time.perf_counter()
        validate_collection(collection)
        timings: dict[str, float] = {}
        info = await self.encoder.info()
        loop = asyncio.get_running_loop()
        pixels = await loop.run_in_executor(
            self.pool, self._prepare, data, info.image_size, remove_text, enhance, timings
        )
        t0 = time.perf_counter()
        vector = (await self.encoder.embed_pixels(pixels[None]))[0]
        timings["encode"] = _ms(t0)
        results = await self._search(
            vector, collection, use_full, use_partial, limit, min_score, timings
        )
        return SearchResponse(results=results, processing_time_ms=_ms(started), timings_ms=timings)

    async def by_text(
        self,
        text: str,
        *,
        collection: str,
        use_full: bool,
        use_partial: bool,
        limit: int,
        min_score: float | None,
    ) -> SearchResponse:
        started = time.perf_counter()
        validate_collection(collection)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = (await self.encoder.embed_texts([text]))[0]
        timings["encode"] = _ms(t0)
        results = await self._search(
            vector, collection, use_full, use_partial, limit, min_score, timings
        )
        return SearchResponse(results=results, processing_time_ms=_ms(started), timings_ms=timings)

    def _prepare(
        self,
        data: bytes,
        image_size: int,
        remove_text: bool,
        enhance: bool,
        timings: dict[str, float],
    ) -> np.ndarray:
        t0 = time.perf_counter()
        img = decode_image(data, max_pixels=self.max_pixels)
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
        pixels = model_input(img, image_size)
        timings["preprocess"] = _ms(t2)
        return pixels

    async def _search(
        self,
        vector: np.ndarray,
        collection: str,
        use_full: bool,
        use_partial: bool,
        limit: int,
        min_score: float | None,
        timings: dict[str, float],
    ) -> list[SearchResult]:
        t0 = time.perf_counter()
        full_hits: list[Hit] = []
        window_hits: list[Hit] = []
        calls = []
        if use_full:
            calls.append(self.store.search(collection, "full", [vector], limit * FULL_OVERFETCH))
        if use_partial:
            calls.append(
                self.store.search(collection, "window", [vector], self.window_search_limit)
            )
        answers = await asyncio.gather(*calls)
        if use_full:
            full_hits = answers.pop(0)[0]
        if use_partial:
            window_hits = answers.pop(0)[0]
        timings["vector_search"] = _ms(t0)

        t1 = time.perf_counter()
        partial = aggregate_window_hits(
            [
                WindowHit(str(h.payload["parent_id"]), h.score, _box(h.payload["box"]))
                for h in window_hits
                if "parent_id" in h.payload and "box" in h.payload
            ],
            rule=self.partial_rule,
        )
        ranked = merge_matches(
            {h.id: h.score for h in full_hits}, partial, limit=limit, min_score=min_score
        )
        timings["aggregate"] = _ms(t1)

        t2 = time.perf_counter()
        payloads: dict[str, dict[str, Any]] = {h.id: h.payload for h in full_hits}
        missing = [r.image_id for r in ranked if r.image_id not in payloads]
        if missing:
            for hit in await self.store.retrieve(collection, "full", missing):
                payloads[hit.id] = hit.payload
        timings["fetch_metadata"] = _ms(t2)

        results: list[SearchResult] = []
        for r in ranked:
            part = r.partial
            results.append(
                SearchResult(
                    id=r.image_id,
                    score=round(r.score, 6),
                    metadata=_metadata(payloads.get(r.image_id)),
                    matched_regions=part.count if part else 0,
                    avg_score=round(part.mean_score, 6) if part else None,
                    match_type=r.match_type,  # type: ignore[arg-type]
                    full_score=None if r.full_score is None else round(r.full_score, 6),
                    partial_score=round(part.score, 6) if part else None,
                    matched_boxes=[
                        MatchedBox(box=list(b), score=round(s, 6))
                        for b, s in (part.boxes if part else [])
                    ],
                    image_url=f"/api/image/{r.image_id}?collection={collection}",
                )
            )
        return results


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
