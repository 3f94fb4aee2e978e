"""The indexing rules (``imgsearch_api.indexing``) and the typed hand-off, through the
real app on the test's loop (its own Edge shard; jobs go to a Redis database no worker
reads, so nothing queued here is indexed)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgsearch_api.indexing import MAX_UPLOAD_FILES
from imgsearch_common.imaging import DEFAULT_EXTENSIONS
from imgsearch_devstack import Proc
from tests.support.inprocess import API_INTERNAL_URL, TOKEN, InProcessStack, served

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


@contextlib.asynccontextmanager
async def _serve(
    inprocess: InProcessStack, redis_server: Proc, library: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "data_dir": library / "data",
        "redis_url": redis_server.url[:-1] + "2",
        "index_roots": [library / "allowed"],
    }
    settings = inprocess.api_settings(**{**values, **overrides})
    async with served(inprocess.create_api(settings)) as client:
        yield client


@pytest.fixture
async def api(
    inprocess: InProcessStack, redis_server: Proc, library: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with _serve(inprocess, redis_server, library) as client:
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
    r = await api.post(f"{API_INTERNAL_URL}/internal/v1/upsert", json=bad, headers=AUTH)
    assert r.status_code == 422, r.text
    assert (await api.get("/api/status")).json()["collections"] == {}  # nothing written
    good = {"collection": "handoff", "full": [full], "windows": [window]}
    r = await api.post(f"{API_INTERNAL_URL}/internal/v1/upsert", json=good, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"full": 1, "windows": 1}
    counts = (await api.get("/api/status")).json()["collections"]["handoff"]
    assert counts == {"full_images": 1, "partial_images": 1}


# --- what may be indexed: safe by default ----------------------------------------------------


def _refused(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    message = str(r.json()["error"]["message"])
    assert all(word in message for word in words), message
    return message


async def test_without_index_roots_no_folder_may_be_queued(
    inprocess: InProcessStack, redis_server: Proc, library: Path
) -> None:
    # Empty INDEX_ROOTS used to mean "anywhere": {"path": "/"} queued every image on the disk.
    async with _serve(inprocess, redis_server, library, index_roots=[]) as client:
        for path in (library / "allowed", Path("/"), Path.home()):
            r = await client.post("/api/index/folder", json={"path": str(path)})
            _refused(r, 403, "INDEX_ROOTS", "IMAGES_DIR")


@pytest.mark.parametrize("path", ["/", "/etc", "/proc/self", "~", "~/", "~/.ssh"])
async def test_folders_outside_the_roots_are_403_with_how_to_allow_them(
    api: httpx.AsyncClient, path: str
) -> None:
    r = await api.post("/api/index/folder", json={"path": path})
    _refused(r, 403, "INDEX_ROOTS")


@pytest.mark.parametrize(
    "path",
    [
        "~nosuchuser",
        "~nosuchuser/photos",
        "~root/photos",
        "/tmp/a\0b",
        "\0",
        "relative/dir",
        "./allowed",
    ],
)
async def test_paths_that_name_no_absolute_folder_are_400(
    api: httpx.AsyncClient, library: Path, path: str
) -> None:
    r = await api.post("/api/index/folder", json={"path": path})
    _refused(r, 400)
    assert r.json()["error"]["code"] == "bad_request"
    inside = f"{library / 'allowed'}\0/sub"
    _refused(await api.post("/api/index/folder", json={"path": inside}), 400)


@pytest.mark.parametrize(
    "extensions",
    [[".pem"], ["env"], [".jpg", ".key"], [".txt"], ["*"], [".tar.gz"], [".jpg\0"], [".svg"]],
)
async def test_extensions_outside_the_decoded_formats_are_422(
    api: httpx.AsyncClient, library: Path, extensions: list[str]
) -> None:
    # A caller-chosen extension made the batch errors list non-image files (.pem, .env).
    body = {"path": str(library / "allowed"), "extensions": extensions}
    r = await api.post("/api/index/folder", json=body)
    _refused(r, 422, *DEFAULT_EXTENSIONS)


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process may not list: one of mode 000, or, as a root that reads those
    anyway, the kernel's ``map_files`` of a process (of another process's, root in a
    container is refused); skipped where this process can list them all."""
    locked = tmp_path / "allowed" / "locked"
    locked.mkdir(parents=True)
    (locked / "a.png").write_bytes(_png())
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            yield locked
            return
        for pid in (os.getpid(), 1):
            maps = Path(f"/proc/{pid}/map_files")
            try:
                os.listdir(maps)
            except PermissionError:
                yield maps
                return
            except OSError:
                pass
        pytest.skip("this process may list every folder")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("recursive", [True, False])
async def test_a_folder_the_server_may_not_read_is_403(
    inprocess: InProcessStack,
    redis_server: Proc,
    library: Path,
    unreadable: Path,
    recursive: bool,
) -> None:
    roots = [library / "allowed", unreadable.parent]
    async with _serve(inprocess, redis_server, library, index_roots=roots) as client:
        body = {"path": str(unreadable), "recursive": recursive}
        r = await client.post("/api/index/folder", json=body)
        _refused(r, 403, "may not read")


async def test_an_unreadable_sub_folder_stops_the_walk_with_403(
    api: httpx.AsyncClient, library: Path, unreadable: Path
) -> None:
    if not unreadable.is_relative_to(library):
        pytest.skip("needs a sub-folder of mode 000 that this process may not list")
    r = await api.post("/api/index/folder", json={"path": str(library / "allowed")})
    _refused(r, 403, "may not read", "locked")


def _padded_png(pad: int) -> bytes:
    """A small PNG carrying ``pad`` bytes in a private ancillary chunk: quick to decode,
    slow enough to write that concurrent stores overlap."""
    png = _png((9, 99, 199))
    body = b"\x00" * pad
    chunk = struct.pack(">I", pad) + b"prVt" + body + struct.pack(">I", zlib.crc32(b"prVt" + body))
    return png[:33] + chunk + png[33:]  # after the signature and IHDR


async def test_concurrent_identical_uploads_store_one_intact_file(
    inprocess: InProcessStack, redis_server: Proc, library: Path
) -> None:
    # They raced on one temporary name: a 500, or a truncated file (a permanent dead letter).
    data = _padded_png(4 * 1024 * 1024)
    async with _serve(inprocess, redis_server, library, cpu_threads=8) as client:

        async def upload() -> httpx.Response:
            return await client.post(
                "/api/index/upload", files=[("files", ("same.png", data, "image/png"))]
            )

        answers = await asyncio.gather(*(upload() for _ in range(20)))
    assert [r.status_code for r in answers] == [202] * 20, [r.text for r in answers]
    uploads = library / "data" / "uploads"
    stored = [p for p in uploads.rglob("*") if p.is_file()]
    assert len(stored) == 1, stored
    assert stored[0].suffix == ".png" and stored[0].read_bytes() == data
    # Readable as a file written with open() would be (the workers may run as another user).
    probe = library / "probe"
    probe.write_bytes(b"")
    assert stored[0].stat().st_mode & 0o777 == probe.stat().st_mode & 0o777
