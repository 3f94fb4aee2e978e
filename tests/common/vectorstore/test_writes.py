"""The write order and what happens to an image's files (``vectorstore.writes``), on both
back-ends (``store`` fixture): merged records, attach without encoding, detach, a changed
file leaving its old image, and concurrent writers of one collection."""

from __future__ import annotations

import asyncio

import numpy as np

from imgsearch_common.ids import image_id, window_id
from imgsearch_common.payloads import (
    FileRecord,
    ImagePayload,
    ImagePointIn,
    UpsertRequest,
    WindowPayload,
    WindowPointIn,
)
from imgsearch_common.vectorstore import VectorStore
from imgsearch_common.vectorstore.writes import (
    DetachResult,
    attach_file,
    detach_file,
    write_images,
)

from .helpers import unit_vectors

DIM = 8
C = "lib"


def record(path: str, mtime_ns: int | None = 1, size: int = 10) -> FileRecord:
    return FileRecord(
        stored_path=path,
        original_path=path,
        name=path.rsplit("/", 1)[-1],
        size=size,
        mtime_ns=mtime_ns,
    )


def image(
    content: str, path: str, rng: np.random.Generator, *, mtime_ns: int = 1, windows: int = 2
) -> UpsertRequest:
    """The hand-off of the file ``path`` holding ``content`` (its id derives from it)."""
    iid = image_id(content)
    vectors = unit_vectors(rng, 1 + windows, DIM)
    payload = ImagePayload(
        filename="x",
        original_path=path,
        file_size=10,
        indexed_at=0.0,
        width=100,
        height=100,
        collection=C,
        sha256=content,
        windows=windows,
    ).with_files([record(path, mtime_ns)])
    boxes = [(i, i, i + 50, i + 50) for i in range(windows)]
    return UpsertRequest(
        collection=C,
        full=[ImagePointIn(id=iid, vector=vectors[0].tolist(), payload=payload)],
        windows=[
            WindowPointIn(
                id=window_id(iid, box),
                vector=v.tolist(),
                payload=WindowPayload(parent_id=iid, box=box),
            )
            for box, v in zip(boxes, vectors[1:], strict=True)
        ],
    )


async def files_of(store: VectorStore, content: str) -> list[str] | None:
    """The stored paths of the image of ``content``; None when it is not indexed."""
    found = await store.retrieve(C, "full", [image_id(content)])
    if not found:
        return None
    payload = ImagePayload.read(found[0].payload)
    assert payload is not None
    assert payload.paths == [r.stored_path for r in payload.file_records()]
    assert found[0].payload["paths"] == payload.paths  # the stored, indexed key
    return payload.paths


async def test_a_second_path_of_one_content_is_one_image_with_both(
    store: VectorStore, rng: np.random.Generator
) -> None:
    assert await write_images(store, image("X", "/p/a.jpg", rng)) == (1, 2)
    assert await write_images(store, image("X", "/p/copy/a.jpg", rng)) == (1, 2)
    assert await files_of(store, "X") == ["/p/a.jpg", "/p/copy/a.jpg"]
    assert (await store.count(C, "full"), await store.count(C, "window")) == (1, 2)
    [hit] = await store.retrieve(C, "full", [image_id("X")])
    payload = ImagePayload.read(hit.payload)
    assert payload is not None and payload.original_path == "/p/a.jpg"  # the first's
    assert payload.metadata().paths == ["/p/a.jpg", "/p/copy/a.jpg"]
    # The same path again (touched): its record is replaced where it stood.
    await write_images(store, image("X", "/p/a.jpg", rng, mtime_ns=2))
    [hit] = await store.retrieve(C, "full", [image_id("X")])
    payload = ImagePayload.read(hit.payload)
    assert payload is not None
    assert [(r.stored_path, r.mtime_ns) for r in payload.file_records()] == [
        ("/p/a.jpg", 2),
        ("/p/copy/a.jpg", 1),
    ]


