"""The original system's API, replayed: every request its README documents
(``../shared/seed/SEED-README.md``: "API Reference", "Response Format", "Monitoring &
Analytics", "Health Checks"), sent as its clients send them — no collection, the README's
own bodies — and every field it documents checked for presence and type. Each answer also
validates against our own OpenAPI document (``app.openapi()``, by ``tests/support/openapi``:
``jsonschema`` is not installed here), so our richer fields stay declared.

The real app (its own Edge index, its URL fetcher's network and DNS faked at the transport,
as in ``test_security.py``), a real worker loop indexing into it through the hand-off, the
in-process stack's encoder, a real Redis.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from PIL import Image
from redis.asyncio import Redis

from imgsearch_devstack import find_redis
from imgsearch_devstack.photos import load_photos
from tests.conftest import RedisServers
from tests.support.inprocess import InProcessStack, served
from tests.support.openapi import check_response, validate
from tests.support.worker_harness import Switch, running_worker, wait_for, worker_settings

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

#: The README's URL search body, verbatim.
URL_BODY = {
    "url": "https://example.com/image.jpg",
    "use_full_matching": True,
    "use_partial_matching": True,
    "remove_text": False,
    "enhance_image": False,
    "limit": 10,
}
#: The by-image options the README documents, each as a client sends a form field.
IMAGE_OPTIONS: list[dict[str, str]] = [
    {},
    {"use_full_matching": "false"},
    {"use_partial_matching": "false"},
    {"remove_text": "true"},
    {"enhance_image": "true"},
    {"limit": "1"},
    {"limit": "3"},
    # Python clients that format booleans with str().
    {"use_full_matching": "True", "use_partial_matching": "False"},
    {
        "use_full_matching": "true",
        "use_partial_matching": "true",
        "remove_text": "false",
        "enhance_image": "false",
        "limit": "10",
    },
]
#: Files of the indexed folder, by their name under it, and the photo each one is.
FOLDER = {
    "cat.jpg": "chelsea",
    "2024/summer/cat.jpg": "coffee",
    "2024/summer/rocket.png": "rocket",
    "astronaut.jpg": "astronaut",
}
SEED_MATCH_TYPES = {"full", "partial_to_full", "full_and_partial", "contains"}
#: A redis database no other test uses (the in-process stack's is 1).
REDIS_DB = "8"


def _encoded(image: Image.Image, name: str) -> bytes:
    buf = io.BytesIO()
    small = image.convert("RGB").resize((image.width // 2, image.height // 2))
    small.save(buf, format="PNG" if name.endswith(".png") else "JPEG", quality=90)
    return buf.getvalue()


@dataclass
class Seed:
    app: FastAPI
    client: httpx.AsyncClient
    spec: dict[str, Any]
    folder: Path
    #: The bytes of each indexed file, by its name under the folder; the upload: "upload".
    content: dict[str, bytes]

    async def checked(
        self, method: str, template: str, target: str, **kwargs: Any
    ) -> httpx.Response:
        """Send ``method target``; its answer must validate against the document's
        ``template`` route."""
        r = await self.client.request(method, target, **kwargs)
        problems = check_response(self.spec, method, template, r)
        assert problems == [], (target, r.status_code, problems)
        return r


def _remote_web(photo: bytes) -> tuple[httpx.MockTransport, Any]:
    """A fake public web where example.com serves ``photo`` at the README's URL."""

    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"] if host == "example.com" else ["127.0.0.1"]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "93.184.216.34", request.url
        if request.url.path == "/image.jpg":
            return httpx.Response(200, content=photo, headers={"Content-Type": "image/jpeg"})
        return httpx.Response(404)

    return httpx.MockTransport(handler), resolver


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seed(
    inprocess: InProcessStack,
    redis_servers: RedisServers,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Seed]:
    """The folder indexed, then one more ``cat.jpg`` uploaded (the most recent of that
    name), into the default collection, as the original system's clients use it."""
    lib = tmp_path_factory.mktemp("seed")
    folder = lib / "photos"
    photos = load_photos()
    content: dict[str, bytes] = {}
    for name, photo in FOLDER.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        content[name] = _encoded(photos[photo], name)
        (folder / name).write_bytes(content[name])
    content["upload"] = _encoded(photos["hubble_deep_field"], "cat.jpg")
    redis_url = redis_servers.get(find_redis()).url[:-1] + REDIS_DB
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    await redis.aclose()
    settings = inprocess.api_settings(
        data_dir=lib / "data", redis_url=redis_url, index_roots=[folder]
    )
    transport, resolver = _remote_web(content["astronaut.jpg"])
    app = inprocess.create_api(settings, url_transport=transport, url_resolver=resolver)
    async with served(app) as client:
        workers = worker_settings(redis_url, worker_name="seed-worker", max_windows=4)
        index = Switch(httpx.ASGITransport(app=app))
        async with running_worker(inprocess, workers, index=index):
            r = await client.post("/api/index/folder", json={"path": str(folder)})
            assert r.status_code == 202, r.text
            await _finished(client, r.json()["batch_id"], len(FOLDER))
            files = [("files", ("cat.jpg", content["upload"], "image/jpeg"))]
            r = await client.post("/api/index/upload", files=files)
            assert r.status_code == 202, r.text
            await _finished(client, r.json()["batch_id"], 1)
        yield Seed(app, client, app.openapi(), folder, content)


