"""Readers for the deployment files, for tests that run without a Docker engine.

``docker compose config`` is not available on these machines (the docker client has no
compose plugin), so compose files are read as compose reads them: YAML (merge keys
resolved), then variable interpolation with compose's rules — ``$$`` is a literal ``$``;
``${VAR}``, ``${VAR:-default}`` / ``${VAR-default}``, ``${VAR:?error}`` / ``${VAR?error}``
(compose refuses to start), ``${VAR:+alternative}``. Dockerfiles are split into
instructions the way the Docker parser does (continuation lines joined, comment lines
dropped).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER = ROOT / "deploy" / "cluster" / "docker-compose.yml"
MULTI_HOST = ROOT / "deploy" / "cluster" / "multi-host.yml"
NGINX_CONF = ROOT / "deploy" / "cluster" / "nginx.conf"
DOCKER_DIR = ROOT / "deploy" / "docker"

#: Secrets: no default anywhere, compose must refuse to start without each.
SECRETS = ("REDIS_PASSWORD", "INTERNAL_TOKEN", "QDRANT_API_KEY", "API_KEY")
#: Values the tests use for them.
FAKE_SECRETS = {name: f"{name.lower().replace('_', '')}0123456789abcdef" for name in SECRETS}

_REFERENCE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<dollar>\$))"
)


class MissingVariable(Exception):
    """``${VAR:?message}`` with VAR unset or empty: compose refuses to start."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Reference:
    name: str
    op: str  # "", ":-", "-", ":?", "?", ":+", "+"
    arg: str


def references(text: str) -> list[Reference]:
    """Every ``${...}`` / ``$VAR`` in ``text`` (``$$`` is not one)."""
    found = []
    for m in _REFERENCE.finditer(text):
        if m.group("dollar"):
            continue
        if m.group("bare"):
            found.append(Reference(m.group("bare"), "", ""))
        else:
            found.append(Reference(m.group("braced"), m.group("op") or "", m.group("arg")))
    return found


def interpolate(value: str, env: Mapping[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group("dollar"):
            return "$"
        name = m.group("bare") or m.group("braced")
        op, arg = m.group("op") or "", m.group("arg")
        current = env.get(name)
        is_set, non_empty = current is not None, bool(current)
        if op in (":?", "?"):
            if not (non_empty if op == ":?" else is_set):
                raise MissingVariable(name, arg)
            return str(current)
        if op in (":-", "-"):
            return str(current) if (non_empty if op == ":-" else is_set) else arg
        if op in (":+", "+"):
            return arg if (non_empty if op == ":+" else is_set) else ""
        return current or ""

    return _REFERENCE.sub(one, value)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it with ``env`` (the shell plus ``.env``)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Extension fields (x-*) only feed anchors; compose ignores them after that.
    tree = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    return _interpolate_tree(tree, env)


def long_running(services: Mapping[str, Any]) -> dict[str, Any]:
    """The services ``docker compose up`` starts: those in no profile (a one-off job, such as
    fetching the encoder's weights, sits in a profile and runs with ``docker compose run``)."""
    return {name: s for name, s in services.items() if not s.get("profiles")}


def one_off(services: Mapping[str, Any]) -> dict[str, Any]:
    """The services in a profile: jobs run once with ``docker compose run``."""
    return {name: s for name, s in services.items() if s.get("profiles")}


def image_env(dockerfile: Path) -> dict[str, str]:
    """``ENV KEY=value ...`` of a Dockerfile (the form ours use)."""
    values: dict[str, str] = {}
    for ins in parse_dockerfile(dockerfile):
        if ins.keyword == "ENV":
            values.update(item.split("=", 1) for item in ins.args.split())
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an .env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comment lines are dropped, also inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        if text:
            keyword, _, args = text.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def modules_started_by_devstack() -> set[str]:
    """The ``python -m`` modules that ``imgsearch_devstack`` (the tests' and ``make run``'s
    launcher) starts: the literal module argument of each ``start_service`` call."""
    package = ROOT / "tools" / "src" / "imgsearch_devstack"
    modules = set()
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "start_service"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                modules.add(str(node.args[1].value))
    return modules


def encoder_settings() -> type[BaseSettings]:
    """``EncoderSettings``, from its module alone: importing the package imports torch
    (over ten seconds), which these file checks do not need."""
    path = ROOT / "services" / "encoder" / "src" / "imgsearch_encoder" / "settings.py"
    spec = importlib.util.spec_from_file_location("_encoder_settings_only", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings: type[BaseSettings] = module.EncoderSettings
    return settings


def load_script(name: str) -> ModuleType:
    """One of ``deploy/docker``'s standard-library scripts, imported from its file."""
    spec = importlib.util.spec_from_file_location(f"_deploy_{name}", DOCKER_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
