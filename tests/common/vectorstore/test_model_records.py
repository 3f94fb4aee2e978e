"""The write order's model check (``writes.write_images`` with ``catalog``), on both
back-ends: the first write into a physical collection records its model, a write by
another model is refused before anything is written, a reindex's revision has its own."""

from __future__ import annotations

import pytest

from imgsearch_common.catalog import ModelMismatch, ModelRecord, collection_model
from imgsearch_common.payloads import ImagePayload, ImagePointIn, UpsertRequest
from imgsearch_common.vectorstore import VectorStore
from imgsearch_common.vectorstore.writes import write_images

DIM = 8
A = ModelRecord(model="ViT-B-32", pretrained="random", image_size=224, dim=DIM, fingerprint="a")
B = ModelRecord(model="ViT-L-14", pretrained="openai", image_size=224, dim=DIM, fingerprint="b")


def _request(collection: str, n: int, model: ModelRecord | None) -> UpsertRequest:
    vector = [1.0] + [0.0] * (DIM - 1)
    payload = ImagePayload(
        filename=f"{n}.jpg",
        original_path=f"/photos/{n}.jpg",
        file_size=1,
        indexed_at=0.0,
        width=10,
        height=10,
        collection=collection,
    )
    point = ImagePointIn(id=f"00000000-0000-0000-0000-{n:012d}", vector=vector, payload=payload)
    return UpsertRequest(collection=collection, full=[point], model=model)


async def test_the_first_write_records_its_model_and_another_model_is_refused(
    store: VectorStore,
) -> None:
    assert await collection_model(store, "m") is None
    await write_images(store, _request("m", 1, A))
    assert await collection_model(store, "m") == A
    await write_images(store, _request("m", 2, A))
    with pytest.raises(ModelMismatch) as refused:
        await write_images(store, _request("m", 3, B))
    assert refused.value.status_code == 409
    assert "ViT-B-32" in refused.value.message and "ViT-L-14" in refused.value.message
    assert await store.count("m", "full") == 2  # nothing of the refused write
    await write_images(store, _request("m", 4, None))  # a writer from before fingerprints
    assert await store.count("m", "full") == 3
    assert await collection_model(store, "m") == A


async def test_a_revision_records_its_own_model_and_the_switch_carries_it(
    store: VectorStore,
) -> None:
    await write_images(store, _request("n", 1, A))
    await write_images(store, _request("n.r1", 1, B))  # a reindex into a new model
    assert await collection_model(store, "n") == A
    await store.switch_alias("n", "n.r1")
    assert await collection_model(store, "n") == B
    await write_images(store, _request("n", 2, B))
    with pytest.raises(ModelMismatch):
        await write_images(store, _request("n", 3, A))


async def test_a_legacy_collection_is_adopted_by_its_next_model(store: VectorStore) -> None:
    await write_images(store, _request("old", 1, None))
    assert await collection_model(store, "old") is None
    await write_images(store, _request("old", 2, B))
    assert await collection_model(store, "old") == B