async def _finished(client: httpx.AsyncClient, batch_id: str, total: int) -> None:
    async def done() -> bool:
        status = (await client.get(f"/api/index/batches/{batch_id}")).json()
        return bool(status["finished"])

    await wait_for(done, within=240, poll_s=0.2)
    status = (await client.get(f"/api/index/batches/{batch_id}")).json()
    assert (status["done"], status["failed"]) == (total, 0), status


def _seed_search_fields(body: dict[str, Any], limit: int) -> None:
    """The README's "Response Format": each documented field, with its type."""
    assert isinstance(body["results"], list) and len(body["results"]) <= limit
    assert isinstance(body["processing_time_ms"], float)
    # "Monitoring & Analytics": 0 without a GPU.
    assert type(body["gpu_memory_used"]) is int and body["gpu_memory_used"] == 0
    for result in body["results"]:
        assert isinstance(result["id"], str)
        assert isinstance(result["score"], float)
        metadata = result["metadata"]
        assert isinstance(metadata["filename"], str)
        assert isinstance(metadata["original_path"], str)
        assert type(metadata["file_size"]) is int
        assert isinstance(metadata["indexed_at"], float)
        assert type(result["matched_regions"]) is int
        # A number where windows matched; null where none did (see the README's table).
        assert result["avg_score"] is None or isinstance(result["avg_score"], float)
        assert (result["avg_score"] is None) == (result["matched_regions"] == 0)
        assert result["match_type"] in SEED_MATCH_TYPES


