"""docker-compose.yml: the one-GPU-machine layout."""

from __future__ import annotations

from typing import Any

from .files import COMPOSE, FAKE_SECRETS, ROOT, environment, load_compose, long_running, one_off


def services(**env: str) -> dict[str, Any]:
    """The services ``docker compose up`` starts."""
    return long_running(load_compose(COMPOSE, {**FAKE_SECRETS, **env})["services"])


def test_the_five_services_and_the_one_off_job() -> None:
    assert set(services()) == {"qdrant", "redis", "encoder", "search-api", "indexer-worker"}
    assert set(one_off(load_compose(COMPOSE, FAKE_SECRETS)["services"])) == {"encoder-weights"}


def test_only_the_search_api_publishes_a_port() -> None:
    published = {name: s["ports"] for name, s in services().items() if "ports" in s}
    assert published == {"search-api": ["0.0.0.0:8000:8000"]}
    assert services(API_PUBLISHED_PORT="9000", API_BIND_ADDRESS="127.0.0.1")["search-api"][
        "ports"
    ] == ["127.0.0.1:9000:8000"]


def test_the_encoder_reserves_the_gpu_and_runs_the_cuda_build() -> None:
    encoder = services()["encoder"]
    [device] = encoder["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert device["count"] == 1
    assert encoder["build"]["args"]["TORCH_VARIANT"] == "cu130"
    assert environment(encoder)["DEVICE"] == "cuda"
    assert "ports" not in encoder


def test_the_api_and_workers_use_the_qdrant_server_not_the_embedded_store() -> None:
    found = services()
    for name in ("search-api", "indexer-worker"):
        env = environment(found[name])
        assert env["QDRANT_URL"] == "http://qdrant:6333", name
        assert env["ENCODER_URL"] == "http://encoder:8001", name
        # Nothing would persist an embedded index: no volume at DATA_DIR/index.
        assert not any("/index" in v for v in found[name]["volumes"]), name
    # The API's internal listener (INTERNAL_PORT), which is not published.
    assert environment(found["indexer-worker"])["API_INTERNAL_URL"] == "http://search-api:8002"


def test_named_volumes_hold_the_state() -> None:
    tree = load_compose(COMPOSE, FAKE_SECRETS)
    assert set(tree["volumes"]) == {"qdrant-data", "redis-data", "uploads", "model-cache"}
    found = tree["services"]
    assert "qdrant-data:/qdrant/storage" in found["qdrant"]["volumes"]
    assert "uploads:/data/uploads" in found["search-api"]["volumes"]
    assert "model-cache:/home/app/.cache" in found["encoder"]["volumes"]


def test_services_are_built_from_their_dockerfiles() -> None:
    for name, dockerfile in {
        "encoder": "services/encoder/Dockerfile",
        "search-api": "services/search-api/Dockerfile",
        "indexer-worker": "services/indexer-worker/Dockerfile",
    }.items():
        build = services()[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == dockerfile
        assert (ROOT / dockerfile).is_file()
