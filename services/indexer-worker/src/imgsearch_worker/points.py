"""One indexed image as points: the payload builder of the worker (and the benchmarks).

The full-image point carries the image's :class:`~imgsearch_common.payloads.ImagePayload`,
each window point its :class:`~imgsearch_common.payloads.WindowPayload`; ids are
deterministic (``imgsearch_common.ids``), so a replayed job writes the same points.
"""

from __future__ import annotations

import os
import time

import numpy as np

from imgsearch_common.ids import window_id
from imgsearch_common.jobs import Job
from imgsearch_common.payloads import (
    FileRecord,
    ImagePayload,
    ImagePointIn,
    UpsertRequest,
    WindowPayload,
    WindowPointIn,
)

from .pipeline import PreparedImage


def file_record(job: Job, size: int, mtime_ns: int | None) -> FileRecord:
    """What the index records of the file of ``job`` (``size`` and ``mtime_ns`` as the
    worker read it; uploads and URLs keep no time: their stored copy never changes)."""
    filename = os.path.basename(job.name) or os.path.basename(job.path)
    return FileRecord(
        stored_path=job.path,
        # A folder file is known by its path; an upload or a URL by what the user gave.
        original_path=job.path if job.source == "folder" else job.name or job.path,
        # A folder file by its path under the folder, an upload by its file name; a URL
        # (whose name is the whole URL) by its file name.
        name=job.name if job.source != "url" and job.name else filename,
        source=job.source,
        size=size,
        mtime_ns=mtime_ns if job.source == "folder" else None,
    )


def image_payload(
    job: Job, prepared: PreparedImage, indexed_at: float | None = None
) -> ImagePayload:
    """What the index records about the image of ``job``."""
    record = file_record(job, prepared.file_size, prepared.mtime_ns)
    payload = ImagePayload(
        filename=record.filename,
        original_path=record.original_path,
        file_size=prepared.file_size,
        indexed_at=time.time() if indexed_at is None else indexed_at,
        width=prepared.width,
        height=prepared.height,
        collection=job.collection,
        sha256=prepared.sha256,
        windows=len(prepared.boxes),
        signature=prepared.signature,
    )
    return payload.with_files([record])


def image_points(job: Job, prepared: PreparedImage, vectors: np.ndarray) -> UpsertRequest:
    """The hand-off of one image: ``vectors`` are the full view's, then each window's."""
    rows = vectors.tolist()
    full = ImagePointIn(id=prepared.image_id, vector=rows[0], payload=image_payload(job, prepared))
    windows = [
        WindowPointIn(
            id=window_id(prepared.image_id, box),
            vector=row,
            payload=WindowPayload(parent_id=prepared.image_id, box=box),
        )
        for box, row in zip(prepared.boxes, rows[1:], strict=True)
    ]
    return UpsertRequest(collection=job.collection, full=[full], windows=windows)
