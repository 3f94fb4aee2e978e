"""API key on write endpoints, internal token on the hand-off, image serving roots.

Runs the real search-API app on the test's loop (its own Qdrant Edge shard in a temporary
directory), wired to the session's real Redis and the in-process stack's encoder.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from imgsearch_api.settings import ApiSettings
from tests.support.inprocess import API_INTERNAL_URL, InProcessStack, served
from tests.support.inprocess import TOKEN as STACK_TOKEN

KEY = "test-api-key"
TOKEN = "test-internal-token"


def _settings(stack: InProcessStack, data_dir: Path, **kw: object) -> ApiSettings:
    return stack.api_settings(data_dir=data_dir, **kw)


def _create_app(stack: InProcessStack, settings: ApiSettings, **kw: Any) -> FastAPI:
    return stack.create_api(settings, **kw)


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with served(app) as client:
        yield client


@pytest.fixture
async def keyed(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = _create_app(inprocess, _settings(inprocess, tmp_path / "data", api_key=KEY))
    async for client in _client(app):
        yield client


def _payload(stored_path: str) -> dict[str, object]:
    """A complete image payload (the hand-off is typed) whose file is ``stored_path``."""
    return {
        "stored_path": stored_path,
        "original_path": stored_path,
        "filename": "x.png",
        "file_size": 1,
        "indexed_at": 0.0,
        "width": 64,
        "height": 64,
        "collection": "forged",
    }


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


async def test_write_endpoints_need_the_api_key(keyed: httpx.AsyncClient, photos_dir: Path) -> None:
    body = {"path": str(photos_dir), "collection": "keytest"}
    assert (await keyed.post("/api/index/folder", json=body)).status_code == 401
    wrong = await keyed.post("/api/index/folder", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    files = [("files", ("a.png", _png(), "image/png"))]
    assert (await keyed.post("/api/index/upload", files=files)).status_code == 401
    url = {"url": "https://example.com/a.jpg"}
    assert (await keyed.post("/api/index/url", json=url)).status_code == 401
    ok = await keyed.post(
        "/api/index/upload", files=files, data={"collection": "keytest"}, headers={"X-API-Key": KEY}
    )
    assert ok.status_code == 202, ok.text
    bearer = await keyed.get(
        f"/api/index/batches/{ok.json()['batch_id']}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert bearer.status_code == 200
    # Searching stays open (the default collection: keytest exists once its batch is done).
    search = await keyed.post("/api/search/by-text", json={"text": "x"})
    assert search.status_code == 200


async def test_forged_paths_are_never_served(keyed: httpx.AsyncClient, tmp_path: Path) -> None:
    outside = "/etc/passwd"
    image_id = "11111111-2222-3333-4444-555555555555"
    point = {
        "id": image_id,
        "vector": [1.0] + [0.0] * 511,
        "payload": {"stored_path": outside, "original_path": outside, "filename": "passwd"},
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = await keyed.post(
        f"{API_INTERNAL_URL}/internal/v1/upsert",
        json={"collection": "forged", "full": [point], "windows": []},
        headers=auth,
    )
    assert r.status_code == 401  # the token is the stack's, not this one
    r = await keyed.post(
        f"{API_INTERNAL_URL}/internal/v1/upsert", json={"collection": "forged", "full": [point]}
    )
    assert r.status_code == 401


async def test_image_outside_roots_is_404(inprocess: InProcessStack, tmp_path: Path) -> None:
    app = _create_app(inprocess, _settings(inprocess, tmp_path / "data"))
    auth = {"Authorization": f"Bearer {STACK_TOKEN}"}
    inside = tmp_path / "data" / "uploads" / "ok.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(_png())
    points = [
        ("11111111-2222-3333-4444-555555555555", "/etc/passwd"),
        (
            "11111111-2222-3333-4444-666666666666",
            str(tmp_path / "data" / "uploads" / ".." / ".." / "x"),
        ),
        ("11111111-2222-3333-4444-777777777777", str(inside)),
    ]
    async for client in _client(app):
        for i, (pid, path) in enumerate(points):
            vec = [0.0] * 512
            vec[i] = 1.0
            body = {
                "collection": "forged",
                "full": [{"id": pid, "vector": vec, "payload": _payload(path)}],
            }
            r = await client.post(f"{API_INTERNAL_URL}/internal/v1/upsert", json=body, headers=auth)
            assert r.status_code == 200, r.text
        assert (await client.get(f"/api/image/{points[0][0]}?collection=forged")).status_code == 404
        assert (await client.get(f"/api/image/{points[1][0]}?collection=forged")).status_code == 404
        served = await client.get(f"/api/image/{points[2][0]}?collection=forged")
        assert served.status_code == 200 and served.content == _png()


async def test_internal_endpoints_closed_without_a_token(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    settings = _settings(inprocess, tmp_path / "data")
    settings.internal_token = None
    app = _create_app(inprocess, settings)
    async for client in _client(app):
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            r = await client.post(
                f"{API_INTERNAL_URL}/internal/v1/upsert", json={"collection": "x"}, headers=headers
            )
            assert r.status_code == 401


def _remote_web(photo: bytes) -> tuple[httpx.MockTransport, object]:
    """A fake public web: public.example serves a photo and a redirect to loopback."""

    async def resolver(host: str, port: int) -> list[str]:
        return {"public.example": ["93.184.216.34"], "rebind.example": ["93.184.216.35"]}.get(
            host, ["127.0.0.1"]
        )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host in ("93.184.216.34", "93.184.216.35"), request.url
        if request.url.path == "/photo.jpg":
            return httpx.Response(200, content=photo, headers={"Content-Type": "image/jpeg"})
        if request.url.path == "/to-loopback":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1:8000/api/status"})
        if request.url.path == "/to-name":
            return httpx.Response(302, headers={"Location": "http://localhost/x.jpg"})
        return httpx.Response(404)

    return httpx.MockTransport(handler), resolver


async def test_by_url_follows_only_public_redirects(
    inprocess: InProcessStack, tmp_path: Path, photos_dir: Path
) -> None:
    transport, resolver = _remote_web((photos_dir / "coffee.jpg").read_bytes())
    app = _create_app(
        inprocess,
        _settings(inprocess, tmp_path / "data"),
        url_transport=transport,
        url_resolver=resolver,  # type: ignore[arg-type]
    )
    async for client in _client(app):
        ok = await client.post(
            "/api/search/by-url",
            json={"url": "http://public.example/photo.jpg"},
        )
        assert ok.status_code == 200, ok.text
        for path in ("/to-loopback", "/to-name"):
            r = await client.post(
                "/api/search/by-url", json={"url": f"http://public.example{path}"}
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "url_refused"
        missing = await client.post(
            "/api/search/by-url", json={"url": "http://public.example/nope"}
        )
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "url_fetch_failed"
