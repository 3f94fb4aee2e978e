"""Indexing endpoints: queue a server-side folder, uploaded images or a URL.

Every write endpoint requires ``API_KEY`` when it is set. Uploads and fetched
URLs are checked (decoded) before anything is queued, so a bad file gets its 4xx
right away; they are stored content-addressed under ``UPLOAD_DIR``, where the
workers read them and from where the image is served back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile

from imgsearch_common.errors import BadRequest, EmptyInput, Forbidden, NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION, content_hash, validate_collection
from imgsearch_common.imaging import DEFAULT_EXTENSIONS, decode_image
from imgsearch_common.schemas import (
    BatchQueued,
    BatchStatus,
    FolderIndexRequest,
    UrlIndexRequest,
)

from ..security import require_api_key
from ..state import AppState, get_state

router = APIRouter(prefix="/api/index", tags=["indexing"], dependencies=[Depends(require_api_key)])
State = Annotated[AppState, Depends(get_state)]
MAX_UPLOAD_FILES = 100


def _normalise_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    if not extensions:
        return DEFAULT_EXTENSIONS
    out = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        out.append(ext if ext.startswith(".") else "." + ext)
    if not out:
        raise BadRequest("no usable file extension given")
    return tuple(out)


def _walk(root: Path, extensions: tuple[str, ...], recursive: bool) -> list[tuple[str, str, str]]:
    """Image files under ``root``, sorted, as ``(path, source, name)`` job items."""
    found: list[str] = []
    if recursive:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            found.extend(os.path.join(folder, f) for f in files if f.lower().endswith(extensions))
    else:
        found = [
            str(p) for p in root.iterdir() if p.is_file() and p.name.lower().endswith(extensions)
        ]
    found.sort()
    return [(p, "folder", os.path.relpath(p, root)) for p in found]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _list_folder(
    path: str, index_roots: Sequence[Path], extensions: tuple[str, ...], recursive: bool
) -> tuple[Path, list[tuple[str, str, str]]]:
    """Check the folder may be indexed (absolute, exists, inside INDEX_ROOTS), list it."""
    root = Path(path).expanduser()
    if not root.is_absolute():
        raise BadRequest("give the folder as an absolute path on the server")
    root = Path(os.path.realpath(root))
    allowed = [Path(os.path.realpath(r)) for r in index_roots]
    if allowed and not _inside(root, allowed):
        raise Forbidden("this folder is outside the folders the server may index (INDEX_ROOTS)")
    if not root.is_dir():
        raise NotFound("no such folder on the server")
    return root, _walk(root, extensions, recursive)


@router.post("/folder", response_model=BatchQueued, status_code=202)
async def index_folder(state: State, body: FolderIndexRequest) -> BatchQueued:
    collection = validate_collection(body.collection)
    extensions = _normalise_extensions(body.extensions)
    root, items = await asyncio.to_thread(
        _list_folder, body.path, state.settings.index_roots, extensions, body.recursive
    )
    if not items:
        raise BadRequest(f"no files with extensions {', '.join(extensions)} in that folder")
    batch_id, count = await state.queue.create_batch(collection, items, root=str(root))
    return BatchQueued(batch_id=batch_id, queued=count, collection=collection)


def _store_upload(upload_dir: Path, data: bytes, filename: str, max_pixels: int) -> str:
    """Check ``data`` is an image we accept, then store it content-addressed."""
    decode_image(data, max_pixels=max_pixels)  # raises a 4xx error for bad input
    sha = content_hash(data)
    ext = os.path.splitext(filename)[1].lower()
    if ext not in DEFAULT_EXTENSIONS:
        ext = ".img"
    target = upload_dir / sha[:2] / f"{sha}{ext}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return str(target)


@router.post("/upload", response_model=BatchQueued, status_code=202)
async def index_upload(
    state: State,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    collection: Annotated[str, Form()] = DEFAULT_COLLECTION,
) -> BatchQueued:
    validate_collection(collection)
    if not files:
        raise EmptyInput("no file uploaded")
    if len(files) > MAX_UPLOAD_FILES:
        raise BadRequest(f"at most {MAX_UPLOAD_FILES} files per request")
    upload_dir = state.settings.uploads_path()
    loop = asyncio.get_running_loop()
    items: list[tuple[str, str, str]] = []
    for upload in files:
        data = await upload.read()
        name = os.path.basename(upload.filename or "upload")
        if not data:
            raise EmptyInput(f"{name}: the file is empty")
        try:
            path = await loop.run_in_executor(
                state.pool, _store_upload, upload_dir, data, name, state.settings.max_image_pixels
            )
        except Exception as exc:
            if hasattr(exc, "message"):
                exc.message = f"{name}: {exc.message}"
            raise
        items.append((path, "upload", name))
    batch_id, count = await state.queue.create_batch(collection, items)
    return BatchQueued(batch_id=batch_id, queued=count, collection=collection)


@router.post("/url", response_model=BatchQueued, status_code=202)
async def index_url(state: State, body: UrlIndexRequest) -> BatchQueued:
    collection = validate_collection(body.collection)
    data = await state.fetcher.fetch(body.url)
    name = body.url
    loop = asyncio.get_running_loop()
    path = await loop.run_in_executor(
        state.pool,
        _store_upload,
        state.settings.uploads_path(),
        data,
        body.url.split("?")[0],
        state.settings.max_image_pixels,
    )
    batch_id, count = await state.queue.create_batch(collection, [(path, "url", name)])
    return BatchQueued(batch_id=batch_id, queued=count, collection=collection)


@router.get("/batches/{batch_id}", response_model=BatchStatus)
async def batch_status(state: State, batch_id: str) -> BatchStatus:
    if not batch_id.isalnum() or len(batch_id) > 64:
        raise NotFound("no such batch")
    status = await state.queue.batch_status(batch_id)
    if status is None:
        raise NotFound("no such batch")
    return status


@router.get("/dead-letters")
async def dead_letters(state: State, count: int = 100) -> dict[str, Any]:
    count = max(1, min(count, 1000))
    return {"dead_letters": await state.queue.dead_letters(count)}
