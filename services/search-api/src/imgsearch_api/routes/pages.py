"""Status, health, metrics, image serving and the web page."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import uuid
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imgsearch_common.errors import NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION, validate_collection
from imgsearch_common.payloads import ImagePayload

from ..state import AppState, get_state

router = APIRouter()
State = Annotated[AppState, Depends(get_state)]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("imgsearch_api").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html)


@router.get("/health", tags=["ops"])
async def health(state: State) -> dict[str, Any]:
    checks: dict[str, str] = {}
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unavailable"
    try:
        info = await state.encoder.info()
        checks["encoder"] = f"ok ({info.model}/{info.pretrained} on {info.device})"
    except Exception:
        checks["encoder"] = "unavailable"
    checks["vector_store"] = type(state.store).__name__
    ok = all(not v.startswith("unavailable") for v in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}


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
async def image(state: State, image_id: str, collection: str = DEFAULT_COLLECTION) -> FileResponse:
    """The original file of an indexed image. Never reads outside the indexed roots."""
    validate_collection(collection)
    try:
        uuid.UUID(image_id)
    except ValueError:
        raise NotFound("no such image") from None
    hits = await state.store.retrieve(collection, "full", [image_id])
    payload = ImagePayload.read(hits[0].payload) if hits else None
    if payload is None:
        raise NotFound("no such image")
    roots = [*await state.queue.roots(), str(state.settings.uploads_path())]
    real = await asyncio.to_thread(_servable, payload.file_path, roots)
    if real is None:
        raise NotFound("the image file is not available")
    media_type = mimetypes.guess_type(real.name)[0] or "application/octet-stream"
    return FileResponse(real, media_type=media_type)


def _servable(stored: str, roots: list[str]) -> Path | None:
    """``stored`` resolved, if it is an existing file under one of ``roots`` (links resolved)."""
    if not stored:
        return None
    real = Path(os.path.realpath(stored))
    inside = any(real.is_relative_to(os.path.realpath(r)) for r in roots)
    return real if inside and real.is_file() else None
