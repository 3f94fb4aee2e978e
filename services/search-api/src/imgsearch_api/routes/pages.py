"""Status, health, metrics, image serving and the web page."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from importlib import resources
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imgsearch_common.encoder_client import EncoderInfo
from imgsearch_common.errors import NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.payloads import IMAGE_NAME_KEYS, NAME, ImagePayload
from imgsearch_common.schemas import HealthResponse, IndexedCounts, StatusResponse
from imgsearch_common.vectorstore.base import VectorStore

from ..files import IndexedFiles, OpenedFile
from ..library import require_collections
from ..state import AppState, get_state
from . import openapi

router = APIRouter()
State = Annotated[AppState, Depends(get_state)]
#: Longest ``/health`` waits for each dependency (below the images' probe timeout, 4 s).
HEALTH_CHECK_S = 2.0
#: Bytes of an image file read per step while it is sent.
IMAGE_CHUNK_BYTES = 256 * 1024
#: Most images one name is looked up among (``GET /images/{filename}``): the most recently
#: indexed of them that can be served is sent.
MAX_NAME_MATCHES = 1000
#: Longest name ``GET /images/{filename}`` looks up (longer: 404 without a lookup).
MAX_NAME_CHARS = 4096
#: A browser takes the type it is sent (an uploaded file is never sniffed into a page).
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
#: The image routes' success, as the OpenAPI schema states it.
_IMAGE_SENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/*": {}}, "description": "the image file"}
}
#: The image routes' answers, by id and by name.
_IMAGE_ROUTE: dict[str, Any] = {
    "response_class": StreamingResponse,
    "responses": {**_IMAGE_SENT, **openapi.IMAGE_BY_ID},
}
_IMAGE_NAME_ROUTE: dict[str, Any] = {
    "response_class": StreamingResponse,
    "responses": {**_IMAGE_SENT, **openapi.IMAGE_BY_NAME},
}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("imgsearch_api").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html, headers=NOSNIFF)


@router.get("/health", tags=["ops"], response_model=HealthResponse, responses=openapi.HEALTH)
async def health(state: State) -> HealthResponse:
    """Always answers 200 (within about ``HEALTH_CHECK_S``): ``degraded`` when a check says
    ``unavailable``. Each dependency is asked at each call, side by side."""
    seen: dict[str, Any] = {}

    async def redis() -> str:
        await state.redis.ping()
        return "ok"

    async def encoder() -> str:
        info = await state.encoder.info(refresh=True)
        seen["encoder"] = info
        return f"ok ({info.model}/{info.pretrained} on {info.device})"

    async def store() -> str:
        seen["counts"] = _total((await _counts(state.store)).values())
        return f"ok ({type(state.store).__name__})"

    redis_check, encoder_check, store_check = await asyncio.gather(
        _check(redis()), _check(encoder()), _check(store())
    )
    checks = {"redis": redis_check, "encoder": encoder_check, "vector_store": store_check}
    ok = all(not v.startswith("unavailable") for v in checks.values())
    info: EncoderInfo | None = seen.get("encoder") if encoder_check != "unavailable" else None
    counts: IndexedCounts | None = seen.get("counts") if store_check != "unavailable" else None
    return HealthResponse(
        status="healthy" if ok else "degraded",
        gpu_available=info is not None and info.gpu_available,
        qdrant_connected=counts is not None,
        collections=counts,
        checks=checks,
    )


async def _counts(store: VectorStore) -> dict[str, IndexedCounts]:
    """Images and windows of each collection."""
    return {
        name: IndexedCounts(
            full_images=await store.count(name, "full"),
            partial_images=await store.count(name, "window"),
        )
        for name in await store.collections()
    }


def _total(counts: Iterable[IndexedCounts]) -> IndexedCounts:
    """The images and windows of all ``counts`` together."""
    counts = list(counts)
    return IndexedCounts(
        full_images=sum(c.full_images for c in counts),
        partial_images=sum(c.partial_images for c in counts),
    )


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


@router.get("/api/status", tags=["ops"], response_model=StatusResponse, responses=openapi.STATUS)
async def status(state: State) -> StatusResponse:
    collections = await _counts(state.store)
    return StatusResponse(
        indexed_images=_total(collections.values()),
        collections=collections,
        queue=await state.queue.depth(),
    )


@router.get("/api/image/{image_id}", tags=["search"], **_IMAGE_ROUTE)
async def image(
    state: State, image_id: str, collection: str = DEFAULT_COLLECTION
) -> StreamingResponse:
    """The original file of an indexed image, if it is a regular file under ``INDEX_ROOTS``
    or the upload folder (``imgsearch_api.files``); else 404."""
    return _send(await indexed_file(state, image_id, collection))


async def indexed_file(state: AppState, image_id: str, collection: str) -> OpenedFile:
    """The file of the image ``image_id`` of ``collection``, opened, if the serving rule
    lets it be read (``imgsearch_api.files``); 404 ``not_found`` when there is no such image
    or its file is not served, ``collection_not_found`` when there is no such collection."""
    await require_collections(state.store, [collection])
    try:
        uuid.UUID(image_id)
    except ValueError:
        raise NotFound("no such image") from None
    hits = await state.store.retrieve(collection, "full", [image_id])
    payload = ImagePayload.read(hits[0].payload) if hits else None
    if payload is None:
        raise NotFound("no such image")
    opened = await asyncio.to_thread(state.files.open, payload.file_path)
    if opened is None:
        raise NotFound("the image file is not available")
    return opened


FileName = Annotated[
    str,
    Path(
        description="the name the image was indexed under: its file name (`cat.jpg`) or, "
        "for a folder's file, its path under the folder (`2024/summer/cat.jpg`)"
    ),
]


@router.get("/images/{filename:path}", tags=["search"], **_IMAGE_NAME_ROUTE)
async def image_by_name(
    state: State, filename: FileName, collection: str = DEFAULT_COLLECTION
) -> StreamingResponse:
    """The original system's route: the file of the indexed image named ``filename``,
    the most recently indexed one when several share the name. A name without a folder
    also matches images by their file name (``metadata.filename``). Served under the
    same rule as ``/api/image/{image_id}``; else 404."""
    return await _image_named(state, filename, collection)


@router.get("/static/images/{filename:path}", tags=["search"], **_IMAGE_NAME_ROUTE)
async def static_image_by_name(
    state: State, filename: FileName, collection: str = DEFAULT_COLLECTION
) -> StreamingResponse:
    """The same as ``/images/{filename}`` (the original system served both)."""
    return await _image_named(state, filename, collection)


async def _image_named(state: AppState, name: str, collection: str) -> StreamingResponse:
    await require_collections(state.store, [collection])
    if not _lookup_name(name):
        raise NotFound("no such image")
    # Only names the index holds are looked at: the request's name is matched whole,
    # never joined to a folder; the payload's path then passes the one serving rule.
    keys = (NAME,) if "/" in name else IMAGE_NAME_KEYS
    payloads: dict[str, ImagePayload] = {}
    for key in keys:
        for hit in await state.store.find(collection, "full", key, name, MAX_NAME_MATCHES):
            payload = ImagePayload.read(hit.payload)
            if payload is not None:
                payloads[hit.id] = payload
    if not payloads:
        raise NotFound("no such image")
    newest_first = sorted(payloads.values(), key=lambda p: p.indexed_at, reverse=True)
    opened = await asyncio.to_thread(_first_served, state.files, newest_first)
    if opened is None:
        raise NotFound("the image file is not available")
    return _send(opened)


def _lookup_name(name: str) -> bool:
    """Whether ``name`` may be an indexed image's name: not empty, not too long, relative,
    no ``.``, ``..`` or empty parts, no control characters. What fails is answered 404
    without a lookup (no indexed name has these forms)."""
    if not name or len(name) > MAX_NAME_CHARS or name.startswith("/"):
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _first_served(files: IndexedFiles, payloads: Sequence[ImagePayload]) -> OpenedFile | None:
    """The first of ``payloads`` whose file the serving rule lets through, opened.
    Blocking (file system calls): run it off the event loop."""
    for payload in payloads:
        opened = files.open(payload.file_path)
        if opened is not None:
            return opened
    return None


def _send(opened: OpenedFile) -> StreamingResponse:
    """Sent from the descriptor that passed the check, not reopened by name."""
    size = os.fstat(opened.file.fileno()).st_size
    media_type = mimetypes.guess_type(opened.path.name)[0] or "application/octet-stream"
    return StreamingResponse(
        _chunks(opened.file, size),
        media_type=media_type,
        headers={"Content-Length": str(size), **NOSNIFF},
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
