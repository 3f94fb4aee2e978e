"""Indexing endpoints: queue a server-side folder, uploaded images or a URL; batch
progress, dead letters and their requeue. The rules are ``imgsearch_api.indexing``'s
(the requeue's, ``JobQueue.requeue``'s); a collection another model filled is refused
(409, ``model_check``).

Every endpoint here requires ``API_KEY`` when it is set.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Query, UploadFile

from imgsearch_common.errors import NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.jobs import MAX_RECENT_BATCHES, is_batch_id
from imgsearch_common.schemas import (
    BatchList,
    BatchQueued,
    BatchStatus,
    FolderIndexRequest,
    RequeueRequest,
    RequeueResult,
    UrlIndexRequest,
)

from ..model_check import check_indexing_model
from ..security import require_api_key
from ..state import AppState, get_state
from . import openapi

router = APIRouter(prefix="/api/index", tags=["indexing"], dependencies=[Depends(require_api_key)])
State = Annotated[AppState, Depends(get_state)]


@router.post("/folder", response_model=BatchQueued, status_code=202, responses=openapi.INDEX_FOLDER)
async def index_folder(state: State, body: FolderIndexRequest) -> BatchQueued:
    await check_indexing_model(state.store, state.encoder, body.collection)
    return await state.indexing.queue_folder(body)


@router.post("/upload", response_model=BatchQueued, status_code=202, responses=openapi.INDEX_UPLOAD)
async def index_upload(
    state: State,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    collection: Annotated[str, Form()] = DEFAULT_COLLECTION,
) -> BatchQueued:
    await check_indexing_model(state.store, state.encoder, collection)
    named = [(os.path.basename(f.filename or "upload"), await f.read()) for f in files]
    return await state.indexing.queue_uploads(collection, named)


@router.post("/url", response_model=BatchQueued, status_code=202, responses=openapi.INDEX_URL)
async def index_url(state: State, body: UrlIndexRequest) -> BatchQueued:
    await check_indexing_model(state.store, state.encoder, body.collection)
    return await state.indexing.queue_url(body)


# Declared before ``/batches/{batch_id}``, which would otherwise match it first.
@router.get("/batches", response_model=BatchList, responses=openapi.BATCH_LIST)
async def recent_batches(
    state: State,
    limit: Annotated[
        int, Query(ge=1, le=MAX_RECENT_BATCHES, description="most batches answered, newest first")
    ] = 20,
) -> BatchList:
    """The recent batches still known (the newest 100 at most, each for as long as the
    batch itself is kept: 7 days), newest first, each with its first 20 errors."""
    return BatchList(batches=await state.queue.recent_batches(limit))


@router.get("/batches/{batch_id}", response_model=BatchStatus, responses=openapi.BATCH_STATUS)
async def batch_status(state: State, batch_id: str) -> BatchStatus:
    if not is_batch_id(batch_id):
        raise NotFound("no such batch")
    status = await state.queue.batch_status(batch_id)
    if status is None:
        raise NotFound("no such batch")
    return status


@router.get("/dead-letters", responses=openapi.DEAD_LETTERS)
async def dead_letters(state: State, count: int = 100) -> dict[str, Any]:
    count = max(1, min(count, 1000))
    return {"dead_letters": await state.queue.dead_letters(count)}


@router.post("/dead-letters/requeue", response_model=RequeueResult, responses=openapi.REQUEUE)
async def requeue_dead_letters(
    state: State, body: Annotated[RequeueRequest | None, Body()] = None
) -> RequeueResult:
    body = body or RequeueRequest()
    return await state.queue.requeue(reasons=body.reasons, limit=body.limit, batch_id=body.batch_id)
