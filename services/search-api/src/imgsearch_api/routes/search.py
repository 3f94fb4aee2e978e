"""Public search endpoints (the original system's surface plus by-text).

Each searches ``collection``, or the several of ``collections`` (JSON: a list; the
by-image form: the field repeated, or names separated by commas), results merged by score.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError

from imgsearch_common.errors import EmptyInput
from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import (
    MAX_LIMIT,
    MAX_SEARCH_COLLECTIONS,
    MatchMode,
    SearchOptions,
    SearchResponse,
    TextSearchRequest,
    UrlSearchRequest,
)

from ..library import require_collections
from ..search import ImageSearch, SearchScope
from ..state import AppState, get_state
from . import openapi

router = APIRouter(prefix="/api/search", tags=["search"])
State = Annotated[AppState, Depends(get_state)]


def _form_collections(fields: list[str] | None) -> list[str] | None:
    """The by-image form's ``collections``: every field, split at commas, blanks dropped
    (none left: unset). More than ``MAX_SEARCH_COLLECTIONS``: 422, as the JSON bodies."""
    names = [n.strip() for field in fields or [] for n in field.split(",") if n.strip()]
    if len(names) > MAX_SEARCH_COLLECTIONS:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "collections"),
                    "msg": f"at most {MAX_SEARCH_COLLECTIONS} collections",
                    "type": "too_long",
                }
            ]
        )
    return names or None


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
    collections: Annotated[
        list[str] | None,
        Form(
            description="collections searched instead of `collection`, results merged by "
            f"score: the field repeated, or names separated by commas (at most "
            f"{MAX_SEARCH_COLLECTIONS})"
        ),
    ] = None,
) -> SearchResponse:
    names = _form_collections(collections)
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
        collections=names,
    )
    response = await state.search.by_image(data, ImageSearch.from_options(options))
    return _observe(state, response)


@router.post("/by-url", response_model=SearchResponse, responses=openapi.SEARCH_BY_URL)
async def search_by_url(state: State, body: UrlSearchRequest) -> SearchResponse:
    request = ImageSearch.from_options(body)
    # Before the fetch: a search that cannot be answered costs no request to the web.
    await require_collections(state.store, request.scope.collections)
    data = await state.fetcher.fetch(body.url)
    response = await state.search.by_image(data, request)
    return _observe(state, response)


@router.post("/by-text", response_model=SearchResponse, responses=openapi.SEARCH_BY_TEXT)
async def search_by_text(state: State, body: TextSearchRequest) -> SearchResponse:
    if not body.text.strip():
        raise EmptyInput("the text is empty")
    response = await state.search.by_text(body.text, SearchScope.from_options(body))
    return _observe(state, response)
