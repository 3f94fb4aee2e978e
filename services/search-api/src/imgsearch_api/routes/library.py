"""The collections and deletion: ``GET /api/collections`` (open, like every read),
``DELETE /api/images/{image_id}`` and ``DELETE /api/collections/{name}`` (``API_KEY`` when it
is set, like indexing). The rules are ``imgsearch_api.library``'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import CollectionDropped, CollectionsResponse, ImageDeleted

from ..library import Library
from ..security import require_api_key
from ..state import AppState, get_state
from . import openapi
from .media import ThumbnailsDep

router = APIRouter(tags=["library"])
State = Annotated[AppState, Depends(get_state)]
KeyRequired = [Depends(require_api_key)]


@router.get("/api/collections", response_model=CollectionsResponse, responses=openapi.COLLECTIONS)
async def collections(state: State) -> CollectionsResponse:
    """Every collection, sorted by name: its images, its windows, the model that filled it."""
    return CollectionsResponse(collections=await Library(state.store).summaries())


@router.delete(
    "/api/images/{image_id}",
    response_model=ImageDeleted,
    responses=openapi.DELETE_IMAGE,
    dependencies=KeyRequired,
)
async def delete_image(
    state: State, thumbnails: ThumbnailsDep, image_id: str, collection: str = DEFAULT_COLLECTION
) -> ImageDeleted:
    """Delete an image (its full point and its windows) from ``collection``."""
    deleted = await Library(state.store).delete_image(collection, image_id)
    # A reindex of the collection must not bring it back: out of its new collection too.
    target = await state.reindexer.target(collection)
    if target is not None:
        await state.store.delete_image(target, deleted.id)
    await thumbnails.forget(deleted.id)
    return deleted


@router.delete(
    "/api/collections/{name}",
    response_model=CollectionDropped,
    responses=openapi.DROP_COLLECTION,
    dependencies=KeyRequired,
)
async def drop_collection(state: State, name: str) -> CollectionDropped:
    """Delete a collection and everything in it."""
    await state.reindexer.abandon(name, "the collection was dropped")
    return await Library(state.store).drop(name)
