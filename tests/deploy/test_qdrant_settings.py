"""From the cluster compose file to Qdrant's create_collection: the collection settings
(shards, replication, write consistency) travel through the search API's settings and
lifespan, and through a worker's direct writer, into the request that creates a
collection. Real settings classes, the real app lifespan, real stores; no server runs
here, so the store is built but never contacted (or reached through a transport fake).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

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


@dataclass
class WorkerIndexSettings:
    """The fields :func:`open_index_writer` reads, as the cluster gives them to a worker
    (the worker's settings class gains them when the direct writer is wired in)."""

    api_internal_url: str
    qdrant_url: str | None
    qdrant_api_key: SecretStr | None
    qdrant_shards: int | None
    qdrant_replication_factor: int | None
    qdrant_write_consistency: int | None
    hnsw_m: int
    hnsw_ef_construct: int

    @classmethod
    def from_env(cls, env: dict[str, str]) -> WorkerIndexSettings:
        return cls(
            api_internal_url=env["API_INTERNAL_URL"],
            qdrant_url=env.get("QDRANT_URL"),
            qdrant_api_key=SecretStr(env["QDRANT_API_KEY"]),
            qdrant_shards=int(env["QDRANT_SHARDS"]),
            qdrant_replication_factor=int(env["QDRANT_REPLICATION_FACTOR"]),
            qdrant_write_consistency=int(env["QDRANT_WRITE_CONSISTENCY"]),
            hnsw_m=int(env.get("HNSW_M", "32")),
            hnsw_ef_construct=int(env.get("HNSW_EF_CONSTRUCT", "128")),
        )


@pytest.mark.filterwarnings(INSECURE_KEY)
async def test_a_worker_writing_directly_creates_collections_the_same_way() -> None:
    from imgsearch_common.schemas import PointIn
    from imgsearch_worker.direct_index import DirectIndexWriter, open_index_writer

    from ..vectorstore.test_vectorstore_server import FakeQdrant

    settings = WorkerIndexSettings.from_env(
        cluster_env("indexer-worker", QDRANT_WRITE_CONSISTENCY="2") | {"HNSW_M": "24"}
    )
    fake = FakeQdrant()
    writer = open_index_writer(settings, "token", transport=httpx.MockTransport(fake))
    assert isinstance(writer, DirectIndexWriter)
    vector = np.ones(8, dtype=np.float32).tolist()
    image_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    window = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
    try:
        await writer.upsert(
            "default",
            full=[PointIn(id=image_id, vector=vector, payload={"filename": "a.jpg"})],
            windows=[PointIn(id=window, vector=vector, payload={"parent_id": image_id})],
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
