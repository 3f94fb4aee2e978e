"""deploy/cluster/: the scale-out layout (Qdrant cluster, several encoders and workers,
search-API replicas behind a gateway)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .files import (
    CLUSTER,
    FAKE_SECRETS,
    MULTI_HOST,
    NGINX_CONF,
    ROOT,
    environment,
    load_compose,
    long_running,
)

PATHS = {"SHARED_UPLOAD_DIR": "/srv/imgsearch/uploads", "IMAGES_DIR": "/srv/images"}


def services(**env: str) -> dict[str, Any]:
    """The services ``docker compose up`` starts."""
    return long_running(load_compose(CLUSTER, {**FAKE_SECRETS, **PATHS, **env})["services"])


def test_a_three_node_qdrant_cluster() -> None:
    found = services()
    nodes = {name: s for name, s in found.items() if name.startswith("qdrant")}
    assert sorted(nodes) == ["qdrant-1", "qdrant-2", "qdrant-3"]
    volumes = set()
    for name, node in nodes.items():
        assert environment(node)["QDRANT__CLUSTER__ENABLED"] == "true"
        command = node["command"]
        assert command[0] == "./qdrant"
        args = dict(zip(command[1::2], command[2::2], strict=True))
        assert args["--uri"] == f"http://{name}:6335"  # how the peers reach it
        if name != "qdrant-1":
            assert args["--bootstrap"] == "http://qdrant-1:6335"
            assert node["depends_on"] == {"qdrant-1": {"condition": "service_healthy"}}
        # Any node answers to "qdrant", the name the clients use.
        assert node["networks"] == {"backend": {"aliases": ["qdrant"]}}
        volumes.add(node["volumes"][0].split(":")[0])
    assert len(volumes) == 3  # each node its own storage


def test_collections_are_created_sharded_and_replicated_by_api_and_workers() -> None:
    found = services()
    for name in ("search-api", "indexer-worker"):
        env = environment(found[name])
        assert env["QDRANT_URL"] == "http://qdrant:6333"
        assert env["QDRANT_SHARDS"] == "6"
        assert env["QDRANT_REPLICATION_FACTOR"] == "2"
        assert env["QDRANT_WRITE_CONSISTENCY"] == "1"
    tuned = services(QDRANT_SHARDS="12", QDRANT_WRITE_CONSISTENCY="2")["indexer-worker"]
    assert environment(tuned)["QDRANT_SHARDS"] == "12"
    assert environment(tuned)["QDRANT_WRITE_CONSISTENCY"] == "2"


def test_the_encoders_each_have_a_gpu_and_are_all_named_to_their_clients() -> None:
    found = services()
    encoders = sorted(n for n in found if n.startswith("encoder"))
    assert encoders == ["encoder-1", "encoder-2"]
    gpus = []
    for name in encoders:
        [device] = found[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        gpus.extend(device["device_ids"])
        assert found[name]["build"]["args"]["TORCH_VARIANT"] == "cu130"
        assert "ports" not in found[name]
    assert gpus == ["0", "1"]
    expected = ",".join(f"http://{n}:8001" for n in encoders)
    for name in ("search-api", "indexer-worker"):
        assert environment(found[name])["ENCODER_URL"] == expected


def test_replicas_of_the_api_and_the_workers_are_configurable() -> None:
    found = services(API_REPLICAS="4", WORKER_REPLICAS="32")
    assert found["search-api"]["deploy"]["replicas"] == "4"
    assert found["indexer-worker"]["deploy"]["replicas"] == "32"
    assert services()["indexer-worker"]["deploy"]["replicas"] == "8"


def test_only_the_gateway_publishes_a_port() -> None:
    published = {name: s["ports"] for name, s in services().items() if "ports" in s}
    assert published == {"gateway": ["0.0.0.0:8000:8000"]}
    gateway = services()["gateway"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    assert gateway["depends_on"] == {"search-api": {"condition": "service_healthy"}}


def test_the_gateway_spreads_over_the_api_and_refuses_internal_paths() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"server search-api:8000 resolve\b", conf)
    assert "resolver 127.0.0.11" in conf  # Docker's DNS: replicas come and go
    blocked = dict(re.findall(r"location (/internal/|= /metrics) \{\s*return (\d+);", conf))
    assert blocked == {"/internal/": "404", "= /metrics": "404"}
    # Bodies the API accepts (MAX_UPLOAD_BYTES, 25 MiB) get through to its own 413.
    [size] = re.findall(r"client_max_body_size (\d+)m;", conf)
    assert int(size) * 1024 * 1024 > 25 * 1024 * 1024


def test_uploads_need_a_shared_path_on_every_host() -> None:
    found = services()
    assert "/srv/imgsearch/uploads:/data/uploads" in found["search-api"]["volumes"]
    assert "/srv/imgsearch/uploads:/data/uploads:ro" in found["indexer-worker"]["volumes"]


def test_the_multi_host_override_joins_an_external_overlay_network() -> None:
    override = yaml.safe_load(MULTI_HOST.read_text())
    assert override == {"networks": {"backend": {"name": "imgsearch-backend", "external": True}}}
    # Everything that must talk across hosts is on that network.
    for name, service in services().items():
        assert "backend" in service["networks"], name


def test_services_are_built_from_the_repository_root() -> None:
    for name in ("encoder-1", "search-api", "indexer-worker"):
        build = services()[name]["build"]
        assert (CLUSTER.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).is_file()
