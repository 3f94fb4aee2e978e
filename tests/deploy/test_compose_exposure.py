"""What both compose layouts expose, and with what privileges: no Linux capability beyond
what a third-party image's start-up needs, the encoder without a route out (its weights are
fetched once by a one-off job), the API's internal listener never published, and the names
the API answers to (``ALLOWED_HOSTS``) covering its workers and its public name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .files import (
    CLUSTER,
    COMPOSE,
    FAKE_SECRETS,
    NGINX_CONF,
    ROOT,
    environment,
    image_env,
    load_compose,
    long_running,
    one_off,
)

CLUSTER_PATHS = {"SHARED_UPLOAD_DIR": "/srv/imgsearch/uploads", "IMAGES_DIR": "/srv/images"}
LAYOUTS = {
    "one-box": (COMPOSE, dict(FAKE_SECRETS)),
    "cluster": (CLUSTER, {**FAKE_SECRETS, **CLUSTER_PATHS}),
}
API_IMAGE_ENV = image_env(ROOT / "services" / "search-api" / "Dockerfile")

#: Capabilities given back to third-party images, and why (everything else is dropped):
#: the official redis image's entrypoint chowns /data to the redis user and steps down to
#: it with gosu; nginx's master creates its temporary folders, chowns them to the worker
#: user and starts the workers as that user. Qdrant (root in its image, writing only its
#: own root-owned storage, on ports above 1024) and our images (uid 10001) need none.
NEEDED_CAPS = {
    "redis": {"CHOWN", "SETGID", "SETUID"},
    "nginx": {"CHOWN", "SETGID", "SETUID"},
}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> tuple[Path, dict[str, str]]:
    return LAYOUTS[request.param]


def tree(layout: tuple[Path, dict[str, str]], **env: str) -> dict[str, Any]:
    path, base = layout
    result: dict[str, Any] = load_compose(path, {**base, **env})
    return result


def _image_kind(service: dict[str, Any]) -> str:
    image = str(service.get("image", ""))
    for kind in ("redis", "nginx", "qdrant"):
        if image.startswith(f"{kind}:") or image.startswith(f"qdrant/{kind}:"):
            return kind
    assert "imgsearch-" in image, image
    return "ours"


def test_every_service_drops_every_capability_it_does_not_need(
    layout: tuple[Path, dict[str, str]],
) -> None:
    for name, service in tree(layout)["services"].items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("privileged") is not True, name
        added = set(service.get("cap_add", []))
        assert added == NEEDED_CAPS.get(_image_kind(service), set()), (name, added)


def test_the_encoders_have_no_route_out(layout: tuple[Path, dict[str, str]]) -> None:
    found = tree(layout)
    encoders = {n: s for n, s in long_running(found["services"]).items() if "encoder" in n}
    assert encoders
    for name, encoder in encoders.items():
        assert list(encoder["networks"]) == ["backend"], name
        assert "ports" not in encoder, name
    assert found["networks"]["backend"]["internal"] is True


def test_a_one_off_job_fetches_the_weights_into_the_encoders_cache(
    layout: tuple[Path, dict[str, str]],
) -> None:
    found = tree(layout)["services"]
    jobs = one_off(found)
    assert set(jobs) == {"encoder-weights"}
    job = jobs["encoder-weights"]
    encoders = [s for n, s in long_running(found).items() if "encoder" in n]
    # `docker compose run --rm encoder-weights` enables its profile by itself.
    assert job["profiles"] == ["weights"]
    assert job["restart"] == "no"
    assert list(job["networks"]) == ["egress"]  # out to the model hub, and nothing else
    assert "ports" not in job and "deploy" not in job  # no GPU needed to download
    for encoder in encoders:
        assert job["image"] == encoder["image"] and job["build"] == encoder["build"]
        assert set(job["volumes"]) == set(encoder["volumes"])
        for key in ("CLIP_MODEL", "CLIP_PRETRAINED"):
            assert environment(job)[key] == environment(encoder)[key]
    assert environment(job)["DEVICE"] == "cpu"
    assert job["command"][:2] == ["python", "-c"] and "load_encoder" in job["command"][2]
    assert "INTERNAL_TOKEN" not in environment(job)  # it talks to nobody of ours


def test_the_internal_listener_is_not_published_and_the_workers_use_it(
    layout: tuple[Path, dict[str, str]],
) -> None:
    found = long_running(tree(layout)["services"])
    api, worker = found["search-api"], found["indexer-worker"]
    internal_port = environment(api)["INTERNAL_PORT"]
    public_port = API_IMAGE_ENV["API_PORT"]
    assert internal_port == "8002" and internal_port != public_port
    url = urlsplit(environment(worker)["API_INTERNAL_URL"])
    assert (url.scheme, url.hostname, str(url.port)) == ("http", "search-api", internal_port)
    for name, service in found.items():
        for mapping in service.get("ports", []):
            assert not mapping.endswith(f":{internal_port}"), (name, mapping)
    if "ports" in api:
        assert [m.rsplit(":", 1)[1] for m in api["ports"]] == [public_port]


def _api_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    from imgsearch_api.settings import ApiSettings

    with monkeypatch.context() as patch:
        for key, value in {**API_IMAGE_ENV, **environment(service)}.items():
            patch.setenv(key, value)
        return ApiSettings()


def test_the_api_answers_to_its_workers_and_its_public_names(
    layout: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsearch_api.security import exposure_problem

    found = long_running(tree(layout)["services"])
    settings = _api_settings(found["search-api"], monkeypatch)
    worker_host = urlsplit(environment(found["indexer-worker"])["API_INTERNAL_URL"]).hostname
    hosts = settings.trusted_hosts()
    assert worker_host in hosts and "localhost" in hosts and "127.0.0.1" in hosts
    assert "*" not in hosts
    # The image binds every address, which compose allows only with API_KEY (required).
    assert settings.api_host == "0.0.0.0" and exposure_problem(settings) is None
    named = long_running(tree(layout, PUBLIC_HOSTNAME="search.example.com,10.0.0.5")["services"])
    hosts = _api_settings(named["search-api"], monkeypatch).trusted_hosts()
    assert {"search.example.com", "10.0.0.5", "search-api"} <= set(hosts)


def test_the_gateway_passes_the_public_name_on_to_the_api() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"proxy_set_header Host \$host;", conf)
    assert re.search(r"server search-api:8000 resolve\b", conf)  # the public listener
    blocked = dict(re.findall(r"location (/internal/|= /metrics) \{\s*return (\d+);", conf))
    assert blocked == {"/internal/": "404", "= /metrics": "404"}
