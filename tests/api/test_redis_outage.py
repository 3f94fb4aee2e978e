"""Redis down at the search API: the queue's endpoints answer 503 with ``Retry-After`` (never
a 500, never the server's address), searches and image serving go on, ``/health`` says
``degraded``.

The real app on the test's loop, its ``REDIS_URL`` a local port where nothing listens (a
Redis that is down), its encoder the in-process stack's.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from imgsearch_devstack import free_port
from tests.support.inprocess import API_INTERNAL_URL, TOKEN, InProcessStack, served

PHOTO_HOST = "photos.example"
COLLECTION = "outage"
#: A request that has not answered by then hangs (the API bounds each Redis call far below).
HANG_S = 60.0


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _remote_web() -> tuple[httpx.MockTransport, object]:
    """A fake public web where ``photos.example`` serves one PNG."""

    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_png(), headers={"Content-Type": "image/png"})

    return httpx.MockTransport(handler), resolver


class Outage:
    def __init__(self, client: httpx.AsyncClient, port: int, roots: Path) -> None:
        self.client, self.port, self.roots = client, port, roots


@pytest.fixture
async def outage(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[Outage]:
    port = free_port()  # nothing listens there: Redis is down
    roots = tmp_path / "allowed"
    roots.mkdir()
    (roots / "a.png").write_bytes(_png())
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data",
        redis_url=f"redis://127.0.0.1:{port}/0",
        index_roots=[roots],
    )
    transport, resolver = _remote_web()
    app = inprocess.create_api(settings, url_transport=transport, url_resolver=resolver)
    async with served(app) as client:
        yield Outage(client, port, roots)


def _unavailable(r: httpx.Response, port: int) -> None:
    assert r.status_code == 503, (r.request.url, r.status_code, r.text)
    assert float(r.headers["Retry-After"]) > 0
    error = r.json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert "127.0.0.1" not in r.text and str(port) not in r.text, r.text


async def test_the_queues_endpoints_answer_503_with_retry_after(outage: Outage) -> None:
    api, port = outage.client, outage.port
    r = await api.post("/api/index/folder", json={"path": str(outage.roots)})
    _unavailable(r, port)
    files = [("files", ("a.png", _png(), "image/png"))]
    _unavailable(await api.post("/api/index/upload", files=files), port)
    r = await api.post("/api/index/url", json={"url": f"http://{PHOTO_HOST}/a.png"})
    _unavailable(r, port)
    _unavailable(await api.get("/api/index/batches/x"), port)
    _unavailable(await api.get("/api/index/dead-letters"), port)
    _unavailable(await api.post("/api/index/dead-letters/requeue", json={}), port)
    _unavailable(await api.get("/api/status"), port)
    # Bad input is still told apart from the outage.
    r = await api.post("/api/index/folder", json={"path": "relative"})
    assert r.status_code == 400


async def test_health_says_degraded_and_names_redis(outage: Outage) -> None:
    r = await outage.client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"] == "unavailable"
    assert body["checks"]["encoder"].startswith("ok")


async def test_searches_and_image_serving_go_on(outage: Outage) -> None:
    api = outage.client
    image_id = "44444444-0000-0000-0000-000000000001"
    vector = np.random.default_rng(0).standard_normal(512)
    payload = {
        "stored_path": str(outage.roots / "a.png"),
        "original_path": str(outage.roots / "a.png"),
        "filename": "a.png",
        "file_size": 1,
        "indexed_at": 0.0,
        "width": 64,
        "height": 64,
        "collection": COLLECTION,
    }
    point = {"id": image_id, "vector": list(vector / np.linalg.norm(vector)), "payload": payload}
    r = await api.post(
        f"{API_INTERNAL_URL}/internal/v1/upsert",
        json={"collection": COLLECTION, "full": [point]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text
    r = await api.post("/api/search/by-text", json={"text": "a cat", "collection": COLLECTION})
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["results"]] == [image_id]
    r = await api.post(
        "/api/search/by-image",
        files={"file": ("q.png", _png(), "image/png")},
        data={"collection": COLLECTION},
    )
    assert r.status_code == 200, r.text
    served_image = await api.get(f"/api/image/{image_id}?collection={COLLECTION}")
    assert served_image.status_code == 200, served_image.text
    assert served_image.content == _png()


@pytest.fixture
async def hung_redis(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[Outage]:
    """A Redis that accepts connections and never answers (stopped, or a black hole)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        settings = inprocess.api_settings(
            data_dir=tmp_path / "data", redis_url=f"redis://127.0.0.1:{port}/0"
        )
        async with served(inprocess.create_api(settings)) as client:
            yield Outage(client, port, tmp_path)


async def test_a_redis_that_never_answers_fails_requests_instead_of_hanging_them(
    hung_redis: Outage,
) -> None:
    api = hung_redis.client
    r = await asyncio.wait_for(api.get("/health"), HANG_S)
    assert r.status_code == 200
    assert r.json()["checks"]["redis"] == "unavailable"
    _unavailable(await asyncio.wait_for(api.get("/api/index/batches/x"), HANG_S), hung_redis.port)