@pytest.mark.parametrize("options", IMAGE_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
async def test_search_by_image_with_each_documented_option(
    seed: Seed, options: dict[str, str]
) -> None:
    query = seed.content["2024/summer/rocket.png"]
    r = await seed.checked(
        "POST",
        "/api/search/by-image",
        "/api/search/by-image",
        files={"file": ("query.png", query, "image/png")},
        data=options,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    limit = int(options.get("limit", "10"))
    _seed_search_fields(body, limit)
    assert len(body["results"]) == min(limit, len(FOLDER) + 1)  # no threshold by default
    # The indexed copy of the query comes first, from the default collection.
    top = body["results"][0]
    assert top["metadata"]["original_path"] == str(seed.folder / "2024/summer/rocket.png")
    if options.get("use_partial_matching", "true").lower() == "false":
        assert all(res["matched_regions"] == 0 for res in body["results"])


async def test_search_by_url_with_the_readme_body(seed: Seed) -> None:
    r = await seed.checked("POST", "/api/search/by-url", "/api/search/by-url", json=URL_BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    _seed_search_fields(body, URL_BODY["limit"])  # type: ignore[arg-type]
    assert body["results"][0]["metadata"]["filename"] == "astronaut.jpg"


async def test_system_status(seed: Seed) -> None:
    r = await seed.checked("GET", "/api/status", "/api/status")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    indexed = body["indexed_images"]
    assert type(indexed["full_images"]) is int and type(indexed["partial_images"]) is int
    assert indexed["full_images"] == len(FOLDER) + 1
    assert 0 < indexed["partial_images"] <= 4 * (len(FOLDER) + 1)


async def test_images_are_served_by_id_and_by_the_name_a_result_gives(seed: Seed) -> None:
    """A client of the original system shows a result by ``/api/image/{id}``, or by
    ``/images/`` (or ``/static/images/``) and the result's ``metadata.filename``."""
    r = await seed.client.post(
        "/api/search/by-image",
        files={"file": ("q.jpg", seed.content["astronaut.jpg"], "image/jpeg")},
    )
    results = r.json()["results"]
    top = results[0]
    by_id = await seed.checked("GET", "/api/image/{image_id}", f"/api/image/{top['id']}")
    assert (by_id.status_code, by_id.content) == (200, seed.content["astronaut.jpg"])
    assert by_id.headers["content-type"] == "image/jpeg"
    for result in results:
        filename = result["metadata"]["filename"]
        for template in ("/images/{filename}", "/static/images/{filename}"):
            target = template.replace("{filename}", filename)
            got = await seed.checked("GET", template, target)
            assert got.status_code == 200, (target, got.text)
            assert got.headers["content-type"].startswith("image/")
            assert int(got.headers["content-length"]) == len(got.content)


async def test_a_name_serves_the_most_recently_indexed_image_of_that_name(seed: Seed) -> None:
    """``cat.jpg`` is three images: the folder's own, ``2024/summer/cat.jpg`` (the same
    file name), and the upload, indexed last, which is served. The folder's path serves
    its own file."""
    for template in ("/images/{filename}", "/static/images/{filename}"):
        newest = await seed.checked("GET", template, template.replace("{filename}", "cat.jpg"))
        assert (newest.status_code, newest.content) == (200, seed.content["upload"])
        for name in ("2024/summer/cat.jpg", "2024/summer/rocket.png", "astronaut.jpg"):
            got = await seed.checked("GET", template, template.replace("{filename}", name))
            assert (got.status_code, got.content) == (200, seed.content[name]), name
        for missing in ("dog.jpg", "summer/cat.jpg", "2024/cat.jpg", "photos/cat.jpg"):
            # The 404 validates against the document's error schema too.
            got = await seed.checked("GET", template, template.replace("{filename}", missing))
            assert got.status_code == 404, missing
            assert got.json()["error"]["code"] == "not_found"
    other = await seed.checked(
        "GET", "/images/{filename}", "/images/cat.jpg", params={"collection": "elsewhere"}
    )
    assert other.status_code == 404


async def test_health_has_the_original_fields_and_ours(seed: Seed) -> None:
    r = await seed.checked("GET", "/health", "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["gpu_available"] is False  # the in-process encoder runs on the CPU
    assert body["qdrant_connected"] is True
    status = (await seed.client.get("/api/status")).json()
    assert body["collections"] == status["indexed_images"]
    assert type(body["collections"]["full_images"]) is int
    assert type(body["collections"]["partial_images"]) is int
    assert set(body["checks"]) == {"redis", "encoder", "vector_store"}


async def test_the_openapi_check_catches_what_it_should(seed: Seed) -> None:
    """The validator is not a rubber stamp: a real answer passes, damaged copies fail."""
    r = await seed.client.post(
        "/api/search/by-image",
        files={"file": ("q.jpg", seed.content["astronaut.jpg"], "image/jpeg")},
    )
    body = r.json()
    schema = {"$ref": "#/components/schemas/SearchResponse"}
    assert validate(body, schema, seed.spec) == []
    damaged: list[dict[str, Any]] = [
        {k: v for k, v in body.items() if k != "processing_time_ms"},
        {**body, "gpu_memory_used": True},
        {**body, "gpu_memory_used": 1.5},
        {**body, "results": [{**body["results"][0], "score": "high"}]},
        {**body, "results": [{**body["results"][0], "match_type": "fuzzy"}]},
        {**body, "results": [{**body["results"][0], "metadata": {"filename": "x"}}]},
    ]
    for bad in damaged:
        assert validate(bad, schema, seed.spec) != [], bad
    unknown = validate(1, {"type": "integer", "multipleOf": 2}, seed.spec)
    assert unknown and "unsupported" in unknown[0]
