"""Which files the search API reads back: only under ``INDEX_ROOTS`` or the upload folder
(links resolved), and only regular files — for ``/api/image/{id}`` and for re-scoring.

The points are forged through the internal hand-off (with the token), as a stale point, an
older deployment's or a token holder's would be: the API must not trust their paths. The
real app runs on the test's loop with its own Edge shard, wired to the in-process stack's
encoder and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from redis.asyncio import Redis

from tests.support.handoff import forge, image_point
from tests.support.inprocess import InProcessStack, served

#: The Redis set of queued folders that earlier versions served from (no longer read).
ROOTS = "imgsearch:roots"
COLLECTION = "roots"
#: Longest a request may take here: a FIFO opened for reading blocks until a writer comes,
#: so a request that touches one never answers.
PROMPT_S = 60.0


def _png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def _release(fifos: list[Path]) -> None:
    """Open each FIFO for writing and close it: a reader stuck on it gets end-of-file (a
    thread blocked there would otherwise keep the test process from exiting)."""
    for fifo in fifos:
        # ENXIO when no reader has it open: nothing is stuck on it.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _point(image_id: str, stored: Path | str, size: tuple[int, int], seed: int) -> dict[str, Any]:
    return image_point(image_id, stored, COLLECTION, seed=seed, size=size)


async def _forge(client: httpx.AsyncClient, points: list[dict[str, Any]]) -> None:
    r = await forge(client, COLLECTION, points)
    assert r.status_code == 200, r.text


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """allowed/ (the only INDEX_ROOTS entry) and outside/, next to the API's data folder."""
    (tmp_path / "allowed").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path


