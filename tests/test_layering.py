"""The import rules of docs/ARCHITECTURE.md ("Packages and import directions"), enforced.

Every module of our packages is parsed with ``ast`` (nothing is imported): every
``import``/``from`` statement counts, at module level, inside functions and under
``if TYPE_CHECKING:``, and so do ``importlib.import_module("...")`` and
``__import__("...")`` with a literal name. Relative imports are resolved against the
module's own package. Starting a service as a process (``python -m imgsearch_api``, what
the launcher does) is not an import and is allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Our packages: where each lives, relative to the repository root.
PACKAGES = {
    "imgsearch_common": "shared/src/imgsearch_common",
    "imgsearch_encoder": "services/encoder/src/imgsearch_encoder",
    "imgsearch_api": "services/search-api/src/imgsearch_api",
    "imgsearch_worker": "services/indexer-worker/src/imgsearch_worker",
    "imgsearch_cli": "tools/src/imgsearch_cli",
    "imgsearch_devstack": "tools/src/imgsearch_devstack",
}
#: Programs and tests: they may import any package of ours (and each other: the
#: benchmarks load the test photos from the ``tests`` package), so they are not checked.
UNCHECKED = ("benchmarks", "tests")
OURS = frozenset(PACKAGES) | frozenset(UNCHECKED)

#: Which of our other packages each package may import.
ALLOWED: dict[str, frozenset[str]] = {
    # The common library every image installs: no service, no tool.
    "imgsearch_common": frozenset(),
    # Services: the common library only; they talk to each other over HTTP and Redis.
    "imgsearch_encoder": frozenset({"imgsearch_common"}),
    "imgsearch_api": frozenset({"imgsearch_common"}),
    "imgsearch_worker": frozenset({"imgsearch_common"}),
    # Tools: the common library (schemas, ids, Retry-After); never a service's code.
    "imgsearch_cli": frozenset({"imgsearch_common"}),
    # The launcher waits for a batch with the CLI's one polling loop (``follow_batch``)
    # and starts the services as processes.
    "imgsearch_devstack": frozenset({"imgsearch_common", "imgsearch_cli"}),
}

_DYNAMIC_IMPORTERS = {("importlib", "import_module"), (None, "__import__"), (None, "import_module")}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    #: The absolute module name imported (relative imports resolved).
    module: str

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


def module_name(path: Path, package: str, package_dir: Path) -> str:
    parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 >= len(base):
        # Above the top-level package: Python refuses it; report it as it stands.
        return "." * node.level + (node.module or "")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _dynamic_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        key: tuple[str | None, str] = (func.value.id, func.attr)
    elif isinstance(func, ast.Name):
        key = (None, func.id)
    else:
        return None
    if key not in _DYNAMIC_IMPORTERS or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def imports_of(path: Path, module: str) -> Iterator[Import]:
    """Every module ``path`` imports, wherever the statement stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            yield Import(path, node.lineno, _resolve(node, module, is_package))
        elif isinstance(node, ast.Call) and (name := _dynamic_name(node)):
            yield Import(path, node.lineno, name)


def violations(root: Path) -> list[str]:
    """``path:line: package imports module`` for every import the rules forbid."""
    found = []
    for package, where in PACKAGES.items():
        package_dir = root / where
        for path in sorted(package_dir.rglob("*.py")):
            for imp in imports_of(path, module_name(path, package, package_dir)):
                if imp.module.startswith("."):
                    bad = True
                else:
                    bad = imp.top in OURS and imp.top != package and imp.top not in ALLOWED[package]
                if bad:
                    found.append(
                        f"{path.relative_to(root)}:{imp.line}: {package} imports {imp.module}"
                    )
    return found


def test_every_package_follows_the_import_rules() -> None:
    found = violations(ROOT)
    assert not found, "imports that break docs/ARCHITECTURE.md's rules:\n" + "\n".join(found)


def test_the_rules_know_every_package() -> None:
    """A new package must get its rule here (and a paragraph in docs/ARCHITECTURE.md)."""
    on_disk = {
        init.parent.name
        for base in ("shared/src", "services/*/src", "tools/src")
        for src in ROOT.glob(base)
        for init in src.glob("*/__init__.py")
    }
    assert on_disk == set(PACKAGES)
    for package, where in PACKAGES.items():
        assert (ROOT / where / "__init__.py").is_file(), package
        assert (ROOT / where).name == package
    assert set(ALLOWED) == set(PACKAGES)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import imgsearch_api.app\n", "imgsearch_api.app"),
        ("from imgsearch_worker import points\n", "imgsearch_worker"),
        ("def f():\n    from imgsearch_cli.format import x\n", "imgsearch_cli.format"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import imgsearch_devstack\n",
            "imgsearch_devstack",
        ),
        (
            "import importlib\nimportlib.import_module('imgsearch_encoder.model')\n",
            "imgsearch_encoder.model",
        ),
        ("from tests.support import photos\n", "tests.support"),
        ("from .... import x\n", "...."),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path: Path, source: str, expected: str) -> None:
    """The checker on a tree of empty packages with one bad import in the common one."""
    for where in PACKAGES.values():
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "__init__.py").write_text("")
    bad = tmp_path / PACKAGES["imgsearch_common"] / "vectorstore" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("from .. import errors\nfrom . import base\n" + source)
    (found,) = violations(tmp_path)
    assert found.startswith("shared/src/imgsearch_common/vectorstore/bad.py:")
    assert found.endswith(f": imgsearch_common imports {expected}")


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    for where in PACKAGES.values():
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "__init__.py").write_text("")
    (tmp_path / PACKAGES["imgsearch_devstack"] / "stack.py").write_text(
        "from imgsearch_cli.polling import follow_batch\n"
        "from imgsearch_common.schemas import BatchStatus\n"
        "from .processes import Proc\n"
        "import httpx\n"
        "CMD = ['python', '-m', 'imgsearch_api']\n"
    )
    (tmp_path / PACKAGES["imgsearch_api"] / "app.py").write_text(
        "from imgsearch_common.errors import ImgSearchError\nfrom .search import service\n"
    )
    assert violations(tmp_path) == []
