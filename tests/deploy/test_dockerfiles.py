"""The three Dockerfiles (the encoder's builds its CPU and its CUDA variant), read with
the Docker parser's rules (tests/deploy/files.py); no Docker engine runs here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .files import (
    COMPOSE,
    DOCKER_DIR,
    FAKE_SECRETS,
    ROOT,
    Instruction,
    encoder_settings,
    load_compose,
    load_script,
    modules_started_by_devstack,
    parse_dockerfile,
)

#: Dockerfile → (its package's module, its pyproject, the port its health check probes).
IMAGES = {
    "services/encoder/Dockerfile": ("imgsearch_encoder", "services/encoder", "ENCODER_PORT"),
    "services/search-api/Dockerfile": ("imgsearch_api", "services/search-api", "API_PORT"),
    "services/indexer-worker/Dockerfile": (
        "imgsearch_worker",
        "services/indexer-worker",
        "WORKER_PORT",
    ),
}
NO_TORCH = ("services/search-api/Dockerfile", "services/indexer-worker/Dockerfile")
SLIM_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+$")
TORCH_FAMILY = {"torch", "torchvision", "open-clip-torch", "timm", "triton"}


@pytest.fixture(params=sorted(IMAGES))
def dockerfile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def instructions(dockerfile: str) -> list[Instruction]:
    return parse_dockerfile(ROOT / dockerfile)


def index_of(found: list[Instruction], keyword: str, contains: str = "") -> int:
    return next(i for i, ins in enumerate(found) if ins.keyword == keyword and contains in ins.args)


def test_a_pinned_slim_python_base(dockerfile: str) -> None:
    froms = [i for i in instructions(dockerfile) if i.keyword == "FROM"]
    assert len(froms) == 1
    assert SLIM_PYTHON.match(froms[0].args), froms[0].args


def test_a_non_root_user_runs_the_command(dockerfile: str) -> None:
    found = instructions(dockerfile)
    users = [i for i, ins in enumerate(found) if ins.keyword == "USER"]
    cmd = index_of(found, "CMD")
    assert users and users[-1] < cmd
    assert found[users[-1]].args not in ("root", "0", "0:0")
    assert "--uid 10001" in found[index_of(found, "RUN", "useradd")].args


def test_the_command_is_one_the_test_suite_starts(dockerfile: str) -> None:
    module, _, _ = IMAGES[dockerfile]
    [cmd] = [i for i in instructions(dockerfile) if i.keyword == "CMD"]
    assert cmd.exec_form() == ["python", "-m", module]  # exec form: signals reach python
    assert module in modules_started_by_devstack()


def test_a_health_check_probes_the_service_port(dockerfile: str) -> None:
    _, _, port_var = IMAGES[dockerfile]
    found = instructions(dockerfile)
    [check] = [i for i in found if i.keyword == "HEALTHCHECK"]
    command = shlex.split(check.args.split(" CMD ", 1)[1])
    assert command[:3] == ["python", "-m", "imgsearch_common.healthcheck"]
    assert command[3] == f"http://127.0.0.1:${{{port_var}}}/health"
    env = " ".join(i.args for i in found if i.keyword == "ENV")
    assert re.search(rf"\b{port_var}=\d+", env)


def test_dependencies_are_installed_before_the_source_is_copied(dockerfile: str) -> None:
    _, project, _ = IMAGES[dockerfile]
    found = instructions(dockerfile)
    deps = index_of(found, "RUN", "-r /tmp/deps/requirements.txt")
    first_source = index_of(found, "COPY", "shared /tmp/src")
    assert deps < first_source
    # Before the dependency layer only what decides the dependencies is copied.
    for ins in found[:deps]:
        if ins.keyword == "COPY":
            sources = ins.args.split()[:-1]
            assert all(
                s.endswith("pyproject.toml") or s.startswith("deploy/docker/") for s in sources
            ), ins.args
    assert f"COPY {project} " in " ".join(f"COPY {i.args}" for i in found)
    # After the source, our packages only: the dependency layer stays cached.
    for ins in found[first_source:]:
        if ins.keyword == "RUN" and "pip install" in ins.args:
            assert "--no-deps" in ins.args, ins.args


def test_the_dependency_list_comes_from_the_pyprojects(dockerfile: str) -> None:
    _, project, _ = IMAGES[dockerfile]
    deps = instructions(dockerfile)[index_of(instructions(dockerfile), "RUN", "requirements.txt")]
    assert "/tmp/deps/shared/pyproject.toml" in deps.args
    assert f"/tmp/deps/{Path(project).name}/pyproject.toml" in deps.args
    assert "-c /tmp/deps/constraints.txt" in deps.args


def test_env_variables_of_the_image_are_settings_the_service_reads(dockerfile: str) -> None:
    from imgsearch_api.settings import ApiSettings
    from imgsearch_worker.settings import WorkerSettings

    module, _, _ = IMAGES[dockerfile]
    classes = {
        "imgsearch_api": ApiSettings,
        "imgsearch_worker": WorkerSettings,
        "imgsearch_encoder": encoder_settings(),
    }
    fields = set(classes[module].model_fields)
    outside = {"PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"}
    outside |= {"NVIDIA_DRIVER_CAPABILITIES"}  # read by the NVIDIA container runtime
    for ins in instructions(dockerfile):
        if ins.keyword == "ENV":
            for pair in ins.args.split():
                name = pair.split("=", 1)[0]
                assert name in outside or name.lower() in fields, f"{name} is read by nobody"


@pytest.mark.parametrize("dockerfile", NO_TORCH)
def test_the_api_and_worker_images_install_no_torch(dockerfile: str) -> None:
    assert not any("torch" in i.args.lower() for i in instructions(dockerfile))
    _, project, _ = IMAGES[dockerfile]
    script = load_script("pyproject_requirements")
    freeze = load_script("freeze_constraints")
    names = [
        script.requirement_name(r)
        for r in script.requirements(
            [ROOT / "shared/pyproject.toml", ROOT / project / "pyproject.toml"]
        )
    ]
    # Not even transitively: the dependency tree as installed in the test environment.
    tree = freeze.closure(names)
    assert not TORCH_FAMILY & set(tree), sorted(TORCH_FAMILY & set(tree))


def test_the_encoder_builds_a_cpu_and_a_cuda_variant() -> None:
    found = instructions("services/encoder/Dockerfile")
    assert any(i.keyword == "ARG" and i.args == "TORCH_VARIANT=cpu" for i in found)
    deps = found[index_of(found, "RUN", "requirements.txt")]
    assert '--torch-variant "${TORCH_VARIANT}"' in deps.args
    assert '--extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"' in deps.args
    compose = load_compose(COMPOSE, FAKE_SECRETS)["services"]["encoder"]
    assert compose["build"]["args"] == {"TORCH_VARIANT": "cu130"}


def test_the_torch_pins_become_the_variant_of_the_pytorch_index() -> None:
    script = load_script("pyproject_requirements")
    found = script.requirements(
        [ROOT / "shared/pyproject.toml", ROOT / "services/encoder/pyproject.toml"], "cu130"
    )
    torch = [r for r in found if script.requirement_name(r) in ("torch", "torchvision")]
    assert torch == ["torch==2.14.1+cu130", "torchvision==0.29.1+cu130"]
    assert not any(script.requirement_name(r).startswith("imgsearch-") for r in found)
    with pytest.raises(ValueError, match="pinned exactly"):
        script.with_variant("torch>=2.0", "cpu")


def test_the_constraints_agree_with_every_exact_pin() -> None:
    """The images install what the tests ran against; a pin bumped in a pyproject.toml
    without regenerating the constraints would make the image build fail."""
    script = load_script("pyproject_requirements")
    pins = {}
    for line in (DOCKER_DIR / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[script.requirement_name(name)] = version
    projects = ["shared", "services/encoder", "services/search-api", "services/indexer-worker"]
    for requirement in script.requirements([ROOT / p / "pyproject.toml" for p in projects]):
        name = script.requirement_name(requirement)
        exact = re.fullmatch(r"[A-Za-z0-9._-]+==([^;\s]+)", requirement.replace(" ", ""))
        if name in ("torch", "torchvision"):
            assert name not in pins  # the variant's index decides
        elif exact:
            assert pins.get(name) == exact.group(1), (
                f"{requirement}: run .venv/bin/python deploy/docker/freeze_constraints.py"
            )
        else:
            assert name in pins, requirement


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for entry in (".env", ".venv", ".git", "data", "**/*.egg-info"):
        assert entry in ignored
    # What the Dockerfiles copy is not ignored.
    for entry in ("shared", "services", "deploy", "deploy/docker"):
        assert entry not in ignored
