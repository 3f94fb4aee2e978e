"""From the cluster compose file to Qdrant's create_collection: the collection settings
(shards, replication, write consistency) travel through the search API's settings and
lifespan, and through a worker's direct writer, into the request that creates a
collection. Real settings classes, the real app lifespan, real stores; no server runs
here, so the store is built but never contacted (or reached through a transport fake).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from imgsearch_api.app import create_app
from imgsearch_api.settings import ApiSettings
from imgsearch_api.state import AppState
from imgsearch_common.vectorstore import QdrantServerVectorStore
from imgsearch_devstack import free_port

from .files import CLUSTER, FAKE_SECRETS, environment, load_compose

PATHS = {"SHARED_UPLOAD_DIR": "/srv/imgsearch/uploads", "IMAGES_DIR": "/srv/images"}
# qdrant-client warns once when an API key travels over plain http; inside the compose
# network's private bridge that is the documented choice (deploy/README.md).
INSECURE_KEY = "ignore:Api key is used with an insecure connection:UserWarning"


def cluster_env(service: str, **env: str) -> dict[str, str]:
    tree = load_compose(CLUSTER, {**FAKE_SECRETS, **PATHS, **env})
    return environment(tree["services"][service])


@pytest.mark.filterwarnings(INSECURE_KEY)
async def test_the_search_api_creates_collections_with_the_cluster_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cluster_env("search-api").items():
        monkeypatch.setenv(name, value)
    # Nothing listens there: the lifespan only logs that Redis is unreachable.
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "uploads"))
    settings = ApiSettings()
    assert (settings.qdrant_shards, settings.qdrant_replication_factor) == (6, 2)
    assert settings.qdrant_write_consistency == 1

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.resources
        assert isinstance(state.store, QdrantServerVectorStore)
        kwargs = state.store.collection_create_kwargs(512)
    assert kwargs["shard_number"] == 6
    assert kwargs["replication_factor"] == 2
    assert kwargs["write_consistency_factor"] == 1
    assert (kwargs["hnsw_config"].m, kwargs["hnsw_config"].ef_construct) == (32, 128)
    assert not (tmp_path / "index").exists()  # the embedded store was not opened


@pytest.mark.filterwarnings(INSECURE_KEY)
async def test_a_worker_writing_directly_creates_collections_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imgsearch_common.payloads import (
        ImagePayload,
        ImagePointIn,
        UpsertRequest,
        WindowPayload,
        WindowPointIn,
    )
    from imgsearch_worker.direct_index import DirectIndexWriter, open_index_writer
    from imgsearch_worker.settings import WorkerSettings
    from tests.support.fake_qdrant import FakeQdrant

    env = cluster_env("indexer-worker", QDRANT_WRITE_CONSISTENCY="2") | {"HNSW_M": "24"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    fake = FakeQdrant()
    writer = open_index_writer(settings, "token", transport=httpx.MockTransport(fake))
    assert isinstance(writer, DirectIndexWriter)
    vector = np.ones(8, dtype=np.float32).tolist()
    image_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    window = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
    payload = ImagePayload(
        filename="a.jpg",
        original_path="/srv/images/a.jpg",
        file_size=1,
        indexed_at=0.0,
        width=8,
        height=8,
        collection="default",
    )
    try:
        await writer.upsert(
            UpsertRequest(
                collection="default",
                full=[ImagePointIn(id=image_id, vector=vector, payload=payload)],
                windows=[
                    WindowPointIn(
                        id=window,
                        vector=vector,
                        payload=WindowPayload(parent_id=image_id, box=(0, 0, 4, 4)),
                    )
                ],
            )
        )
    finally:
        await writer.aclose()
    assert {r.url.host for r in fake.requests} == {"qdrant"}
    for kind in ("window", "full"):
        [created] = fake.bodies("PUT", f"/collections/imgsearch_default__{kind}")
        assert (created["shard_number"], created["replication_factor"]) == (6, 2)
        assert created["write_consistency_factor"] == 2
        assert created["hnsw_config"] == {"m": 24, "ef_construct": 128}
    assert all(r.headers["api-key"] == FAKE_SECRETS["QDRANT_API_KEY"] for r in fake.requests)