async def test_a_changed_file_leaves_its_old_image(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await write_images(store, image("OLD", "/p/a.jpg", rng, windows=3))
    await write_images(store, image("SHARED", "/p/b.jpg", rng))
    await write_images(store, image("SHARED", "/p/c.jpg", rng))
    # a.jpg now holds other content: its old image, holding no other file, goes (windows too).
    await write_images(store, image("NEW", "/p/a.jpg", rng))
    assert await files_of(store, "OLD") is None
    assert await files_of(store, "NEW") == ["/p/a.jpg"]
    old_windows = await store.find(C, "window", "parent_id", image_id("OLD"), 10)
    assert old_windows == []
    # b.jpg changed too: its old image keeps c.jpg.
    await write_images(store, image("NEWER", "/p/b.jpg", rng))
    assert await files_of(store, "SHARED") == ["/p/c.jpg"]
    assert await files_of(store, "NEWER") == ["/p/b.jpg"]
    assert await store.count(C, "full") == 3
    assert await store.count(C, "window") == 6


async def test_attach_adds_a_file_without_encoding(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await write_images(store, image("X", "/p/a.jpg", rng))
    await write_images(store, image("Y", "/p/b.jpg", rng))
    [before] = await store.retrieve(C, "full", [image_id("X")])
    assert await attach_file(store, C, image_id("X"), record("/p/z.jpg")) is True
    assert await files_of(store, "X") == ["/p/a.jpg", "/p/z.jpg"]
    # No such image (or collection): nothing written.
    assert await attach_file(store, C, image_id("NONE"), record("/p/n.jpg")) is False
    assert await attach_file(store, "nothing-here", image_id("X"), record("/p/n.jpg")) is False
    assert await store.count(C, "full") == 2
    # The vector is kept: the same nearest neighbour, score one.
    [hit] = await store.retrieve(C, "full", [image_id("X")])
    assert hit.payload["sha256"] == before.payload["sha256"] == "X"
    # Attaching b.jpg's path to X (b.jpg now holds X's content) takes it out of Y: Y goes.
    assert await attach_file(store, C, image_id("X"), record("/p/b.jpg")) is True
    assert await files_of(store, "X") == ["/p/a.jpg", "/p/z.jpg", "/p/b.jpg"]
    assert await files_of(store, "Y") is None
    assert await store.find(C, "window", "parent_id", image_id("Y"), 10) == []


async def test_detach_keeps_an_image_while_another_file_holds_it(
    store: VectorStore, rng: np.random.Generator
) -> None:
    await write_images(store, image("X", "/p/a.jpg", rng))
    await write_images(store, image("X", "/p/b.jpg", rng))
    kept = await detach_file(store, C, "/p/a.jpg")
    assert kept == DetachResult(removed_from=[image_id("X")], deleted_images=[])
    assert await files_of(store, "X") == ["/p/b.jpg"]
    [hit] = await store.retrieve(C, "full", [image_id("X")])
    assert hit.payload["original_path"] == hit.payload["stored_path"] == "/p/b.jpg"
    assert await detach_file(store, C, "/p/a.jpg") == DetachResult()  # nothing lists it now
    gone = await detach_file(store, C, "/p/b.jpg")
    assert gone == DetachResult(removed_from=[image_id("X")], deleted_images=[image_id("X")])
    assert (await store.count(C, "full"), await store.count(C, "window")) == (0, 0)
    assert await detach_file(store, "never-made", "/p/b.jpg") == DetachResult()


async def test_a_payload_from_before_file_records_gets_one(
    store: VectorStore, rng: np.random.Generator
) -> None:
    request = image("X", "/p/a.jpg", rng)
    old = request.full[0].payload.model_copy(update={"files": None, "paths": []})
    legacy = request.model_copy(
        update={"full": [request.full[0].model_copy(update={"payload": old})]}
    )
    await write_images(store, legacy)
    assert await files_of(store, "X") == ["/p/a.jpg"]


async def test_concurrent_writers_of_one_content_keep_every_path(
    store: VectorStore, rng: np.random.Generator
) -> None:
    # Each write is a read-modify-write of the payload: unserialised, all but one path
    # would be lost.
    paths = [f"/p/copy{i}.jpg" for i in range(8)]
    requests = [image("X", p, rng) for p in paths]
    await asyncio.gather(*(write_images(store, r) for r in requests))
    assert sorted(await files_of(store, "X") or []) == paths
    attach = [attach_file(store, C, image_id("X"), record(f"/p/att{i}.jpg")) for i in range(8)]
    assert await asyncio.gather(*attach) == [True] * 8
    assert len(await files_of(store, "X") or []) == 16
