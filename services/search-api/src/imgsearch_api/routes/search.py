"""Public search endpoints (the original system's surface plus by-text)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from imgsearch_common.errors import EmptyInput
from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import (
    MAX_LIMIT,
    MatchMode,
    SearchOptions,
    SearchResponse,
    TextSearchRequest,
    UrlSearchRequest,
)

from ..search import ImageSearch, SearchScope
from ..state import AppState, get_state
from . import openapi

router = APIRouter(prefix="/api/search", tags=["search"])
State = Annotated[AppState, Depends(get_state)]


def _observe(state: AppState, response: SearchResponse) -> SearchResponse:
    for stage, ms in response.timings_ms.items():
        state.metrics.search_stage.labels(stage).observe(ms / 1000.0)
    return response


@router.post("/by-image", response_model=SearchResponse, responses=openapi.SEARCH_BY_IMAGE)
async def search_by_image(
    state: State,
    file: Annotated[UploadFile, File(description="the query image")],
    use_full_matching: Annotated[bool, Form()] = True,
    use_partial_matching: Annotated[bool, Form()] = True,
    remove_text: Annotated[bool, Form()] = False,
    enhance_image: Annotated[bool, Form()] = False,
    limit: Annotated[int, Form(ge=1, le=MAX_LIMIT)] = 10,
    collection: Annotated[str, Form()] = DEFAULT_COLLECTION,
    min_score: Annotated[float | None, Form(ge=-1.0, le=2.0)] = None,
    match_mode: Annotated[MatchMode | None, Form()] = None,
) -> SearchResponse:
    data = await file.read()
    if not data:
        raise EmptyInput("the uploaded file is empty")
    options = SearchOptions(
        use_full_matching=use_full_matching,
        use_partial_matching=use_partial_matching,
        remove_text=remove_text,
        enhance_image=enhance_image,
        limit=limit,
        collection=collection,
        min_score=min_score,
        match_mode=match_mode,
    )
    response = await state.search.by_image(data, ImageSearch.from_options(options))
    return _observe(state, response)


@router.post("/by-url", response_model=SearchResponse, responses=openapi.SEARCH_BY_URL)
async def search_by_url(state: State, body: UrlSearchRequest) -> SearchResponse:
    data = await state.fetcher.fetch(body.url)
    response = await state.search.by_image(data, ImageSearch.from_options(body))
    return _observe(state, response)


@router.post("/by-text", response_model=SearchResponse, responses=openapi.SEARCH_BY_TEXT)
async def search_by_text(state: State, body: TextSearchRequest) -> SearchResponse:
    if not body.text.strip():
        raise EmptyInput("the text is empty")
    response = await state.search.by_text(body.text, SearchScope.from_options(body))
    return _observe(state, response)
