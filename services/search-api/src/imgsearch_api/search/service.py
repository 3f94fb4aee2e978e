"""The search path: query → vectors → candidates → re-scoring → results.

Each step has its room: ``query`` (what is asked, and an image query prepared for the
model), ``candidates`` (stage one: the index searched and the hits aggregated), ``rescoring``
(stage two: the best pictures looked at again on freshly cut boxes), ``results`` (the
public response). This module only puts them in order, and keeps the timings.

A search of several collections runs stage one once per collection, side by side, and
merges the ranked lists by score (``aggregation.merge_collections``); stage two then
re-scores the best pictures of the merged list in one encoder call, as for one collection.
Every collection named must exist (``library.require_collections``), checked before the
query costs anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import replace

from PIL import Image

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import SearchResponse
from imgsearch_common.vectorstore.base import VectorStore

from ..admission import Gate
from ..files import IndexedFiles
from ..library import require_collections
from ..model_check import refuse_other_models
from .aggregation import Found, RankedImage, apply_rescores, merge_collections
from .candidates import Candidates, CandidateSearch, QueryVectors
from .kinds import same_images
from .query import ImageSearch, PreparedQuery, QueryPreparer, SearchScope
from .rescoring import Rescorer
from .results import build_result
from .timings import Timings
from .tuning import SearchTuning


class SearchService:
    def __init__(
        self,
        store: VectorStore,
        encoder: EncoderClient,
        pool: Executor,
        *,
        tuning: SearchTuning,
        max_pixels: int,
        remove_text: Callable[[Image.Image], Image.Image],
        admission: Gate | None = None,
        files: IndexedFiles,
    ) -> None:
        """``admission``: the global limit every search passes (``admission.py``); None:
        no limit. ``files``: the only files re-scoring reads (``imgsearch_api.files``)."""
        self.store = store
        self.encoder = encoder
        self.admission = admission
        self.pool = pool
        self.tuning = tuning
        self._preparer = QueryPreparer(
            max_pixels,
            remove_text,
            tuning.query_window_scales,
            tuning.query_window_max,
            max_side=tuning.max_query_side,
            max_decoded_pixels=tuning.max_query_pixels,
        )
        self._candidates = CandidateSearch(store, tuning)
        self._rescorer = Rescorer(encoder, pool, max_pixels, tuning.rescore_fractions, files=files)

    async def by_image(self, data: bytes, request: ImageSearch) -> SearchResponse:
        async with self._admitted():
            return await self._by_image(data, request)

    async def by_text(self, text: str, scope: SearchScope) -> SearchResponse:
        async with self._admitted():
            return await self._by_text(text, scope)

    def _admitted(self) -> AbstractAsyncContextManager[None]:
        return self.admission.slot() if self.admission is not None else nullcontext()

    async def _by_image(self, data: bytes, request: ImageSearch) -> SearchResponse:
        timings = Timings()
        scope = request.scope
        await require_collections(self.store, scope.collections)
        mode = request.mode(self.tuning)
        info = await self.encoder.info()
        model = info.model_record()
        await refuse_other_models(self.store, scope.collections, model)
        query = await asyncio.get_running_loop().run_in_executor(
            self.pool,
            self._preparer.prepare,
            data,
            info.image_size,
            request,
            mode in ("auto", "contains"),
            timings,
        )
        with timings.stage("encode"):
            vectors = await self.encoder.embed_pixels(query.pixels, model=model.fingerprint)
        # ``region`` is the public name of matching against the index's windows.
        scope = replace(scope, use_windows=scope.use_windows and mode in ("auto", "region"))
        return await self._search(
            scope, QueryVectors(vectors[0], vectors[1:]), timings, query, info.image_size
        )

    async def _by_text(self, text: str, scope: SearchScope) -> SearchResponse:
        timings = Timings()
        await require_collections(self.store, scope.collections)
        model = (await self.encoder.info()).model_record()
        await refuse_other_models(self.store, scope.collections, model)
        with timings.stage("encode"):
            vector = (await self.encoder.embed_texts([text], model=model.fingerprint))[0]
        return await self._search(scope, QueryVectors(vector), timings)

    async def _search(
        self,
        scope: SearchScope,
        vectors: QueryVectors,
        timings: Timings,
        query: PreparedQuery | None = None,
        image_size: int = 0,
    ) -> SearchResponse:
        tune = self.tuning
        threshold = scope.min_score if scope.min_score is not None else tune.default_min_score
        # Stage two looks at image queries matched by windows, the index's or the query's.
        rescoring = (
            query is not None
            and tune.rescore_top_k > 0
            and (scope.use_windows or len(vectors.windows) > 0)
        )
        # Re-scoring may lift a picture above others: keep enough, drop nothing yet.
        keep = max(scope.limit, tune.rescore_top_k) if rescoring else scope.limit
        found = await self._stage_one(
            scope, vectors, query, keep, None if rescoring else threshold, timings
        )
        ranked = merge_collections({c: f.ranked for c, f in found.items()}, limit=keep)
        if rescoring and query is not None:
            with timings.stage("rescore"):
                top, payloads = _distinct(ranked[: tune.rescore_top_k], found)
                rescores = await self._rescorer.rescore(
                    vectors.view, top, payloads, query, image_size
                )
                # A re-score is the content's (the query against its pixels): it holds for
                # that content in every collection searched.
                rescored = {
                    c: apply_rescores(f.ranked, rescores, limit=scope.limit, min_score=threshold)
                    for c, f in found.items()
                }
                ranked = merge_collections(rescored, limit=scope.limit)
        # What the encoder last said it holds on its GPU (0 on the CPU): the original
        # system's field, read off a header of the embed answers, at no extra call.
        return _response(found, ranked, query, timings, self.encoder.gpu_memory_used)

    async def _stage_one(
        self,
        scope: SearchScope,
        vectors: QueryVectors,
        query: PreparedQuery | None,
        keep: int,
        min_score: float | None,
        timings: Timings,
    ) -> dict[str, Candidates]:
        """Stage one in each collection of ``scope``, side by side (the stages' times are
        the longest collection's)."""
        if len(scope.collections) == 1:
            (collection,) = scope.collections
            found = await self._candidates.run(
                collection, scope, vectors, query, keep=keep, min_score=min_score, timings=timings
            )
            return {collection: found}
        each = {c: Timings() for c in scope.collections}
        answers = await asyncio.gather(
            *(
                self._candidates.run(
                    c, scope, vectors, query, keep=keep, min_score=min_score, timings=t
                )
                for c, t in each.items()
            )
        )
        timings.include(each.values())
        return dict(zip(each, answers, strict=True))


def _distinct(
    top: Sequence[Found], found: Mapping[str, Candidates]
) -> tuple[list[RankedImage], dict[str, ImagePayload]]:
    """The pictures of ``top`` to re-score, each content once (the same image in two
    collections is one file's pixels: its best-ranked entry), and their payloads."""
    pictures: dict[str, RankedImage] = {}
    payloads: dict[str, ImagePayload] = {}
    for collection, r in top:
        payload = found[collection].payloads.get(r.image_id)
        if r.image_id in pictures or payload is None:
            continue
        pictures[r.image_id] = r
        payloads[r.image_id] = payload
    return list(pictures.values()), payloads


def _response(
    found: Mapping[str, Candidates],
    ranked: Sequence[Found],
    query: PreparedQuery | None,
    timings: Timings,
    gpu_memory_used: int,
) -> SearchResponse:
    same = {
        c: same_images(query, {r.image_id: r for name, r in ranked if name == c}, f.payloads)
        for c, f in found.items()
    }
    results = [
        build_result(r, found[c].payloads.get(r.image_id), c, query, same=r.image_id in same[c])
        for c, r in ranked
    ]
    return SearchResponse(
        results=results,
        processing_time_ms=timings.total_ms(),
        timings_ms=timings.ms,
        gpu_memory_used=gpu_memory_used,
    )
