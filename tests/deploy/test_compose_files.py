"""Properties both compose files must have (one GPU box, and the cluster layout).

Checked by reading the files as compose would (tests/deploy/files.py): no Docker engine
runs here. deploy/README.md lists what only a Docker host can check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from .files import (
    CLUSTER,
    COMPOSE,
    FAKE_SECRETS,
    ROOT,
    SECRETS,
    MissingVariable,
    encoder_settings,
    environment,
    load_compose,
    long_running,
    read_env_file,
    references,
)

#: Host paths the cluster layout requires (no sensible default exists for them).
CLUSTER_PATHS = {"SHARED_UPLOAD_DIR": "/srv/imgsearch/uploads", "IMAGES_DIR": "/srv/images"}

FILES = {
    "one-box": (COMPOSE, ROOT / ".env.example", dict(FAKE_SECRETS)),
    "cluster": (CLUSTER, CLUSTER.parent / ".env.example", {**FAKE_SECRETS, **CLUSTER_PATHS}),
}
OURS = {"imgsearch-encoder", "imgsearch-api", "imgsearch-worker"}
#: Third-party images: pinned to a full version (x.y.z), never a moving tag.
PINNED = re.compile(r"^[a-z0-9./-]+:v?\d+\.\d+\.\d+(-[a-z0-9.]+)?$")


@pytest.fixture(params=sorted(FILES))
def layout(request: pytest.FixtureRequest) -> tuple[Path, Path, dict[str, str]]:
    return FILES[request.param]


def services(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The services ``docker compose up`` starts (one-off jobs: test_compose_exposure.py)."""
    return long_running(load_compose(path, env)["services"])


def ours(service: dict[str, Any]) -> bool:
    return any(name in str(service.get("image", "")) for name in OURS)


