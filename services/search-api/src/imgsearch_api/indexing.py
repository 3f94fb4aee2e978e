"""Queuing images for indexing: a folder on the server, uploaded files, or a URL.

The rules live here, behind thin routes (``routes/indexing.py``):

- a folder must be absolute, exist, and lie inside ``INDEX_ROOTS`` when that is set; it is
  queued as one job per file with one of the requested extensions (matched without case);
- uploads and fetched URLs are checked (decoded) before anything is queued, so a bad file
  gets its 4xx at once; they are stored content-addressed under ``UPLOAD_DIR``, where the
  workers read them and from where the image is served back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from imgsearch_common.errors import BadRequest, EmptyInput, Forbidden, ImgSearchError, NotFound
from imgsearch_common.ids import content_hash, validate_collection
from imgsearch_common.imaging import DEFAULT_EXTENSIONS, decode_image, dotted_extensions
from imgsearch_common.jobs import JobQueue
from imgsearch_common.schemas import BatchQueued, FolderIndexRequest, UrlIndexRequest

from .url_fetch import SafeFetcher

#: Most files in one upload request.
MAX_UPLOAD_FILES = 100
#: Job items: ``(path the workers read, source, name the user knows it by)``.
JobItem = tuple[str, str, str]


def folder_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    """The requested extensions, lower case with a dot; the default list when none given."""
    if not extensions:
        return DEFAULT_EXTENSIONS
    out = tuple(e.lower() for e in dotted_extensions(extensions))
    if not out:
        raise BadRequest("no usable file extension given")
    return out


def list_folder(root: Path, extensions: tuple[str, ...], recursive: bool) -> list[JobItem]:
    """Image files under ``root``, sorted, as job items named by their path under it."""
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


def allowed_folder(path: str, index_roots: Sequence[Path]) -> Path:
    """The folder a request names, checked: absolute, inside ``index_roots`` (when any;
    links resolved on both sides), an existing directory."""
    root = Path(path).expanduser()
    if not root.is_absolute():
        raise BadRequest("give the folder as an absolute path on the server")
    root = Path(os.path.realpath(root))
    allowed = [Path(os.path.realpath(r)) for r in index_roots]
    if allowed and not any(root == r or root.is_relative_to(r) for r in allowed):
        raise Forbidden("this folder is outside the folders the server may index (INDEX_ROOTS)")
    if not root.is_dir():
        raise NotFound("no such folder on the server")
    return root


def store_upload(upload_dir: Path, data: bytes, filename: str, max_pixels: int) -> str:
    """Check ``data`` is an image we accept, then store it content-addressed; its path."""
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


@dataclass(frozen=True)
class IndexingService:
    queue: JobQueue
    fetcher: SafeFetcher
    #: Decoding checks and file writes run here, off the event loop.
    pool: Executor
    upload_dir: Path
    index_roots: tuple[Path, ...]
    max_pixels: int

    async def queue_folder(self, request: FolderIndexRequest) -> BatchQueued:
        collection = validate_collection(request.collection)
        extensions = folder_extensions(request.extensions)

        def listed() -> tuple[Path, list[JobItem]]:
            root = allowed_folder(request.path, self.index_roots)
            return root, list_folder(root, extensions, request.recursive)

        root, items = await asyncio.to_thread(listed)
        if not items:
            raise BadRequest(f"no files with extensions {', '.join(extensions)} in that folder")
        batch_id, count = await self.queue.create_batch(collection, items, root=str(root))
        return BatchQueued(batch_id=batch_id, queued=count, collection=collection)

    async def queue_uploads(
        self, collection: str, files: Sequence[tuple[str, bytes]]
    ) -> BatchQueued:
        """``files``: ``(file name, content)`` of each uploaded file."""
        validate_collection(collection)
        if not files:
            raise EmptyInput("no file uploaded")
        if len(files) > MAX_UPLOAD_FILES:
            raise BadRequest(f"at most {MAX_UPLOAD_FILES} files per request")
        items: list[JobItem] = []
        for name, data in files:
            if not data:
                raise EmptyInput(f"{name}: the file is empty")
            try:
                path = await self._store(data, name)
            except ImgSearchError as exc:
                exc.message = f"{name}: {exc.message}"
                raise
            items.append((path, "upload", name))
        batch_id, count = await self.queue.create_batch(collection, items)
        return BatchQueued(batch_id=batch_id, queued=count, collection=collection)

    async def queue_url(self, request: UrlIndexRequest) -> BatchQueued:
        collection = validate_collection(request.collection)
        data = await self.fetcher.fetch(request.url)
        path = await self._store(data, request.url.split("?")[0])
        batch_id, count = await self.queue.create_batch(collection, [(path, "url", request.url)])
        return BatchQueued(batch_id=batch_id, queued=count, collection=collection)

    async def _store(self, data: bytes, filename: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, store_upload, self.upload_dir, data, filename, self.max_pixels
        )
