"""Status, health, metrics, image serving and the web page."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from importlib import resources
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imgsearch_common.errors import NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION, validate_collection
from imgsearch_common.payloads import ImagePayload

from ..files import IndexedFiles
from ..state import AppState, get_state

router = APIRouter()
State = Annotated[AppState, Depends(get_state)]
#: Longest ``/health`` waits for each dependency (below the images' probe timeout, 4 s).
HEALTH_CHECK_S = 2.0
#: Bytes of an image file read per step while it is sent.
IMAGE_CHUNK_BYTES = 256 * 1024


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("imgsearch_api").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html)


@router.get("/health", tags=["ops"])
async def health(state: State) -> dict[str, Any]:
    """Always answers (within about ``HEALTH_CHECK_S``): ``degraded`` names what is down."""

    async def redis() -> str:
        await state.redis.ping()
        return "ok"

    async def encoder() -> str:
        info = await state.encoder.info()
        return f"ok ({info.model}/{info.pretrained} on {info.device})"

    redis_check, encoder_check = await asyncio.gather(_check(redis()), _check(encoder()))
    checks = {
        "redis": redis_check,
        "encoder": encoder_check,
        "vector_store": type(state.store).__name__,
    }
    ok = all(not v.startswith("unavailable") for v in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}


async def _check(probe: Awaitable[str]) -> str:
    """A dependency's health line; ``unavailable`` when it fails or is slower than
    ``HEALTH_CHECK_S`` (a Redis that hangs must not hang the health check)."""
    try:
        return await asyncio.wait_for(probe, HEALTH_CHECK_S)
    except Exception:
        return "unavailable"


@router.get("/metrics", tags=["ops"], include_in_schema=False)
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/status", tags=["ops"])
async def status(state: State) -> dict[str, Any]:
    collections: dict[str, dict[str, int]] = {}
    for name in await state.store.collections():
        collections[name] = {
            "full_images": await state.store.count(name, "full"),
            "partial_images": await state.store.count(name, "window"),
        }
    totals = {
        "full_images": sum(c["full_images"] for c in collections.values()),
        "partial_images": sum(c["partial_images"] for c in collections.values()),
    }
    return {
        "status": "ok",
        "indexed_images": totals,
        "collections": collections,
        "queue": await state.queue.depth(),
    }


@router.get("/api/image/{image_id}", tags=["search"])
async def image(
    state: State, image_id: str, collection: str = DEFAULT_COLLECTION
) -> StreamingResponse:
    """The original file of an indexed image, if it is a regular file under ``INDEX_ROOTS``
    or the upload folder (``imgsearch_api.files``); else 404."""
    validate_collection(collection)
    try:
        uuid.UUID(image_id)
    except ValueError:
        raise NotFound("no such image") from None
    hits = await state.store.retrieve(collection, "full", [image_id])
    payload = ImagePayload.read(hits[0].payload) if hits else None
    if payload is None:
        raise NotFound("no such image")
    files = IndexedFiles.of(state.settings.index_roots, state.settings.uploads_path())
    opened = await asyncio.to_thread(files.open, payload.file_path)
    if opened is None:
        raise NotFound("the image file is not available")
    # Sent from the descriptor that passed the check, not reopened by name.
    size = os.fstat(opened.file.fileno()).st_size
    media_type = mimetypes.guess_type(opened.path.name)[0] or "application/octet-stream"
    return StreamingResponse(
        _chunks(opened.file, size),
        media_type=media_type,
        headers={"Content-Length": str(size)},
    )


async def _chunks(file: BinaryIO, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``file`` (fewer if it shrank meanwhile), read off the loop; closes it."""
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(IMAGE_CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        file.close()