def test_compose_refuses_to_start_without_each_secret(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    for secret in SECRETS:
        for missing in ({k: v for k, v in env.items() if k != secret}, {**env, secret: ""}):
            with pytest.raises(MissingVariable) as caught:
                load_compose(path, missing)
            assert caught.value.name == secret


def test_every_use_of_a_secret_is_required(layout: tuple[Path, Path, dict]) -> None:
    path, _, _ = layout
    uses = [r for r in references(path.read_text()) if r.name in SECRETS]
    assert {r.name for r in uses} == set(SECRETS)
    # A default (or an optional form) anywhere would let compose start with a weak value.
    assert all(r.op == ":?" and r.arg for r in uses), [r for r in uses if r.op != ":?"]


def test_the_env_example_lists_every_variable_with_no_working_secret(
    layout: tuple[Path, Path, dict],
) -> None:
    path, example, _ = layout
    values = read_env_file(example)
    used = {r.name for r in references(path.read_text())}
    assert used <= set(values), f"not in {example.name}: {sorted(used - set(values))}"
    assert all(values[s] == "" for s in SECRETS)
    # So a copied, unfilled .env.example stops compose.
    with pytest.raises(MissingVariable):
        load_compose(path, values)


def test_every_service_has_a_health_check(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    for name, service in services(path, env).items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_every_dependency_waits_until_healthy(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    found = services(path, env)
    for name, service in found.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            assert dependency in found, (name, dependency)
            assert rule == {"condition": "service_healthy"}, (name, dependency)


def test_images_are_pinned(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    for name, service in services(path, env).items():
        image = service.get("image", "")
        assert image and ":" in image.rsplit("/", 1)[-1], f"{name}: untagged image"
        assert not image.endswith(":latest"), name
        if ours(service):
            assert "build" in service, f"{name}: built from this repository"
        else:
            assert PINNED.match(image), f"{name}: {image} is not pinned to a version"


def test_redis_keeps_an_append_only_file_and_requires_the_password(
    layout: tuple[Path, Path, dict],
) -> None:
    path, _, env = layout
    redis = services(path, env)["redis"]
    command = redis["command"]
    pairs = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--requirepass"] == FAKE_SECRETS["REDIS_PASSWORD"]
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    # Everything that talks to it carries the password in its URL.
    for name, service in services(path, env).items():
        url = environment(service).get("REDIS_URL")
        if url is not None:
            assert url == f"redis://:{FAKE_SECRETS['REDIS_PASSWORD']}@redis:6379/0", name


def test_qdrant_and_redis_stay_internal(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    tree = load_compose(path, env)
    for name, service in tree["services"].items():
        assert service.get("network_mode") != "host", name
        if name.startswith(("qdrant", "redis", "indexer-worker")):
            assert list(service["networks"]) == ["backend"], name
            assert "ports" not in service, name
    assert tree["networks"]["backend"]["internal"] is True


def test_qdrant_requires_its_api_key_and_every_client_sends_it(
    layout: tuple[Path, Path, dict],
) -> None:
    path, _, env = layout
    found = services(path, env)
    nodes = [s for n, s in found.items() if n.startswith("qdrant")]
    assert nodes
    for node in nodes:
        assert environment(node)["QDRANT__SERVICE__API_KEY"] == FAKE_SECRETS["QDRANT_API_KEY"]
        assert any(v.endswith(":/qdrant/storage") for v in node["volumes"])
    for name in ("search-api", "indexer-worker"):
        env_of = environment(found[name])
        assert env_of["QDRANT_URL"].startswith("http://qdrant"), name
        assert env_of["QDRANT_API_KEY"] == FAKE_SECRETS["QDRANT_API_KEY"], name


def test_our_services_run_without_capabilities_and_restart(
    layout: tuple[Path, Path, dict],
) -> None:
    path, _, env = layout
    for name, service in services(path, env).items():
        assert service.get("restart") == "unless-stopped", name
        assert service["logging"]["options"]["max-size"], name
        if ours(service):
            assert service["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in service["security_opt"], name
            assert "command" not in service, f"{name}: the image's CMD is what the tests start"


def test_images_and_api_share_paths_with_the_workers(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    found = services(path, env)
    api, worker = found["search-api"], found["indexer-worker"]
    upload_dir = environment(api)["UPLOAD_DIR"]
    api_mounts = {v.split(":")[1]: v for v in api["volumes"]}
    worker_mounts = {v.split(":")[1]: v for v in worker["volumes"]}
    # A job names its file by the API's path: the workers see the same files there.
    assert api_mounts[upload_dir].split(":")[0] == worker_mounts[upload_dir].split(":")[0]
    assert not api_mounts[upload_dir].endswith(":ro")
    assert worker_mounts[upload_dir].endswith(":ro")
    assert environment(api)["INDEX_ROOTS"] == '["/images"]'
    assert api_mounts["/images"].endswith(":ro") and worker_mounts["/images"].endswith(":ro")
    assert api_mounts["/images"].split(":")[0] == worker_mounts["/images"].split(":")[0]


def test_worker_replicas_are_configurable(layout: tuple[Path, Path, dict]) -> None:
    path, _, env = layout
    worker = services(path, {**env, "WORKER_REPLICAS": "5"})["indexer-worker"]
    assert worker["deploy"]["replicas"] == "5"
    assert environment(worker)["WORKER_PORT"] == "8010"
    assert worker["healthcheck"]["test"][-1] == "http://127.0.0.1:8010/health"


def test_each_service_is_given_only_settings_it_reads(layout: tuple[Path, Path, dict]) -> None:
    from imgsearch_api.settings import ApiSettings
    from imgsearch_worker.settings import WorkerSettings

    fields = {
        "imgsearch-api": set(ApiSettings.model_fields),
        "imgsearch-encoder": set(encoder_settings().model_fields),
        # Its vector-store settings (direct writes) are fields of WorkerSettings too.
        "imgsearch-worker": set(WorkerSettings.model_fields),
    }
    path, _, env = layout
    for name, service in services(path, env).items():
        for image, known in fields.items():
            if image in service.get("image", ""):
                # A misspelt variable would be ignored silently (extra="ignore").
                unknown = {k for k in environment(service) if k.lower() not in known}
                assert not unknown, f"{name} is given variables it never reads: {unknown}"


def test_each_service_accepts_the_environment_it_is_given(
    layout: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings classes parse every value compose passes (a value they cannot parse
    stops the service at start-up, on the Docker host)."""
    from imgsearch_api.settings import ApiSettings
    from imgsearch_worker.settings import WorkerSettings

    classes: dict[str, type[BaseSettings]] = {
        "imgsearch-api": ApiSettings,
        "imgsearch-encoder": encoder_settings(),
        "imgsearch-worker": WorkerSettings,
    }
    path, _, env = layout
    for name, service in services(path, env).items():
        for image, settings_class in classes.items():
            if image not in service.get("image", ""):
                continue
            with monkeypatch.context() as patch:
                for key, value in environment(service).items():
                    patch.setenv(key, value)
                settings: Any = settings_class()
            if image == "imgsearch-api":
                assert settings.index_roots == [Path("/images")], name
                assert settings.qdrant_api_key.get_secret_value() == FAKE_SECRETS["QDRANT_API_KEY"]
            assert settings.internal_token_value() == FAKE_SECRETS["INTERNAL_TOKEN"], name