@pytest.fixture
async def api(inprocess: InProcessStack, library: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(
        data_dir=library / "data", index_roots=[library / "allowed"], rescore_top_k=8
    )
    async with served(inprocess.create_api(settings)) as client:
        yield client


@pytest.fixture
async def queued_once(inprocess: InProcessStack, library: Path) -> AsyncIterator[Path]:
    """outside/ as a folder that was queued once (the queue's set of roots remembers it):
    an older deployment's, or before ``INDEX_ROOTS`` was narrowed."""
    redis = Redis.from_url(inprocess.redis_url)
    folder = str(library / "outside")
    await redis.sadd(ROOTS, folder)
    try:
        yield library / "outside"
    finally:
        await redis.srem(ROOTS, folder)
        await redis.aclose()


async def test_only_regular_files_under_the_roots_are_served(
    api: httpx.AsyncClient, library: Path, queued_once: Path, request: pytest.FixtureRequest
) -> None:
    allowed, outside = library / "allowed", queued_once
    ok, up = _png(), _png((1, 2, 3))
    (allowed / "ok.png").write_bytes(ok)
    uploaded = library / "data" / "uploads" / "ab" / "up.png"
    uploaded.parent.mkdir(parents=True)
    uploaded.write_bytes(up)
    (outside / "secret.png").write_bytes(_png((200, 0, 0)))
    os.symlink(outside / "secret.png", allowed / "link.png")
    os.symlink(allowed / "ok.png", allowed / "inner-link.png")
    (allowed / "folder.png").mkdir()
    os.mkfifo(allowed / "fifo.png")
    request.addfinalizer(lambda: _release([allowed / "fifo.png"]))
    cases = {
        "11111111-0000-0000-0000-000000000001": (allowed / "ok.png", 200),
        "11111111-0000-0000-0000-000000000002": (uploaded, 200),
        "11111111-0000-0000-0000-000000000003": (allowed / "inner-link.png", 200),
        "11111111-0000-0000-0000-000000000004": (outside / "secret.png", 404),
        "11111111-0000-0000-0000-000000000005": (allowed / "link.png", 404),
        "11111111-0000-0000-0000-000000000006": (allowed / "folder.png", 404),
        "11111111-0000-0000-0000-000000000007": (allowed / "fifo.png", 404),
        "11111111-0000-0000-0000-000000000008": (allowed / ".." / "outside" / "secret.png", 404),
        "11111111-0000-0000-0000-000000000009": ("relative/ok.png", 404),
        "11111111-0000-0000-0000-00000000000a": (allowed / "missing.png", 404),
    }
    await _forge(
        api, [_point(pid, path, (64, 64), i) for i, (pid, (path, _)) in enumerate(cases.items())]
    )
    for pid, (path, expected) in cases.items():
        r = await asyncio.wait_for(api.get(f"/api/image/{pid}?collection={COLLECTION}"), PROMPT_S)
        assert r.status_code == expected, (path, r.text)
        if expected == 200:
            assert r.content == (up if path == uploaded else ok)
            assert r.headers["content-type"] == "image/png"
            assert r.headers["content-length"] == str(len(r.content))
        else:
            assert r.json()["error"]["code"] == "not_found"


async def test_rescoring_reads_only_files_under_the_roots(
    api: httpx.AsyncClient, library: Path, photos_dir: Path
) -> None:
    """Two points with random vectors (stage one scores them near 0) name the same photo,
    one inside the roots, one outside. Re-scoring cuts the query's box from the inside
    copy and lifts its score; the outside copy must not be read, so it keeps its score."""
    photo = photos_dir / "coffee.jpg"
    inside = library / "allowed" / "coffee.jpg"
    outside = library / "outside" / "coffee.jpg"
    shutil.copy(photo, inside)
    shutil.copy(photo, outside)
    with Image.open(photo) as im:
        size = im.size
        w, h = size
        query = im.convert("RGB").crop((w // 5, h // 5, w * 4 // 5, h * 4 // 5))
    buf = io.BytesIO()
    query.save(buf, format="JPEG", quality=90)
    ids = {"inside": "22222222-0000-0000-0000-000000000001"}
    ids["outside"] = "22222222-0000-0000-0000-000000000002"
    await _forge(
        api, [_point(ids["inside"], inside, size, 1), _point(ids["outside"], outside, size, 2)]
    )
    r = await api.post(
        "/api/search/by-image",
        files={"file": ("q.jpg", buf.getvalue(), "image/jpeg")},
        data={"collection": COLLECTION, "limit": "10"},
    )
    assert r.status_code == 200, r.text
    scores = {res["id"]: res["score"] for res in r.json()["results"]}
    assert scores[ids["inside"]] > 0.5, scores  # re-scored on its file: the control
    assert scores[ids["outside"]] < 0.3, scores  # never read: the first stage's score


async def test_a_fifo_as_a_payload_path_does_not_hold_up_a_search(
    api: httpx.AsyncClient, library: Path, photos_dir: Path, request: pytest.FixtureRequest
) -> None:
    """Re-scoring skips a FIFO (inside or outside the roots) and the search answers."""
    fifos = [library / "allowed" / "fifo.jpg", library / "outside" / "fifo.jpg"]
    for fifo in fifos:
        os.mkfifo(fifo)
    request.addfinalizer(lambda: _release(fifos))
    await _forge(
        api,
        [
            _point("33333333-0000-0000-0000-000000000001", fifos[0], (640, 480), 3),
            _point("33333333-0000-0000-0000-000000000002", fifos[1], (640, 480), 4),
        ],
    )
    query = (photos_dir / "coffee.jpg").read_bytes()
    r = await asyncio.wait_for(
        api.post(
            "/api/search/by-image",
            files={"file": ("q.jpg", query, "image/jpeg")},
            data={"collection": COLLECTION},
        ),
        PROMPT_S,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 2


async def test_without_index_roots_only_uploads_are_served(
    inprocess: InProcessStack, library: Path
) -> None:
    """``INDEX_ROOTS`` empty means no folder may be indexed, so none is served either: only
    the upload folder's files are (not any path a point names)."""
    elsewhere = library / "outside" / "photo.png"
    elsewhere.write_bytes(_png((9, 9, 9)))
    uploaded = library / "data" / "uploads" / "cd" / "up.png"
    uploaded.parent.mkdir(parents=True)
    uploaded.write_bytes(_png((4, 5, 6)))
    settings = inprocess.api_settings(data_dir=library / "data", index_roots=[])
    async with served(inprocess.create_api(settings)) as client:
        await _forge(
            client,
            [
                _point("44444444-0000-0000-0000-000000000001", elsewhere, (64, 64), 5),
                _point("44444444-0000-0000-0000-000000000002", uploaded, (64, 64), 6),
            ],
        )
        outside = await client.get(
            f"/api/image/44444444-0000-0000-0000-000000000001?collection={COLLECTION}"
        )
        assert outside.status_code == 404, outside.text
        served_upload = await client.get(
            f"/api/image/44444444-0000-0000-0000-000000000002?collection={COLLECTION}"
        )
        assert served_upload.status_code == 200 and served_upload.content == uploaded.read_bytes()
