"""Print the third-party requirements of the given pyproject.toml files, one a line.

The images install their dependencies in a layer of their own, before the source is
copied, so that editing the code does not reinstall them. That layer only sees the
pyproject.toml files; this script turns their ``[project] dependencies`` into a
requirements list, leaving out our own packages (``imgsearch-*``, installed from the
source later). Standard library only: it runs before anything is installed.

    python pyproject_requirements.py shared/pyproject.toml services/x/pyproject.toml
    python pyproject_requirements.py --torch-variant cu130 shared/... services/encoder/...

``--torch-variant`` turns the exact ``torch``/``torchvision`` pins into that build of
the PyTorch index (``torch==2.14.1`` → ``torch==2.14.1+cu130``), so pip can only take
them from that index: the public index has no such version, whatever it hosts.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

OWN_PREFIX = "imgsearch-"
#: Packages built per variant (CPU, CUDA x.y) on the PyTorch index.
TORCH_PACKAGES = ("torch", "torchvision")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def with_variant(requirement: str, variant: str) -> str:
    """``torch==2.14.1`` → ``torch==2.14.1+cu130``; other requirements unchanged."""
    name = requirement_name(requirement)
    if name not in TORCH_PACKAGES:
        return requirement
    match = re.fullmatch(r"\s*[A-Za-z0-9._-]+\s*==\s*([0-9][0-9A-Za-z.]*)\s*", requirement)
    if match is None:
        raise ValueError(f"{name} must be pinned exactly (==) to pick a variant: {requirement!r}")
    return f"{name}=={match.group(1)}+{variant}"


def requirements(paths: list[Path], torch_variant: str | None = None) -> list[str]:
    """Third-party requirements of ``paths``, in order, without duplicates."""
    seen: dict[str, str] = {}
    for path in paths:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            name = requirement_name(requirement)
            if name.startswith(OWN_PREFIX):
                continue
            if name in seen and seen[name] != requirement:
                raise ValueError(f"{name} is required as {seen[name]!r} and {requirement!r}")
            seen.setdefault(name, requirement)
    found = list(seen.values())
    if torch_variant:
        found = [with_variant(r, torch_variant) for r in found]
    return found


def main(argv: list[str]) -> int:
    variant = None
    if argv[:1] == ["--torch-variant"] and len(argv) >= 2:
        variant, argv = argv[1], argv[2:]
    if not argv:
        sys.stderr.write("usage: pyproject_requirements.py [--torch-variant V] PYPROJECT...\n")
        return 2
    found = requirements([Path(a) for a in argv], variant)
    sys.stdout.write("".join(f"{r}\n" for r in found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
