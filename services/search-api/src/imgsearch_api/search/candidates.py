"""Stage one: the query's vectors against the index, aggregated into ranked pictures.

A fixed number of store calls whatever the index holds: full-image vectors are searched
with the query's own vector and, in ``contains``/``auto`` mode, every query window's vector
(**one** batched call); window vectors with the query's own vector (one more call, run
concurrently). ``aggregation`` turns the hits into one ranked list; the payloads of the
ranked pictures that no hit brought along are then fetched in one call. A picture whose
image point is gone (deleted, or windows written before their image's point) is no result:
only windows spoke for it, and there is nothing to show or serve.

One collection per run: a search of several runs once per collection (``service``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import numpy as np

from imgsearch_common.payloads import ImagePayload, WindowPayload
from imgsearch_common.vectorstore.base import Hit, VectorStore

from .aggregation import (
    QueryWindowHit,
    RankedImage,
    WindowHit,
    aggregate_query_windows,
    aggregate_window_hits,
    merge_matches,
)
from .query import PreparedQuery, SearchScope
from .timings import Timings
from .tuning import SearchTuning

#: Full-image candidates fetched per requested result (the merge needs some slack).
FULL_OVERFETCH = 3


@dataclass(frozen=True)
class QueryVectors:
    #: The query's own vector (its centre view, or the text's).
    view: np.ndarray
    #: ``(n, D)``: the query windows' vectors, in the order of ``PreparedQuery.window_boxes``
    #: (``n`` = 0 outside ``contains``/``auto`` mode).
    windows: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))


@dataclass
class Candidates:
    """Stage one's answer: the ranked pictures and the payloads known for them."""

    ranked: list[RankedImage]
    payloads: dict[str, ImagePayload]


@dataclass(frozen=True)
class CandidateSearch:
    store: VectorStore
    tuning: SearchTuning

    async def run(
        self,
        collection: str,
        scope: SearchScope,
        vectors: QueryVectors,
        query: PreparedQuery | None,
        *,
        keep: int,
        min_score: float | None,
        timings: Timings,
    ) -> Candidates:
        """The best ``keep`` pictures of ``collection`` scoring at least ``min_score``
        (None: all)."""
        with timings.stage("vector_search"):
            full_hits, query_window_hits, window_hits = await self._search(
                collection, scope, vectors
            )
        with timings.stage("aggregate"):
            payloads = _image_payloads([full_hits, *query_window_hits])
            windows = aggregate_window_hits(
                [
                    WindowHit(p.parent_id, h.score, p.box)
                    for h in window_hits
                    if (p := WindowPayload.read(h.payload)) is not None
                ],
                rule=self.tuning.window_rule,
            )
            contains = None
            if query is not None and query_window_hits:
                contains = aggregate_query_windows(
                    [
                        QueryWindowHit(h.id, h.score, box)
                        for box, hits in zip(query.window_boxes, query_window_hits, strict=True)
                        for h in hits
                    ],
                    {i: s for i, p in payloads.items() if (s := p.size) is not None},
                    query.size,
                )
            ranked = merge_matches(
                {h.id: h.score for h in full_hits},
                windows,
                limit=keep,
                min_score=min_score,
                contains=contains,
            )
        with timings.stage("fetch_metadata"):
            missing = [r.image_id for r in ranked if r.image_id not in payloads]
            if missing:
                fetched = await self.store.retrieve(collection, "full", missing)
                payloads.update(_image_payloads([fetched]))
        return Candidates([r for r in ranked if r.image_id in payloads], payloads)

    async def _search(
        self, collection: str, scope: SearchScope, vectors: QueryVectors
    ) -> tuple[list[Hit], list[list[Hit]], list[Hit]]:
        """Full-image hits of the query, full-image hits of each query window, window hits."""
        query_windows = list(vectors.windows)
        search_full = scope.use_full or bool(query_windows)
        calls: list[Awaitable[list[list[Hit]]]] = []
        if search_full:
            calls.append(
                self.store.search(
                    collection,
                    "full",
                    [vectors.view, *query_windows],
                    scope.limit * FULL_OVERFETCH,
                )
            )
        if scope.use_windows:
            calls.append(
                self.store.search(
                    collection, "window", [vectors.view], self.tuning.window_search_limit
                )
            )
        answers = list(await asyncio.gather(*calls))
        full_hits: list[Hit] = []
        query_window_hits: list[list[Hit]] = []
        window_hits: list[Hit] = []
        if search_full:
            per_vector = answers.pop(0)
            full_hits = per_vector[0] if scope.use_full else []
            query_window_hits = per_vector[1:]
        if scope.use_windows:
            window_hits = answers.pop(0)[0]
        return full_hits, query_window_hits, window_hits


def _image_payloads(groups: list[list[Hit]]) -> dict[str, ImagePayload]:
    """The readable image payloads of full-image hits, by point id."""
    out: dict[str, ImagePayload] = {}
    for hits in groups:
        for h in hits:
            if h.id not in out and (payload := ImagePayload.read(h.payload)) is not None:
                out[h.id] = payload
    return out
