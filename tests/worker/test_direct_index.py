"""imgsearch_worker.direct_index: a worker given QDRANT_URL writes straight into the
Qdrant server; without it, it hands its points to the search API as before."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from imgsearch_common.errors import InvalidCollection, UpstreamUnavailable
from imgsearch_common.payloads import (
    ImagePayload,
    ImagePointIn,
    UpsertRequest,
    WindowPayload,
    WindowPointIn,
)
from imgsearch_common.vectorstore import QdrantServerVectorStore
from imgsearch_worker.direct_index import DirectIndexWriter, open_index_writer
from imgsearch_worker.index_client import IndexClient
from imgsearch_worker.settings import WorkerSettings
from tests.support.fake_qdrant import FakeQdrant

IMAGE = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
WINDOWS = ["6fa459ea-ee8a-3ca4-894e-db77e160355e", "886313e1-3b8a-5372-9b90-0c9aee199e5d"]


def target(qdrant_url: str | None = None) -> WorkerSettings:
    """A worker's settings, with what decides where it writes."""
    return WorkerSettings(api_internal_url="http://search-api:8000", qdrant_url=qdrant_url)


def image_payload(filename: str) -> ImagePayload:
    return ImagePayload(
        filename=filename,
        original_path=f"/photos/{filename}",
        file_size=1,
        indexed_at=0.0,
        width=4,
        height=4,
        collection="cats",
    )


def points(rng: np.random.Generator, collection: str = "cats") -> UpsertRequest:
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    full = [ImagePointIn(id=IMAGE, vector=vectors[0].tolist(), payload=image_payload("a.jpg"))]
    windows = [
        WindowPointIn(
            id=w, vector=v.tolist(), payload=WindowPayload(parent_id=IMAGE, box=(0, 0, 4, 4))
        )
        for w, v in zip(WINDOWS, vectors[1:], strict=True)
    ]
    return UpsertRequest(collection=collection, full=full, windows=windows)


async def test_points_land_in_the_store_and_are_found() -> None:
    rng = np.random.default_rng(0)
    store = QdrantServerVectorStore(":memory:")
    writer = DirectIndexWriter(store)
    request = points(rng)
    try:
        await writer.upsert(request)
        assert await store.count("cats", "full") == 1
        assert await store.count("cats", "window") == 2
        [[hit]] = await store.search("cats", "full", [request.full[0].vector], limit=1)
        assert hit.id == IMAGE and hit.payload["filename"] == "a.jpg"
    finally:
        await writer.aclose()


async def test_windows_are_written_before_the_full_image() -> None:
    fake = FakeQdrant()
    writer = open_index_writer(
        target(qdrant_url="https://qdrant:6333"), None, transport=httpx.MockTransport(fake)
    )
    try:
        await writer.upsert(points(np.random.default_rng(1)))
    finally:
        await writer.aclose()
    writes = [
        r.url.path for r in fake.requests if r.url.path.endswith("/points") and r.method == "PUT"
    ]
    assert writes == ["/collections/imgsearch_cats__window/points",
                      "/collections/imgsearch_cats__full/points"]  # fmt: skip


async def test_errors_keep_their_meaning_for_the_worker_loop() -> None:
    writer = open_index_writer(
        target(qdrant_url="https://qdrant:6333"),
        None,
        transport=httpx.MockTransport(FakeQdrant(fail_with=503)),
    )
    try:
        with pytest.raises(UpstreamUnavailable) as transient:
            await writer.upsert(points(np.random.default_rng(2)))
        assert not transient.value.permanent  # retried later
        with pytest.raises(InvalidCollection) as bad:
            await writer.upsert(points(np.random.default_rng(2), collection="../etc"))
        assert bad.value.permanent  # dead-lettered
    finally:
        await writer.aclose()


async def test_without_a_qdrant_url_the_worker_hands_off_to_the_api() -> None:
    writer = open_index_writer(target(), "token")
    try:
        assert isinstance(writer, IndexClient)
    finally:
        await writer.aclose()


def test_an_in_process_store_cannot_be_shared() -> None:
    with pytest.raises(ValueError, match="memory"):
        open_index_writer(target(qdrant_url=":memory:"), None)
