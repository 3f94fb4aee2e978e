"""``GET /health`` of the search API: the original system's fields (``status``,
``gpu_available``, ``qdrant_connected``, ``collections``) beside our ``checks``, and what
each says when a dependency is down, answered within the checks' bound.

The real app on the test's loop with the in-process stack's encoder; a dependency that is
down is down at its transport or its port (nothing of ours is replaced).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imgsearch_api.app import create_app
from imgsearch_devstack import free_port
from tests.support.handoff import forge, image_point
from tests.support.inprocess import InProcessStack, served

#: A health check that has not answered by then hangs (each check is bounded far below).
HANG_S = 30.0


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The encoder's transport, until ``down`` is set: then every connection is refused."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def _assert_shape(body: dict[str, object]) -> None:
    assert set(body) == {"status", "gpu_available", "qdrant_connected", "collections", "checks"}
    assert body["status"] in ("healthy", "degraded")
    assert isinstance(body["gpu_available"], bool)
    assert isinstance(body["qdrant_connected"], bool)
    checks = body["checks"]
    assert isinstance(checks, dict) and set(checks) == {"redis", "encoder", "vector_store"}


async def test_a_healthy_stack_says_so_with_the_original_fields(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    app = inprocess.create_api(inprocess.api_settings(data_dir=tmp_path / "data"))
    async with served(app) as api:
        empty = (await api.get("/health")).json()
        points = [image_point(f"5e000000-0000-4000-8000-00000000000{i}", "/x", "h1") for i in "12"]
        assert (await forge(api, "h1", points)).status_code == 200
        assert (await forge(api, "h2", points[:1])).status_code == 200
        r = await api.get("/health")
        status = (await api.get("/api/status")).json()
    assert r.status_code == 200
    body = r.json()
    _assert_shape(body)
    assert (body["status"], body["gpu_available"], body["qdrant_connected"]) == (
        "healthy",
        False,  # the in-process encoder runs on the CPU
        True,
    )
    assert empty["collections"] == {"full_images": 0, "partial_images": 0}
    assert body["collections"] == {"full_images": 3, "partial_images": 0}
    assert body["collections"] == status["indexed_images"]
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["encoder"] == "ok (ViT-B-32/random on cpu)"
    assert body["checks"]["vector_store"] == "ok (EdgeVectorStore)"


async def test_an_encoder_that_stops_answering_is_reported(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    """Asked at each call, not remembered: an encoder that answered once and is then down
    makes the health degraded, and takes ``gpu_available`` with it."""
    transport = SwitchableTransport(inprocess.encoder_transport())
    settings = inprocess.api_settings(data_dir=tmp_path / "data")
    app = create_app(settings, encoder_transport=transport)
    async with served(app) as api:
        before = (await api.get("/health")).json()
        transport.down = True
        r = await asyncio.wait_for(api.get("/health"), HANG_S)
    assert before["checks"]["encoder"].startswith("ok")
    assert r.status_code == 200
    body = r.json()
    assert body["checks"]["encoder"] == "unavailable"
    assert before["status"] == "healthy"
    _assert_shape(body)
    assert (body["status"], body["gpu_available"]) == ("degraded", False)
    assert body["checks"]["redis"] == "ok" and body["qdrant_connected"] is True


@pytest.mark.parametrize("how", ["refused", "hung"])
async def test_a_vector_store_that_does_not_answer_is_reported(
    inprocess: InProcessStack, tmp_path: Path, silent_port: int, how: str
) -> None:
    """A Qdrant server that refuses connections, or accepts and never answers: health says
    so (each check is cut at ``HEALTH_CHECK_S``), ``collections`` is null (unknown, not zero)."""
    port = free_port() if how == "refused" else silent_port
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data", qdrant_url=f"http://127.0.0.1:{port}"
    )
    async with served(inprocess.create_api(settings)) as api:
        r = await asyncio.wait_for(api.get("/health"), HANG_S)
    assert r.status_code == 200
    body = r.json()
    _assert_shape(body)
    assert (body["status"], body["qdrant_connected"], body["collections"]) == (
        "degraded",
        False,
        None,
    )
    assert body["checks"]["vector_store"] == "unavailable"
    assert body["checks"]["encoder"].startswith("ok")
    assert str(port) not in r.text
