"""``make run``'s and ``make test``'s small decisions: the API's ``INDEX_ROOTS`` under
``make run``, an ``IMAGES_DIR`` that is no folder (stopped before anything starts), and the
preflight of ``make test`` (install as root, else the exact command; a missing required
need stops the run, an optional one is reported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgsearch_devstack.__main__ import index_roots
from imgsearch_devstack.preflight import NEEDS, SystemNeed, apt_command, check, chromium_path


def test_index_roots_join_the_users_the_images_dir_and_the_uploads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    images = tmp_path / "pics"
    assert index_roots({}, data, None) == [str(data / "uploads")]
    assert index_roots({"INDEX_ROOTS": "/srv/a:/srv/b"}, data, images) == [
        "/srv/a", "/srv/b", str(images), str(data / "uploads"),
    ]  # fmt: skip
    given = {"INDEX_ROOTS": json.dumps(["/srv/with:colon", str(images)]), "UPLOAD_DIR": "/up"}
    assert index_roots(given, data, images) == ["/srv/with:colon", str(images), "/up"]


def _need(*, required: bool, present: bool = False) -> SystemNeed:
    return SystemNeed(
        name="frobnicator",
        present=lambda: present,
        apt_packages=("frob", "frob-data"),
        why="the frob tests",
        required=required,
    )


def test_a_missing_required_need_stops_with_the_exact_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check([_need(required=True)], install=False) == 2
    out = capsys.readouterr().out
    assert "missing: frobnicator (the frob tests)" in out
    # Run as it is printed: with sudo unless we are root.
    assert apt_command(("frob", "frob-data"), root=os.geteuid() == 0) in out
    assert (
        apt_command(("frob",), root=False) == "sudo apt-get update && sudo apt-get install -y frob"
    )


def test_a_missing_optional_need_is_reported_not_silent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check([_need(required=False)], install=False) == 0
    assert "note: no frobnicator: the frob tests" in capsys.readouterr().out


def test_present_needs_say_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert check([_need(required=True, present=True)], install=False) == 0
    assert capsys.readouterr().out == ""


def test_the_needs_of_today_are_the_optional_system_redis_and_the_required_chromium() -> None:
    assert [(n.apt_packages, n.required) for n in NEEDS] == [
        (("redis-server",), False),
        (("chromium",), True),
    ]


def test_the_chromium_need_looks_where_the_browser_tests_launch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (need,) = [n for n in NEEDS if n.apt_packages == ("chromium",)]
    browser = tmp_path / "chromium"
    monkeypatch.setenv("CHROMIUM", str(browser))
    assert chromium_path() == browser
    assert not need.present()
    browser.write_text("#!/bin/sh\n")
    assert not need.present()  # not executable
    browser.chmod(0o755)
    assert need.present()


@pytest.mark.parametrize(
    ("given", "problem"),
    [("/does/not/exist", "no such folder"), ("Makefile", "a file, not a folder")],
)
def test_make_run_with_an_images_dir_that_is_no_folder_stops_before_starting(
    given: str, problem: str, tmp_path: Path
) -> None:
    # The arguments `make run IMAGES_DIR=...` passes, from the repository's root.
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "imgsearch_devstack", "--images-dir", given],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    resolved = (root / given).resolve()
    shown = given if given == str(resolved) else f"{given} ({resolved})"
    assert done.stderr == f"error: IMAGES_DIR={shown}: {problem}; nothing was started\n"
    assert done.stdout == ""
    assert not (tmp_path / "data").exists()  # nothing was started
