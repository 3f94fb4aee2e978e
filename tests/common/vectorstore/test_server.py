"""Server-only behaviour: what goes on the wire, and how server errors come back.

No Qdrant server runs here, so the HTTP path is exercised against a fake Qdrant REST API at
the transport level (``httpx.MockTransport``): the real client, our real store.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from imgsearch_common.errors import UpstreamUnavailable
from imgsearch_common.settings import VectorStoreSettings
from imgsearch_common.vectorstore import QdrantServerVectorStore, open_vector_store
from tests.support.fake_qdrant import FakeQdrant

from .helpers import full_points, unit_vectors, window_points

URL = "https://qdrant.internal.example:6333"
KEY = "s3cret-api-key"


def server_store(fake: FakeQdrant, **kwargs: Any) -> QdrantServerVectorStore:
    return QdrantServerVectorStore(URL, KEY, transport=httpx.MockTransport(fake), **kwargs)


def test_create_kwargs_carry_the_cluster_settings_when_configured() -> None:
    store = QdrantServerVectorStore(
        ":memory:",
        shards=6,
        replication_factor=2,
        write_consistency=2,
        hnsw_m=32,
        hnsw_ef_construct=200,
    )

    kwargs = store.collection_create_kwargs(512)

    assert kwargs["shard_number"] == 6
    assert kwargs["replication_factor"] == 2
    assert kwargs["write_consistency_factor"] == 2
    assert (kwargs["hnsw_config"].m, kwargs["hnsw_config"].ef_construct) == (32, 200)
    assert kwargs["vectors_config"].size == 512
    assert kwargs["vectors_config"].distance == "Cosine"


def test_create_kwargs_leave_cluster_settings_to_the_server_by_default() -> None:
    kwargs = QdrantServerVectorStore(":memory:").collection_create_kwargs(8)

    assert not {"shard_number", "replication_factor", "write_consistency_factor"} & set(kwargs)


async def test_the_first_upsert_creates_the_collection_with_those_settings(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant()
    store = server_store(fake, shards=3, replication_factor=2, write_consistency=2, hnsw_m=24)
    try:
        images = full_points(rng, unit_vectors(rng, 4, 8))
        await store.upsert("cats", "full", images)
        await store.upsert(
            "cats", "window", window_points(rng, images[0].id, unit_vectors(rng, 2, 8))
        )
        await store.upsert("cats", "full", images)
    finally:
        await store.close()

    [created] = fake.bodies("PUT", "/collections/imgsearch_cats__full")
    assert created["vectors"] == {"size": 8, "distance": "Cosine"}
    assert (created["shard_number"], created["replication_factor"]) == (3, 2)
    assert created["write_consistency_factor"] == 2
    assert created["hnsw_config"] == {"m": 24, "ef_construct": 100}
    assert len(fake.bodies("PUT", "/collections/imgsearch_cats__window")) == 1
    [index] = fake.bodies("PUT", "/collections/imgsearch_cats__window/index")
    assert index == {"field_name": "parent_id", "field_schema": "keyword"}
    # The names GET /images/{name} finds images by (once per collection and process).
    assert fake.bodies("PUT", "/collections/imgsearch_cats__full/index") == [
        {"field_name": "name", "field_schema": "keyword"},
        {"field_name": "filename", "field_schema": "keyword"},
        {"field_name": "paths", "field_schema": "keyword"},
    ]
    assert fake.collections == {"imgsearch_cats__full": 8, "imgsearch_cats__window": 2}
    assert all(r.headers["api-key"] == KEY for r in fake.requests)


async def test_concurrent_first_upserts_create_the_collection_once(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        batches = [full_points(rng, unit_vectors(rng, 3, 8)) for _ in range(10)]
        await asyncio.gather(*(store.upsert("fresh", "full", b) for b in batches))
    finally:
        await store.close()

    assert len(fake.bodies("PUT", "/collections/imgsearch_fresh__full")) == 1
    assert fake.collections["imgsearch_fresh__full"] == 30


async def test_losing_the_creation_race_to_another_process_is_success(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant(create_conflicts=True)
    store = server_store(fake)
    try:
        await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        assert await store.count("c", "full") == 2
    finally:
        await store.close()


async def test_a_drop_deletes_both_kinds_and_the_next_upsert_creates_them_again(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        images = full_points(rng, unit_vectors(rng, 3, 8))
        await store.upsert("cats", "full", images)
        await store.upsert(
            "cats", "window", window_points(rng, images[0].id, unit_vectors(rng, 2, 8))
        )

        assert await store.drop_collection("cats") is True
        assert fake.collections == {}
        assert await store.drop_collection("cats") is False

        await store.upsert("cats", "full", images)  # this process knew it: asks again
    finally:
        await store.close()

    deleted = [r.url.path for r in fake.requests if r.method == "DELETE"]
    assert (
        deleted == ["/collections/imgsearch_cats__full", "/collections/imgsearch_cats__window"] * 2
    )
    assert len(fake.bodies("PUT", "/collections/imgsearch_cats__full")) == 2
    assert fake.collections == {"imgsearch_cats__full": 3}


async def test_an_upsert_after_another_process_dropped_the_collection_creates_it_again(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        await store.upsert("cats", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        del fake.collections["imgsearch_cats__full"]  # dropped by another process

        await store.upsert("cats", "full", full_points(rng, unit_vectors(rng, 4, 8)))
    finally:
        await store.close()

    assert fake.collections == {"imgsearch_cats__full": 4}


async def test_missing_collections_read_as_empty() -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        assert await store.search("c", "full", [[1.0, 0.0]], limit=3) == [[]]
        assert await store.count("c", "window") == 0
        assert await store.find("c", "full", "name", "a.jpg", limit=5) == []
        assert await store.scroll("c", "full") == ([], None)
        point = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        assert await store.set_payload("c", "full", point, {"name": "a.jpg"}) is False
        await store.delete_image("c", point)
    finally:
        await store.close()


async def test_collections_are_the_prefixed_logical_names() -> None:
    fake = FakeQdrant(
        collections={
            "imgsearch_cats__full": 0,
            "imgsearch_cats__window": 0,
            "imgsearch_dogs__window": 0,
            "someone_elses": 0,
            "imgsearch_odd": 0,
        }
    )
    store = server_store(fake)
    try:
        assert await store.collections() == ["cats", "dogs"]
    finally:
        await store.close()


async def test_a_failing_server_is_upstream_unavailable_without_secrets(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant(fail_with=503)
    store = server_store(fake)
    try:
        for call in (
            store.search("c", "full", [[1.0, 0.0]], limit=1),
            store.upsert("c", "full", full_points(rng, unit_vectors(rng, 1, 2))),
            store.collections(),
        ):
            with pytest.raises(UpstreamUnavailable) as caught:
                await call
            assert caught.value.status_code == 503
            assert KEY not in caught.value.message
            assert "qdrant.internal" not in caught.value.message
    finally:
        await store.close()


async def test_a_transport_error_is_upstream_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    store = QdrantServerVectorStore(URL, KEY, transport=httpx.MockTransport(refuse))
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await store.count("c", "full")
        assert KEY not in caught.value.message
    finally:
        await store.close()


async def test_a_refused_connection_is_upstream_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = QdrantServerVectorStore(f"https://127.0.0.1:{port}", KEY, timeout_s=5)
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await store.search("c", "window", [[1.0, 0.0]], limit=1)
        assert KEY not in caught.value.message
        assert str(port) not in caught.value.message
    finally:
        await store.close()


async def test_the_factory_builds_a_server_store_with_the_cluster_settings() -> None:
    store = open_vector_store(
        VectorStoreSettings(
            qdrant_url="https://qdrant.example:6333",
            qdrant_api_key=KEY,
            qdrant_shards=4,
            qdrant_replication_factor=3,
            qdrant_write_consistency=2,
        ),
        Path("/nonexistent"),
    )
    memory = open_vector_store(VectorStoreSettings(qdrant_url=":memory:"), Path("/nonexistent"))
    try:
        assert isinstance(store, QdrantServerVectorStore)
        kwargs = store.collection_create_kwargs(16)
        assert (kwargs["shard_number"], kwargs["replication_factor"]) == (4, 3)
        assert kwargs["write_consistency_factor"] == 2
        assert isinstance(memory, QdrantServerVectorStore)
        assert await memory.collections() == []
    finally:
        await store.close()
        await memory.close()


async def test_a_switch_replaces_both_aliases_in_one_call(rng: np.random.Generator) -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        for name in ("cats", "cats.r1", "cats.r2"):
            images = full_points(rng, unit_vectors(rng, 2, 8))
            await store.upsert(name, "full", images)
            await store.upsert(
                name, "window", window_points(rng, images[0].id, unit_vectors(rng, 2, 8))
            )
        assert await store.switch_alias("cats", "cats.r1") == "cats.r0"
        assert await store.switch_alias("cats", "cats.r2") == "cats.r1"
        [hits] = await store.search("cats", "full", [[1.0] + [0.0] * 7], limit=1)
    finally:
        await store.close()

    first, second = fake.bodies("POST", "/collections/aliases")
    assert first["actions"] == [
        {
            "create_alias": {
                "collection_name": "imgsearch_cats.r1__full",
                "alias_name": "imgsearch_cats.alias__full",
            }
        },
        {
            "create_alias": {
                "collection_name": "imgsearch_cats.r1__window",
                "alias_name": "imgsearch_cats.alias__window",
            }
        },
    ]
    assert second["actions"] == [
        {"delete_alias": {"alias_name": "imgsearch_cats.alias__full"}},
        {
            "create_alias": {
                "collection_name": "imgsearch_cats.r2__full",
                "alias_name": "imgsearch_cats.alias__full",
            }
        },
        {"delete_alias": {"alias_name": "imgsearch_cats.alias__window"}},
        {
            "create_alias": {
                "collection_name": "imgsearch_cats.r2__window",
                "alias_name": "imgsearch_cats.alias__window",
            }
        },
    ]
    # The search went through the alias: Qdrant resolved it.
    assert fake.bodies("POST", "/collections/imgsearch_cats.alias__full/points/query/batch")
    assert hits[0].payload == {"answered_by": "imgsearch_cats.r2__full"}


async def test_another_process_that_switched_and_dropped_is_followed_at_once(
    rng: np.random.Generator,
) -> None:
    """A process that read the aliases before another one switched the name and dropped
    the old collection: its next search finds the old one gone, looks again, and answers
    from the new one (never nothing), though its cache has not expired."""
    fake = FakeQdrant()
    reader, reindexer = server_store(fake), server_store(fake)
    query = [[1.0] + [0.0] * 7]
    try:
        await reindexer.upsert("cats", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        [before] = await reader.search("cats", "full", query, limit=1)  # caches "plain"
        await reindexer.upsert("cats.r1", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        assert await reindexer.switch_alias("cats", "cats.r1") == "cats.r0"

        [between] = await reader.search("cats", "full", query, limit=1)  # the old, still there
        assert await reindexer.drop_collection("cats.r0") is True
        [after] = await reader.search("cats", "full", query, limit=1)
        assert await reader.count("cats", "full") == 2
        await reader.upsert("cats", "full", full_points(rng, unit_vectors(rng, 1, 8)))
    finally:
        await reader.close()
        await reindexer.close()

    assert before[0].payload == between[0].payload == {"answered_by": "imgsearch_cats__full"}
    assert after[0].payload == {"answered_by": "imgsearch_cats.r1__full"}
    # The write went through the alias into the new collection; nothing made the old again.
    assert fake.collections == {"imgsearch_cats.r1__full": 3}


async def test_dropping_an_aliased_name_deletes_its_aliases_then_its_collections(
    rng: np.random.Generator,
) -> None:
    fake = FakeQdrant()
    store = server_store(fake)
    try:
        await store.upsert("cats", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        await store.upsert("cats.r1", "full", full_points(rng, unit_vectors(rng, 2, 8)))
        await store.switch_alias("cats", "cats.r1")

        assert await store.drop_collection("cats") is True
        assert await store.collections() == []
    finally:
        await store.close()

    assert fake.collections == {} and fake.aliases == {}
    deleted = [r.url.path for r in fake.requests if r.method == "DELETE"]
    assert deleted == [
        "/collections/imgsearch_cats__full",
        "/collections/imgsearch_cats__window",
        "/collections/imgsearch_cats.r1__full",
        "/collections/imgsearch_cats.r1__window",
    ]
    assert fake.bodies("POST", "/collections/aliases")[-1] == {
        "actions": [{"delete_alias": {"alias_name": "imgsearch_cats.alias__full"}}]
    }
