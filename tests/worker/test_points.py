"""The worker's payload builder writes what the API reads (``imgsearch_common.payloads``)."""

from __future__ import annotations

import numpy as np

from imgsearch_common.jobs import Job
from imgsearch_common.payloads import PARENT_ID, FileRecord, ImagePayload
from imgsearch_common.vectorstore.writes import records
from imgsearch_worker.pipeline import PreparedImage
from imgsearch_worker.points import image_payload, image_points

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


def test_the_name_an_image_is_served_under() -> None:
    """``GET /images/{name}`` finds an image by ``name``: a folder file's path under the
    folder, an upload's file name, a URL's file name (not the whole URL)."""
    prepared = PreparedImage(
        image_id=IMAGE,
        sha256="ab" * 32,
        file_size=1,
        width=1,
        height=1,
        boxes=[],
        pixels=np.zeros((1, 224, 224, 3), dtype=np.uint8),
    )
    cases = [
        (
            Job("j", "b", "c", "/photos/2024/summer/cat.jpg", "folder", "2024/summer/cat.jpg"),
            "2024/summer/cat.jpg",
            "cat.jpg",
        ),
        (
            Job("j", "b", "c", "/data/uploads/ab/abab.png", "upload", "dog.png"),
            "dog.png",
            "dog.png",
        ),
        (
            Job("j", "b", "c", "/data/uploads/cd/cdcd.jpg", "url", "https://x.example/p/a.jpg"),
            "a.jpg",
            "a.jpg",
        ),
        # A job from before names were given: its file's name.
        (Job("j", "b", "c", "/photos/old.jpg", "folder", ""), "old.jpg", "old.jpg"),
    ]
    for job, name, filename in cases:
        payload = image_payload(job, prepared)
        assert (payload.name, payload.filename, payload.indexed_name) == (name, filename, name)


def test_the_file_record_of_a_folder_file() -> None:
    """One record per file: what the next queue of its folder compares with the disk."""
    prepared = PreparedImage(
        image_id=IMAGE,
        sha256="cd" * 32,
        file_size=4321,
        width=8,
        height=6,
        boxes=[],
        pixels=np.zeros((1, 224, 224, 3), dtype=np.uint8),
        mtime_ns=1_700_000_000_123_456_789,
    )
    job = Job("j", "b", "c", "/photos/2024/cat.jpg", "folder", "2024/cat.jpg")
    payload = image_payload(job, prepared)
    assert payload.files == [
        FileRecord(
            stored_path="/photos/2024/cat.jpg",
            original_path="/photos/2024/cat.jpg",
            name="2024/cat.jpg",
            source="folder",
            size=4321,
            mtime_ns=1_700_000_000_123_456_789,
        )
    ]
    assert payload.paths == ["/photos/2024/cat.jpg"]
    assert payload.metadata().paths == ["/photos/2024/cat.jpg"]
    stored = ImagePayload.read(payload.model_dump(mode="json", exclude_none=True))
    assert stored == payload
    # An upload's copy never changes: no time; it is shown by the name the user gave.
    upload = image_payload(Job("j", "b", "c", "/data/u/cd.png", "upload", "dog.png"), prepared)
    assert upload.files is not None and upload.files[0].mtime_ns is None
    assert (upload.paths, upload.metadata().paths) == (["/data/u/cd.png"], ["dog.png"])
