"""Indexing by upload, and the command line against the running stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from imgsearch_devstack import LocalStack, wait_batch
from tests.support.images import search_image

pytestmark = [pytest.mark.e2e]


def test_upload_index_then_find_and_serve(stack: LocalStack, photos_dir: Path) -> None:
    data = (photos_dir / "flower.jpg").read_bytes()
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post(
            "/api/index/upload",
            files=[("files", ("my flower.jpg", data, "image/jpeg"))],
            data={"collection": "uploads"},
        )
        assert r.status_code == 202, r.text
        status = wait_batch(client, r.json()["batch_id"], timeout=120)
        assert status.done == 1
        top = search_image(client, data, collection="uploads").json()["results"][0]
        assert top["metadata"]["filename"] == "my flower.jpg"
        assert top["metadata"]["source"] == "upload"
        assert client.get(top["image_url"]).content == data


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgsearch_cli", "--api", stack.api_url, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_index_and_search(stack: LocalStack, photos_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    folder.mkdir()
    for name in ("astronaut.jpg", "rocket.jpg", "logo.png", "coffee.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    done = _cli(stack, "index", "--images-dir", str(folder), "--collection", "cli",
                "--extensions", ".jpg", ".png", "--batch-size", "8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = _cli(stack, "search", str(folder / "rocket.jpg"), "--collection", "cli")
    assert found.returncode == 0, found.stderr
    lines = [ln for ln in found.stdout.splitlines() if "rocket.jpg" in ln]
    assert lines, found.stdout
    status = _cli(stack, "status")
    assert status.returncode == 0 and "cli" in status.stdout
