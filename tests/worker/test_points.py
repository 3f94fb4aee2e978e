"""The worker's payload builder writes what the API reads (``imgsearch_common.payloads``)."""

from __future__ import annotations

import numpy as np

from imgsearch_common.jobs import Job
from imgsearch_common.payloads import PARENT_ID, ImagePayload
from imgsearch_common.vectorstore.writes import records
from imgsearch_worker.pipeline import PreparedImage
from imgsearch_worker.points import image_points

IMAGE = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def test_the_worker_writes_what_the_api_reads() -> None:
    prepared = PreparedImage(
        image_id=IMAGE,
        sha256="ab" * 32,
        file_size=1234,
        width=640,
        height=480,
        boxes=[(0, 0, 240, 240), (400, 240, 640, 480)],
        pixels=np.zeros((3, 224, 224, 3), dtype=np.uint8),
    )
    job = Job("j1", "b1", "cats", "/data/uploads/ab/abab.jpg", source="upload", name="cat.jpg")
    vectors = np.eye(3, 8, dtype=np.float32)
    request = image_points(job, prepared, vectors)
    full, windows = records(request)
    [image] = full
    assert image.id == IMAGE
    read = ImagePayload.read(image.payload)
    assert read is not None
    assert (read.filename, read.original_path, read.file_path) == (
        "cat.jpg",
        "cat.jpg",  # an upload is known by the name the user gave
        "/data/uploads/ab/abab.jpg",
    )
    assert (read.collection, read.source, read.windows, read.sha256) == (
        "cats",
        "upload",
        2,
        "ab" * 32,
    )
    assert [w.payload for w in windows] == [
        {PARENT_ID: IMAGE, "box": [0, 0, 240, 240]},
        {PARENT_ID: IMAGE, "box": [400, 240, 640, 480]},
    ]
    assert len({w.id for w in windows}) == 2 and IMAGE not in {w.id for w in windows}
    # The same job again writes the same points (a replay changes nothing).
    again_full, again_windows = records(image_points(job, prepared, vectors))
    assert [w.id for w in again_windows] == [w.id for w in windows]
    assert again_full[0].id == IMAGE
