"""The indexing rules (``imgsearch_api.indexing``) and the typed hand-off, through the
real app on the test's loop (its own Edge shard; jobs go to a Redis database no worker
reads, so nothing queued here is indexed)."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgsearch_api.indexing import MAX_UPLOAD_FILES
from imgsearch_devstack import Proc
from tests.support.inprocess import TOKEN, InProcessStack, served

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """allowed/ holds a.JPG, b.png, notes.txt and sub/d.jpg; outside/ one more photo."""
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    for name in ("a.JPG", "b.png", "sub/d.jpg"):
        (allowed / name).write_bytes(_png())
    (allowed / "notes.txt").write_text("not an image")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "e.jpg").write_bytes(_png())
    os.symlink(tmp_path / "outside", allowed / "escape")
    return tmp_path


@pytest.fixture
async def api(
    inprocess: InProcessStack, redis_server: Proc, library: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(
        data_dir=library / "data",
        redis_url=redis_server.url[:-1] + "2",
        index_roots=[library / "allowed"],
    )
    async with served(inprocess.create_api(settings)) as client:
        yield client


async def _queued(api: httpx.AsyncClient, path: Path, **body: object) -> int:
    r = await api.post("/api/index/folder", json={"path": str(path), **body})
    assert r.status_code == 202, r.text
    return int(r.json()["queued"])


async def test_only_folders_inside_index_roots_are_queued(
    api: httpx.AsyncClient, library: Path
) -> None:
    assert await _queued(api, library / "allowed" / "sub") == 1
    for outside in (library / "outside", library / "allowed" / "escape", Path("/")):
        r = await api.post("/api/index/folder", json={"path": str(outside)})
        assert r.status_code == 403, (outside, r.text)
        assert r.json()["error"]["code"] == "forbidden"


async def test_extensions_match_without_case_and_default_to_images(
    api: httpx.AsyncClient, library: Path
) -> None:
    allowed = library / "allowed"
    assert await _queued(api, allowed) == 3  # a.JPG, b.png, sub/d.jpg: not notes.txt
    assert await _queued(api, allowed, extensions=["jpg"]) == 2
    assert await _queued(api, allowed, extensions=[".JPG"], recursive=False) == 1
    r = await api.post("/api/index/folder", json={"path": str(allowed), "extensions": [" "]})
    assert r.status_code == 400 and "extension" in r.json()["error"]["message"]


async def test_too_many_uploads_are_refused_before_any_is_stored(
    api: httpx.AsyncClient, library: Path
) -> None:
    files = [("files", (f"{i}.png", _png((i, i, i)), "image/png")) for i in range(101)]
    assert len(files) > MAX_UPLOAD_FILES
    r = await api.post("/api/index/upload", files=files)
    assert r.status_code == 400, r.text
    assert not (library / "data" / "uploads").exists()


async def test_uploads_are_stored_once_by_content(api: httpx.AsyncClient, library: Path) -> None:
    same = _png((1, 2, 3))
    r = await api.post(
        "/api/index/upload",
        files=[
            ("files", ("one.png", same, "image/png")),
            ("files", ("two.png", same, "image/png")),
        ],
    )
    assert r.status_code == 202 and r.json()["queued"] == 2
    stored = [p for p in (library / "data" / "uploads").rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_bytes() == same


async def test_the_handoff_refuses_payloads_that_break_the_contract(
    api: httpx.AsyncClient,
) -> None:
    image = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    full = {
        "id": image,
        "vector": [1.0, 0.0, 0.0, 0.0],
        "payload": {
            "filename": "a.png",
            "original_path": "/photos/a.png",
            "file_size": 10,
            "indexed_at": 0.0,
            "width": 32,
            "height": 32,
            "collection": "handoff",
        },
    }
    window = {
        "id": "6fa459ea-ee8a-3ca4-894e-db77e160355e",
        "vector": [0.0, 1.0, 0.0, 0.0],
        "payload": {"parent_id": image, "box": [0, 0, 16, 16]},
    }
    broken = {**window, "payload": {"parent_id": image}}  # no box
    bad = {"collection": "handoff", "full": [full], "windows": [broken]}
    r = await api.post("/internal/v1/upsert", json=bad, headers=AUTH)
    assert r.status_code == 422, r.text
    assert (await api.get("/api/status")).json()["collections"] == {}  # nothing written
    good = {"collection": "handoff", "full": [full], "windows": [window]}
    r = await api.post("/internal/v1/upsert", json=good, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"full": 1, "windows": 1}
    counts = (await api.get("/api/status")).json()["collections"]["handoff"]
    assert counts == {"full_images": 1, "partial_images": 1}
