"""Auth corpus: every write and admin route, every internal route, every wrong credential.

The routes come from the app's own route table (``app.routes``, flattened by
``tests.support.routes``), so a route added later is tried too: a write route without the
key check fails here. The rule the table is judged by:

- **reads** (open to anyone): ``GET`` outside ``/api/index`` and ``/internal``, and the
  searches (``POST /api/search/*``, which change nothing);
- **internal** (``/internal/*``): the internal token on the internal listener only; the
  public listener answers 404 whatever the request carries;
- **writes and admin** (everything else, ``/api/index/*`` included, dead letters too):
  401 in the common error shape without ``API_KEY``, and nothing is queued or stored.

The app under test is the real search API with ``API_KEY`` set, on its own Redis database
(no worker reads it) and the in-process stack's encoder.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from redis.asyncio import Redis

from imgsearch_common.jobs import PREFIX
from tests.support.inprocess import (
    API_INTERNAL_URL,
    API_URL,
    ENCODER_URL,
    TOKEN,
    InProcessStack,
    served,
)
from tests.support.routes import concrete, route_table

KEY = "auth-corpus-api-key-5d1c"
COLLECTION = "authcorpus"
#: The Redis database of this module's app (no worker reads it; flushed around each test).
REDIS_DB = "10"
READ_PREFIXES_OF_POST = ("/api/search/",)


def _kind(method: str, path: str) -> str:
    if path == "/internal" or path.startswith("/internal/"):
        return "internal"
    if path == "/api/index" or path.startswith("/api/index/"):
        return "write"
    if method == "GET" or (method == "POST" and path.startswith(READ_PREFIXES_OF_POST)):
        return "read"
    return "write"


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


#: Credentials that must not open a write route: ``(label, headers, query)``.
WRONG_KEYS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("no credential", {}, {}),
    ("empty X-API-Key", {"X-API-Key": ""}, {}),
    ("wrong X-API-Key", {"X-API-Key": "nope"}, {}),
    ("key with a suffix", {"X-API-Key": KEY + "x"}, {}),
    ("key cut short", {"X-API-Key": KEY[:-1]}, {}),
    ("key upper-cased", {"X-API-Key": KEY.upper()}, {}),
    ("the internal token as the key", {"X-API-Key": TOKEN}, {}),
    (
        "wrong X-API-Key beside the right Bearer",
        {"X-API-Key": "nope", **{"Authorization": f"Bearer {KEY}"}},
        {},
    ),
    ("key as Authorization without a scheme", {"Authorization": KEY}, {}),
    ("Bearer without a token", {"Authorization": "Bearer"}, {}),
    ("Bearer and a space", {"Authorization": "Bearer "}, {}),
    ("Bearer glued to the key", {"Authorization": f"Bearer{KEY}"}, {}),
    ("wrong Bearer", {"Authorization": "Bearer nope"}, {}),
    ("Bearer with a suffix", {"Authorization": f"Bearer {KEY}x"}, {}),
    ("Bearer of the internal token", {"Authorization": f"Bearer {TOKEN}"}, {}),
    ("Basic of the key", {"Authorization": _basic(KEY)}, {}),
    ("Basic user:key", {"Authorization": _basic(f"user:{KEY}")}, {}),
    ("Token scheme", {"Authorization": f"Token {KEY}"}, {}),
    ("Digest scheme", {"Authorization": f'Digest username="{KEY}"'}, {}),
    ("key in Api-Key", {"Api-Key": KEY}, {}),
    ("key in X-Api-Token", {"X-Api-Token": KEY}, {}),
    ("key in X-Auth-Token", {"X-Auth-Token": KEY}, {}),
    ("key in Proxy-Authorization", {"Proxy-Authorization": f"Bearer {KEY}"}, {}),
    ("key in a cookie", {"Cookie": f"api_key={KEY}; X-API-Key={KEY}"}, {}),
    ("key in the query", {}, {"api_key": KEY, "x-api-key": KEY, "key": KEY}),
]
#: Credentials that must open them (the scheme of ``Authorization`` is case-insensitive).
RIGHT_KEYS: list[tuple[str, dict[str, str]]] = [
    ("X-API-Key", {"X-API-Key": KEY}),
    ("Bearer", {"Authorization": f"Bearer {KEY}"}),
    ("bearer", {"Authorization": f"bearer {KEY}"}),
    ("BEARER", {"Authorization": f"BEARER {KEY}"}),
]
#: Credentials that must not open an internal route on the internal listener.
WRONG_TOKENS: list[tuple[str, dict[str, str]]] = [
    ("no credential", {}),
    ("wrong Bearer", {"Authorization": "Bearer nope"}),
    ("token with a suffix", {"Authorization": f"Bearer {TOKEN}x"}),
    ("token without a scheme", {"Authorization": TOKEN}),
    ("token in X-API-Key", {"X-API-Key": TOKEN}),
    ("the API key as Bearer", {"Authorization": f"Bearer {KEY}"}),
    ("the API key in X-API-Key", {"X-API-Key": KEY}),
    ("Basic of the token", {"Authorization": _basic(TOKEN)}),
    ("token in a cookie", {"Cookie": f"token={TOKEN}"}),
]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 140, 220)).save(buf, format="PNG")
    return buf.getvalue()


def _request_for(method: str, path: str, photos_dir: Path) -> dict[str, Any]:
    """Arguments of ``httpx.AsyncClient.request`` for a request to ``method path`` that
    would be carried out with the right credential (unknown routes get an empty body)."""
    url = concrete(path)
    files = {"files": [("files", ("a.png", _png(), "image/png"))]}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/index/folder"): {
            "json": {"path": str(photos_dir), "collection": COLLECTION}
        },
        ("POST", "/api/index/upload"): {**files, "data": {"collection": COLLECTION}},
        ("POST", "/api/index/url"): {"json": {"url": "https://example.com/a.jpg"}},
        ("POST", "/api/index/dead-letters/requeue"): {"json": {}},
        ("POST", "/api/search/by-image"): {
            "files": [("file", ("q.png", _png(), "image/png"))],
            "data": {"collection": COLLECTION},
        },
        ("POST", "/api/search/by-text"): {"json": {"text": "a", "collection": COLLECTION}},
        ("POST", "/api/search/by-url"): {"json": {"url": "http://127.0.0.1/a.png"}},
    }
    default: dict[str, Any] = {} if method in ("GET", "DELETE") else {"json": {}}
    return {"method": method, "url": url, **bodies.get((method, path), default)}


def _unauthorized(r: httpx.Response) -> bool:
    if r.status_code != 401:
        return False
    body = r.json()
    return set(body) == {"error"} and body["error"].get("code") == "unauthorized"


@pytest.fixture
async def redis(inprocess: InProcessStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(inprocess.redis_url[:-1] + REDIS_DB)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def keyed(
    inprocess: InProcessStack, tmp_path: Path, redis: Redis
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data",
        api_key=KEY,
        redis_url=inprocess.redis_url[:-1] + REDIS_DB,
        rescore_top_k=0,
    )
    app = inprocess.create_api(settings)
    async with served(app) as client:
        yield app, client


async def _batches(redis: Redis) -> int:
    return len([k async for k in redis.scan_iter(match=f"{PREFIX}batch:*")])


def test_the_route_table_is_read_whole(inprocess: InProcessStack, tmp_path: Path) -> None:
    """The enumeration sees every kind, the known write and admin routes among them (an
    empty or partial table would pass every test below)."""
    table = route_table(inprocess.create_api(inprocess.api_settings(data_dir=tmp_path)))
    kinds = {route: _kind(*route) for route in table}
    assert {
        ("POST", "/api/index/folder"),
        ("POST", "/api/index/upload"),
        ("POST", "/api/index/url"),
        ("GET", "/api/index/batches/{batch_id}"),
        ("GET", "/api/index/dead-letters"),
        ("POST", "/api/index/dead-letters/requeue"),
        ("DELETE", "/api/images/{image_id}"),
        ("DELETE", "/api/collections/{name}"),
    } <= {route for route, kind in kinds.items() if kind == "write"}
    assert ("POST", "/internal/v1/upsert") in table
    assert {("GET", "/api/status"), ("POST", "/api/search/by-text"), ("GET", "/")} <= set(table)
    assert kinds[("GET", "/api/collections")] == "read"


async def test_write_and_admin_routes_refuse_every_wrong_key(
    keyed: tuple[FastAPI, httpx.AsyncClient], redis: Redis, photos_dir: Path, tmp_path: Path
) -> None:
    app, client = keyed
    writes = [route for route in route_table(app) if _kind(*route) == "write"]
    wrong: list[str] = []
    for method, path in writes:
        for label, headers, query in WRONG_KEYS:
            request = _request_for(method, path, photos_dir)
            r = await client.request(**request, headers=headers, params=query)
            if not _unauthorized(r):
                wrong.append(f"{method} {path}, {label}: {r.status_code} {r.text[:200]}")
    assert wrong == [], f"{len(wrong)} of {len(writes) * len(WRONG_KEYS)} got in:\n" + "\n".join(
        wrong
    )
    # Nothing was queued, kept or indexed.
    assert await _batches(redis) == 0
    uploads = tmp_path / "data" / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
    assert (await client.get("/api/status")).json()["collections"] == {}


async def test_the_right_key_opens_them(
    keyed: tuple[FastAPI, httpx.AsyncClient], photos_dir: Path
) -> None:
    """The control: the same requests with the key are carried out (or refused for what
    they ask, never for who asks), in every accepted spelling."""
    app, client = keyed
    writes = [route for route in route_table(app) if _kind(*route) == "write"]
    wrong: list[str] = []
    for method, path in writes:
        for label, headers in RIGHT_KEYS:
            r = await client.request(**_request_for(method, path, photos_dir), headers=headers)
            if r.status_code == 401 or r.status_code >= 500:
                wrong.append(f"{method} {path}, {label}: {r.status_code} {r.text[:200]}")
    assert wrong == []


async def test_reads_stay_open_without_a_key(
    keyed: tuple[FastAPI, httpx.AsyncClient], photos_dir: Path
) -> None:
    app, client = keyed
    reads = [route for route in route_table(app) if _kind(*route) == "read"]
    wrong: list[str] = []
    for method, path in reads:
        r = await client.request(**_request_for(method, path, photos_dir))
        if r.status_code in (401, 403) or r.status_code >= 500:
            wrong.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
    assert wrong == []
    assert len(reads) >= 8


async def test_internal_routes_need_the_token_on_the_internal_listener(
    keyed: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = keyed
    internal = [route for route in route_table(app) if _kind(*route) == "internal"]
    assert internal
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong: list[str] = []
    for method, path in internal:
        url = f"{API_INTERNAL_URL}{concrete(path)}"
        for label, headers in WRONG_TOKENS:
            r = await client.request(method, url, json={}, headers=headers)
            if not _unauthorized(r):
                wrong.append(f"{method} {path}, {label}: {r.status_code} {r.text[:200]}")
        # The control: the token is taken (the empty body is then what is refused).
        r = await client.request(method, url, json={}, headers=right)
        if r.status_code in (401, 404) or r.status_code >= 500:
            wrong.append(f"{method} {path}, the right token: {r.status_code} {r.text[:200]}")
        # From the public side: no such path, with any credential or none.
        for label, headers in [("the right token", right), ("the API key", {"X-API-Key": KEY})]:
            r = await client.request(method, f"{API_URL}{concrete(path)}", json={}, headers=headers)
            if r.status_code != 404:
                wrong.append(f"public {method} {path}, {label}: {r.status_code} {r.text[:200]}")
    assert wrong == []
    assert (await client.get("/api/status")).json()["collections"] == {}


async def test_the_encoders_routes_need_the_internal_token(inprocess: InProcessStack) -> None:
    """The encoder's work routes (every one but its probes) refuse wrong tokens too."""
    table = route_table(inprocess.encoder_app)
    work = [(m, p) for m, p in table if m == "POST"]
    assert work
    wrong: list[str] = []
    transport = inprocess.encoder_transport()
    async with httpx.AsyncClient(transport=transport, base_url=ENCODER_URL) as client:
        for method, path in work:
            for label, headers in WRONG_TOKENS:
                r = await client.request(method, concrete(path), json={}, headers=headers)
                if not _unauthorized(r):
                    wrong.append(f"{method} {path}, {label}: {r.status_code} {r.text[:200]}")
    assert wrong == []
