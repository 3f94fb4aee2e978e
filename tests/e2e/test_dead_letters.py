"""Bad files in a folder are dead-lettered with the reason; the rest is indexed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from imgsearch_devstack import LocalStack, wait_batch
from tests.support.images import png_bomb

pytestmark = [pytest.mark.e2e]


def test_bad_files_are_dead_lettered_with_reason(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = (photos_dir / "coins.jpg").read_bytes()
    (folder / "good.jpg").write_bytes(good)
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.png").write_bytes(b"this is not an image at all")
    (folder / "empty.webp").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bomb(30_000, 30_000))
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": "mixed"})
        assert r.status_code == 202, r.text
        status = wait_batch(client, r.json()["batch_id"], timeout=120)
        assert (status.total, status.done, status.failed) == (5, 1, 4)
        reasons = {e.path: e.reason for e in status.errors}
        assert reasons == {
            "truncated.jpg": "corrupt_image",
            "notes.png": "unsupported_image",
            "empty.webp": "empty_input",
            "bomb.png": "image_too_large",
        }
        dead = client.get("/api/index/dead-letters").json()["dead_letters"]
        reasons_dead = {d["reason"] for d in dead}
        assert reasons_dead >= {"corrupt_image", "unsupported_image", "image_too_large"}
