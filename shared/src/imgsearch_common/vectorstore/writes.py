"""Writing indexed images into a store: the one place that decides the order of writes.

Windows are written before the full-image point, so an image that can be found by its
full vector already has its windows. Every writer uses this: the search API's internal
hand-off, a worker writing straight into a Qdrant server, and the benchmarks.
"""

from __future__ import annotations

from ..ids import validate_collection
from ..payloads import UpsertRequest
from .base import PointRecord, VectorStore


def records(request: UpsertRequest) -> tuple[list[PointRecord], list[PointRecord]]:
    """The hand-off's full-image and window points as store records (JSON payloads)."""
    full = [
        PointRecord(p.id, p.vector, p.payload.model_dump(mode="json", exclude_none=True))
        for p in request.full
    ]
    windows = [
        PointRecord(p.id, p.vector, p.payload.model_dump(mode="json", exclude_none=True))
        for p in request.windows
    ]
    return full, windows


async def write_images(store: VectorStore, request: UpsertRequest) -> tuple[int, int]:
    """Store the points of ``request``, windows first; ``(full points, window points)``."""
    collection = validate_collection(request.collection)
    full, windows = records(request)
    if windows:
        await store.upsert(collection, "window", windows)
    if full:
        await store.upsert(collection, "full", full)
    return len(full), len(windows)
