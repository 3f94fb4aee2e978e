"""Ranked pictures → the public response (the original system's field names, and ours)."""

from __future__ import annotations

from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import MatchedBox, SearchResult

from .aggregation import RankedImage
from .kinds import result_kind
from .query import PreparedQuery

#: The thumbnail size results point to (``GET /api/image/{id}/thumbnail``).
THUMBNAIL_SIZE = 256


def build_result(
    r: RankedImage,
    payload: ImagePayload | None,
    collection: str,
    query: PreparedQuery | None = None,
    *,
    same: bool = False,
) -> SearchResult:
    """One result, found in ``collection``; boxes of ``contains`` matches are reported in
    the query's own pixels. ``query`` None: a text query. ``same``: the result is the
    query's picture (``kinds.same_images``)."""
    windows = r.windows
    cont = r.contains if r.match_type == "contains" else None
    if cont is not None:
        boxes = [MatchedBox(box=list(cont.image_box), score=round(cont.score, 6))]
    else:
        boxes = [
            MatchedBox(box=list(b), score=round(s, 6))
            for b, s in (windows.boxes if windows else [])
        ]
    query_box = None
    if cont is not None:
        query_box = query.to_original(cont.query_box) if query else list(cont.query_box)
    size = payload.size if payload is not None else None
    kind, best_box = result_kind(r, size, same=same, text_query=query is None)
    return SearchResult(
        id=r.image_id,
        score=round(r.score, 6),
        metadata=payload.metadata() if payload is not None else None,
        matched_regions=windows.count if windows else 0,
        avg_score=round(windows.mean_score, 6) if windows else None,
        match_type=r.match_type,
        full_score=None if r.full_score is None else round(r.full_score, 6),
        partial_score=round(windows.score, 6) if windows else None,
        contains_score=round(r.contains.score, 6) if r.contains else None,
        matched_boxes=boxes,
        query_box=query_box,
        image_url=f"/api/image/{r.image_id}?collection={collection}",
        collection=collection,
        kind=kind,
        best_box=best_box,
        thumbnail_url=(
            f"/api/image/{r.image_id}/thumbnail?size={THUMBNAIL_SIZE}&collection={collection}"
        ),
    )
