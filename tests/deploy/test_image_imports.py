"""The API and worker images install no torch (nor anything else outside their
dependency tree): their code must import without it. Each service's entry modules are
imported in a fresh interpreter that can only see the distributions its image installs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata

import pytest

from .files import ROOT, load_script

#: image → (its pyproject, what its Dockerfile installs besides the dependency tree,
#:          the modules its command and code paths import)
IMAGES = {
    "search-api": (
        "services/search-api",
        {"imgsearch-common", "imgsearch-api", "rapidocr-onnxruntime", "setuptools"},
        ["imgsearch_api.__main__", "imgsearch_api.app", "imgsearch_common.healthcheck"],
    ),
    "indexer-worker": (
        "services/indexer-worker",
        {"imgsearch-common", "imgsearch-worker", "setuptools"},
        [
            "imgsearch_worker.__main__",
            "imgsearch_worker.direct_index",
            "imgsearch_common.healthcheck",
        ],
    ),
}

_IMPORT_WITHOUT = """
import importlib, json, sys
blocked = set(json.loads(sys.argv[1]))

class Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is not installed in this image", name=name)
        return None

sys.meta_path.insert(0, Absent)
for module in json.loads(sys.argv[2]):
    importlib.import_module(module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
assert not leaked, leaked
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def blocked_modules(image: str) -> set[str]:
    """Top-level modules of this environment that the image does not install."""
    project, own, _ = IMAGES[image]
    script = load_script("pyproject_requirements")
    freeze = load_script("freeze_constraints")
    requirements = script.requirements(
        [ROOT / "shared" / "pyproject.toml", ROOT / project / "pyproject.toml"]
    )
    installed = set(freeze.closure([script.requirement_name(r) for r in requirements])) | own
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if not {canonical(d) for d in dists} & installed
    }


@pytest.fixture(scope="module")
def imports() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One interpreter per image, started together (each takes seconds to import)."""
    running = {
        image: subprocess.Popen(
            [
                sys.executable,
                "-c",
                _IMPORT_WITHOUT,
                json.dumps(sorted(blocked_modules(image))),
                json.dumps(modules),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for image, (_, _, modules) in IMAGES.items()
    }
    yield running
    for proc in running.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_service_imports_with_only_what_its_image_installs(
    image: str, imports: dict[str, subprocess.Popen[str]]
) -> None:
    assert {"torch", "torchvision", "open_clip"} <= blocked_modules(image)
    _, stderr = imports[image].communicate(timeout=120)
    assert imports[image].returncode == 0, stderr[-2000:]
