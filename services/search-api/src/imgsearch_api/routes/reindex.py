"""A collection's reindex: ``POST /api/collections/{name}/reindex`` starts it (``API_KEY``
when it is set), ``GET`` the same path follows it. The rules are ``imgsearch_api.reindex``'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from imgsearch_common.errors import NotFound
from imgsearch_common.schemas import ReindexStatus

from ..library import require_collections
from ..security import require_api_key
from ..state import AppState, get_state
from . import openapi

router = APIRouter(tags=["library"])
State = Annotated[AppState, Depends(get_state)]


@router.post(
    "/api/collections/{name}/reindex",
    response_model=ReindexStatus,
    status_code=202,
    responses=openapi.REINDEX,
    dependencies=[Depends(require_api_key)],
)
async def start_reindex(state: State, name: str) -> ReindexStatus:
    """Re-embed the collection's files into a new collection while searches keep using this
    one, then switch over: how a collection moves to a new model."""
    return await state.reindexer.start(name)


@router.get(
    "/api/collections/{name}/reindex",
    response_model=ReindexStatus,
    responses=openapi.REINDEX_STATUS,
)
async def reindex_status(state: State, name: str) -> ReindexStatus:
    """The collection's running or last reindex (kept a day after it ends)."""
    status = await state.reindexer.status(name)
    if status is None:
        await require_collections(state.store, [name])  # a mistyped name says so
        raise NotFound(f"collection {name!r} has not been reindexed lately")
    return status
