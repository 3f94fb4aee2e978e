"""Writing indexed images into a store: the one place that decides the order of writes and
what happens to an image's files. Every writer uses it: the search API's internal hand-off
and its folder sync, a worker writing straight into a Qdrant server, and the benchmarks.

- Windows are written before the full-image point, so an image that can be found by its
  full vector already has its windows.
- An image is one content holding one or more files (``ImagePayload.files``). Writing an
  image whose point exists merges the file records (a record of the same ``stored_path``
  replaces the old one) instead of replacing the payload; :func:`attach_file` adds a file
  to an indexed image without any encoding; :func:`detach_file` takes a file out of every
  image that lists it, and deletes an image (its windows too) that is left with none.
- Writing or attaching a file first detaches its ``stored_path`` from every *other* image:
  a file whose content changed leaves its old image (deleted if it held no other file).
- Vectors are written only into a collection their model filled (``catalog``): the first
  write records ``UpsertRequest.model``, a write by another model is refused (409
  ``model_mismatch``) before anything is written.
- The writes of one collection are serialised, one at a time per (store, collection): each
  is a read-modify-write of payloads. That holds in one process, the index owner with Qdrant
  Edge. With a Qdrant server several workers write at once: two copies of one content
  written at the same instant can lose one path, which the next queue of the folder repairs.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

from ..catalog import claim_collection
from ..ids import validate_physical
from ..payloads import PATHS, FileRecord, ImagePayload, ImagePointIn, UpsertRequest, merge_records
from .base import PointRecord, VectorStore

#: Most images one file can be found in (more is a broken index; the rest stay listed).
MAX_HOLDERS = 1000

_LOCKS: weakref.WeakKeyDictionary[VectorStore, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def collection_lock(store: VectorStore, collection: str) -> asyncio.Lock:
    """The lock that serialises the writes of ``collection`` in ``store`` (this process)."""
    locks = _LOCKS.setdefault(store, {})
    return locks.setdefault(collection, asyncio.Lock())


@dataclass(frozen=True)
class DetachResult:
    #: The images that listed the file (it is no longer one of their files).
    removed_from: list[str] = field(default_factory=list)
    #: Those of them left with no file, deleted with their windows.
    deleted_images: list[str] = field(default_factory=list)


def records(request: UpsertRequest) -> tuple[list[PointRecord], list[PointRecord]]:
    """The hand-off's full-image and window points as store records (JSON payloads)."""
    full = [PointRecord(p.id, p.vector, stored(p.payload)) for p in request.full]
    windows = [
        PointRecord(p.id, p.vector, p.payload.model_dump(mode="json", exclude_none=True))
        for p in request.windows
    ]
    return full, windows


def stored(payload: ImagePayload) -> dict[str, Any]:
    """An image payload as the store keeps it (JSON, unset fields left out)."""
    return payload.model_dump(mode="json", exclude_none=True)


async def write_images(store: VectorStore, request: UpsertRequest) -> tuple[int, int]:
    """Store the points of ``request``, windows first; ``(full points, window points)``.
    An image indexed already keeps its other files (their records merged)."""
    collection = validate_physical(request.collection)
    async with collection_lock(store, collection):
        if request.full or request.windows:
            await claim_collection(store, collection, request.model)
        merged = await _merged(store, collection, request.full)
        full, windows = records(request.model_copy(update={"full": merged}))
        if windows:
            await store.upsert(collection, "window", windows)
        if full:
            await store.upsert(collection, "full", full)
    return len(full), len(windows)


async def attach_file(
    store: VectorStore, collection: str, image_id: str, record: FileRecord
) -> bool:
    """Add ``record`` to the indexed image ``image_id`` (replacing its record of the same
    ``stored_path``), with no encoding; False when there is no such image."""
    collection = validate_physical(collection)
    async with collection_lock(store, collection):
        found = await store.retrieve(collection, "full", [image_id])
        payload = ImagePayload.read(found[0].payload) if found else None
        if payload is None:
            return False
        await _detach(store, collection, record.stored_path, keep=found[0].id)
        files = merge_records(payload.file_records(), [record])
        return await store.set_payload(
            collection, "full", found[0].id, stored(payload.with_files(files))
        )


async def detach_file(store: VectorStore, collection: str, stored_path: str) -> DetachResult:
    """Take the file ``stored_path`` out of every image of ``collection`` that lists it;
    an image left with no file is deleted, its windows too."""
    collection = validate_physical(collection)
    async with collection_lock(store, collection):
        return await _detach(store, collection, stored_path)


async def _merged(
    store: VectorStore, collection: str, points: list[ImagePointIn]
) -> list[ImagePointIn]:
    """``points`` with the file records their images hold already merged in, after their
    files left every other image (the lock held)."""
    if not points:
        return []
    existing = {
        hit.id.lower(): ImagePayload.read(hit.payload)
        for hit in await store.retrieve(collection, "full", [p.id for p in points])
    }
    out = []
    for point in points:
        new = point.payload.file_records()
        for record in new:
            await _detach(store, collection, record.stored_path, keep=point.id)
        old = existing.get(point.id.lower())
        files = merge_records(old.file_records() if old is not None else [], new)
        out.append(point.model_copy(update={"payload": point.payload.with_files(files)}))
    return out


async def _detach(
    store: VectorStore, collection: str, stored_path: str, *, keep: str | None = None
) -> DetachResult:
    """:func:`detach_file` with the lock held, sparing the image ``keep``."""
    result = DetachResult()
    holders = await store.find(collection, "full", PATHS, stored_path, MAX_HOLDERS)
    for hit in holders:
        if keep is not None and hit.id.lower() == keep.lower():
            continue
        payload = ImagePayload.read(hit.payload)
        if payload is None:
            continue
        files = payload.file_records()
        left = [r for r in files if r.stored_path != stored_path]
        if len(left) == len(files):
            continue
        result.removed_from.append(hit.id)
        if left:
            await store.set_payload(collection, "full", hit.id, stored(payload.with_files(left)))
        else:
            await store.delete_image(collection, hit.id)
            result.deleted_images.append(hit.id)
    return result
