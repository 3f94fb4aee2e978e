"""Safe by default on a public address: the ``Host`` a request names (DNS rebinding), the
``Origin`` of browser writes (cross-site posts), the internal hand-off on a listener of its
own, and the refusal to start on a public address without ``API_KEY``.

The real app on the test's loop, behind ``httpx.ASGITransport``: the transport gives the app
the URL's host and port as the listener's (``scope["server"]``), so ``API_URL`` (port 80)
is the public listener and ``API_INTERNAL_URL`` (``INTERNAL_PORT``) the internal one.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgsearch_api.settings import ApiSettings
from imgsearch_devstack import free_port
from tests.support.inprocess import (
    API_INTERNAL_URL,
    API_URL,
    TOKEN,
    InProcessStack,
    served,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 90)).save(buf, format="PNG")
    return buf.getvalue()


@asynccontextmanager
async def _api(
    stack: InProcessStack, data_dir: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = stack.api_settings(data_dir=data_dir, rescore_top_k=0, **overrides)
    async with served(stack.create_api(settings)) as client:
        yield client


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _api(inprocess, tmp_path / "data") as client:
        yield client


def _refused(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body


def _upload(client: httpx.AsyncClient, **headers: str) -> Any:
    files = [("files", ("a.png", _png(), "image/png"))]
    return client.post("/api/index/upload", files=files, headers=headers)


# --- Host ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "api.evil.example",
        "0.0.0.0:8000",
        "",
    ],
)
async def test_a_host_the_server_does_not_answer_to_gets_400(
    api: httpx.AsyncClient, host: str
) -> None:
    # A page on evil.example whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends
    # its own name as Host: refused, whatever the path and method.
    _refused(await api.get("/api/status", headers={"Host": host}), 400)
    _refused(await api.get("/", headers={"Host": host}), 400)
    r = await api.post("/api/search/by-text", json={"text": "x"}, headers={"Host": host})
    _refused(r, 400)
    assert "ALLOWED_HOSTS" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:9999", "LOCALHOST:8000", "127.0.0.1:8000", "[::1]:8000", "api"]
)
async def test_loopback_names_and_allowed_hosts_pass_on_any_port(
    api: httpx.AsyncClient, host: str
) -> None:
    r = await api.get("/api/status", headers={"Host": host})
    assert r.status_code == 200, r.text


async def test_the_host_is_refused_before_the_body_is_read(api: httpx.AsyncClient) -> None:
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield b"x" * 1024

    headers = {"Host": "evil.example", "Content-Type": "application/octet-stream"}
    r = await api.post("/api/index/upload", content=body(), headers=headers)
    _refused(r, 400)
    assert read == []


async def test_a_star_turns_the_host_check_off(inprocess: InProcessStack, tmp_path: Path) -> None:
    async with _api(inprocess, tmp_path / "data", allowed_hosts=["*"]) as client:
        r = await client.get("/api/status", headers={"Host": "anything.example"})
        assert r.status_code == 200, r.text


async def test_the_bound_address_and_listed_names_are_allowed(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    settings = {"api_host": "192.0.2.7", "allowed_hosts": ["api", "search.example", "*.corp"]}
    async with _api(inprocess, tmp_path / "data", **settings) as client:
        for host in ("192.0.2.7:8000", "search.example", "Search.Example:443", "a.b.corp"):
            r = await client.get("/api/status", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        for host in ("corp", "192.0.2.8", "search.example.evil"):
            _refused(await client.get("/api/status", headers={"Host": host}), 400)


def test_allowed_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "Search.Example, search-api,,10.0.0.5")
    monkeypatch.setenv("API_HOST", "::1")
    hosts = ApiSettings().trusted_hosts()
    for name in ("localhost", "127.0.0.1", "[::1]", "search.example", "search-api", "10.0.0.5"):
        assert name in hosts, hosts
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.delenv("ALLOWED_HOSTS")
    assert set(ApiSettings().trusted_hosts()) == {"localhost", "127.0.0.1", "[::1]"}


# --- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "https://localhost.evil.example"},
        {"Origin": "null"},
        {"Origin": "file://"},
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_writes_are_refused_and_store_nothing(
    api: httpx.AsyncClient, tmp_path: Path, headers: dict[str, str]
) -> None:
    r = await _upload(api, **headers)
    _refused(r, 403)
    assert r.json()["error"]["code"] == "forbidden"
    assert not (tmp_path / "data" / "uploads").exists()
    _refused(await api.post("/api/search/by-text", json={"text": "x"}, headers=headers), 403)
    # Every method that changes something, not only POST.
    _refused(await api.put("/api/index/folder", json={"path": "/"}, headers=headers), 403)
    _refused(await api.delete("/api/index/dead-letters", headers=headers), 403)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the CLI, curl, the workers
        {"Origin": "http://api"},  # the page at / (its fetches carry its own origin)
        {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://127.0.0.1:8443"},
        {"Origin": "http://[::1]:8000"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ],
)
async def test_same_origin_and_header_less_writes_pass(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await _upload(api, **headers)
    assert r.status_code == 202, r.text


async def test_reads_are_not_checked_for_their_origin(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/status", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200, r.text


async def test_allowed_origins_add_exact_sites(inprocess: InProcessStack, tmp_path: Path) -> None:
    settings = {"allowed_origins": ["https://app.example", "HTTP://Tools.Example:8080/"]}
    async with _api(inprocess, tmp_path / "data", **settings) as client:
        for origin in ("https://app.example", "http://tools.example:8080", "http://localhost"):
            assert (await _upload(client, Origin=origin)).status_code == 202, origin
        for origin in ("http://app.example", "https://app.example:444", "https://x.app.example"):
            _refused(await _upload(client, Origin=origin), 403)
    async with _api(inprocess, tmp_path / "other", allowed_origins=["*"]) as client:
        assert (await _upload(client, Origin="https://anywhere.example")).status_code == 202


# --- the internal listener -----------------------------------------------------------------


def _handoff(collection: str) -> dict[str, Any]:
    image = "2b4e28ba-2fa1-11d2-883f-0016d3cca427"
    payload = {
        "filename": "a.png",
        "original_path": "/photos/a.png",
        "file_size": 10,
        "indexed_at": 0.0,
        "width": 32,
        "height": 32,
        "collection": collection,
    }
    full = {"id": image, "vector": [1.0, 0.0, 0.0, 0.0], "payload": payload}
    return {"collection": collection, "full": [full], "windows": []}


@pytest.mark.parametrize(
    "path", ["/internal/v1/upsert", "/%69nternal/v1/upsert", "/internal", "/internal/"]
)
async def test_the_public_listener_has_no_internal_paths(api: httpx.AsyncClient, path: str) -> None:
    r = await api.post(f"{API_URL}{path}", json=_handoff("leak"), headers=AUTH)
    _refused(r, 404)
    assert (await api.get("/api/status")).json()["collections"] == {}


async def test_the_internal_listener_serves_the_hand_off_and_health_only(
    api: httpx.AsyncClient,
) -> None:
    url = f"{API_INTERNAL_URL}/internal/v1/upsert"
    _refused(await api.post(url, json=_handoff("handoff")), 401)
    r = await api.post(url, json=_handoff("handoff"), headers=AUTH)
    assert r.status_code == 200 and r.json() == {"full": 1, "windows": 0}, r.text
    assert (await api.get(f"{API_INTERNAL_URL}/health")).status_code == 200
    for path in ("/", "/api/status", "/metrics", "/docs"):
        _refused(await api.get(f"{API_INTERNAL_URL}{path}"), 404)
    _refused(await api.post(f"{API_INTERNAL_URL}/api/index/upload"), 404)
    counts = (await api.get("/api/status")).json()["collections"]["handoff"]
    assert counts == {"full_images": 1, "partial_images": 0}


# --- start-up --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost"])
def test_loopback_addresses_need_no_api_key(host: str) -> None:
    from imgsearch_api.security import exposure_problem

    assert exposure_problem(ApiSettings(api_host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "192.0.2.1", "search.example"])
def test_other_addresses_need_an_api_key(host: str) -> None:
    from imgsearch_api.security import exposure_problem

    problem = exposure_problem(ApiSettings(api_host=host))
    assert problem is not None and "API_KEY" in problem and "API_HOST" in problem
    assert exposure_problem(ApiSettings(api_host=host, api_key="k" * 32)) is None


def _start_api(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_HOST")}
    full = {
        **base,
        "DATA_DIR": str(tmp_path),
        "API_PORT": str(free_port()),
        "INTERNAL_PORT": str(free_port()),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "imgsearch_api"],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"API_HOST": "0.0.0.0"}, lambda err: "API_KEY" in err and "0.0.0.0" in err),
        ({"API_HOST": "127.0.0.1", "API_PORT": "many"}, lambda err: "API_PORT" in err.upper()),
    ],
    ids=["public-without-key", "bad-setting"],
)
def test_the_api_refuses_to_start_with_a_message_not_a_traceback(
    tmp_path: Path, env: dict[str, str], says: Callable[[str], bool]
) -> None:
    done = _start_api(tmp_path, **env)
    assert done.returncode not in (0, None), done
    assert says(done.stderr), done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert not (tmp_path / "index").exists()  # refused before anything was opened
