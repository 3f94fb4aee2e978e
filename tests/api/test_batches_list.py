"""``GET /api/index/batches``: the recent batches, newest first, each with the label of what
was queued, for as long as the batch itself lives (``JobQueue.recent_batches``).

The real app on the test's loop (its own Edge shard, the in-process stack's encoder) on a
real Redis database no worker reads, so nothing queued here is indexed; the queue's own
calls make the states a page would meet (an expired batch, a list past its bound).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from redis.asyncio import Redis

from imgsearch_common.jobs import BATCH_TTL_S, MAX_RECENT_BATCHES, RECENT, JobQueue
from imgsearch_common.schemas import BatchList
from imgsearch_devstack import Proc, free_port
from tests.support.inprocess import InProcessStack, served
from tests.support.openapi import check_response

#: The Redis database of these tests (no worker reads it).
DB = "8"


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Served:
    client: httpx.AsyncClient
    queue: JobQueue
    folder: Path
    spec: dict[str, object]


@pytest.fixture
async def served_api(
    inprocess: InProcessStack, redis_server: Proc, tmp_path: Path
) -> AsyncIterator[Served]:
    folder = tmp_path / "allowed" / "holiday photos"
    folder.mkdir(parents=True)
    for i in range(2):
        (folder / f"{i}.png").write_bytes(_png(10 + i))
    url = redis_server.url[:-1] + DB
    redis = Redis.from_url(url)
    await redis.flushdb()
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data", redis_url=url, index_roots=[tmp_path / "allowed"]
    )
    app = inprocess.create_api(settings)
    async with served(app) as client:
        yield Served(client, JobQueue(redis), folder, app.openapi())
    await redis.flushdb()
    await redis.aclose()


async def _listed(api: Served, **params: int) -> BatchList:
    r = await api.client.get("/api/index/batches", params=params)
    assert r.status_code == 200, r.text
    assert check_response(api.spec, "GET", "/api/index/batches", r) == []
    return BatchList.model_validate(r.json())


async def test_batches_are_listed_newest_first_with_what_was_queued(served_api: Served) -> None:
    api = served_api.client
    assert (await _listed(served_api)).batches == []
    ids = []
    r = await api.post("/api/index/folder", json={"path": str(served_api.folder)})
    assert r.status_code == 202, r.text
    ids.append(r.json()["batch_id"])
    one = [("files", ("beach.png", _png(1), "image/png"))]
    r = await api.post("/api/index/upload", files=one)
    assert r.status_code == 202, r.text
    ids.append(r.json()["batch_id"])
    three = [("files", (f"{i}.png", _png(20 + i), "image/png")) for i in range(3)]
    r = await api.post("/api/index/upload", files=three)
    assert r.status_code == 202, r.text
    ids.append(r.json()["batch_id"])
    body = {"path": str(served_api.folder), "sync": True, "collection": "synced"}
    r = await api.post("/api/index/folder", json=body)
    assert r.status_code == 202, r.text
    ids.append(r.json()["batch_id"])

    listed = (await _listed(served_api)).batches
    assert [b.batch_id for b in listed] == ids[::-1]
    assert [b.label for b in listed] == [
        f"{served_api.folder} (sync)",
        "3 uploaded files",
        "beach.png",
        str(served_api.folder),
    ]
    assert [b.collection for b in listed] == ["synced", "default", "default", "default"]
    # Each entry is the batch's status, as its own route gives it.
    for b in listed:
        r = await api.get(f"/api/index/batches/{b.batch_id}")
        assert r.status_code == 200 and r.json() == b.model_dump(mode="json")
    assert [b.batch_id for b in (await _listed(served_api, limit=2)).batches] == ids[:1:-1]


@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_RECENT_BATCHES + 1), "ten", "1e3"])
async def test_a_limit_out_of_bounds_is_a_422(served_api: Served, limit: str) -> None:
    r = await served_api.client.get("/api/index/batches", params={"limit": limit})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"


async def test_the_list_route_does_not_shadow_a_batch_and_vice_versa(served_api: Served) -> None:
    r = await served_api.client.get("/api/index/batches/")
    assert r.status_code in (307, 404), r.text  # never a batch called ""
    r = await served_api.client.get("/api/index/batches/batches")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_a_batch_is_listed_as_long_as_it_lives_and_no_longer(served_api: Served) -> None:
    queue = served_api.queue
    old, _ = await queue.create_batch("c", [("/p/a.jpg", "folder", "a.jpg")], label="old")
    new, _ = await queue.create_batch("c", [("/p/b.jpg", "folder", "b.jpg")], label="new")
    # The list lives as long as its newest batch.
    assert await queue.redis.ttl(RECENT) >= await queue.redis.ttl(f"imgsearch:batch:{new}") > 0
    assert [b.label for b in (await _listed(served_api)).batches] == ["new", "old"]

    # The old batch's hash expires (Redis drops it): so does its entry, once read.
    await queue.redis.pexpire(f"imgsearch:batch:{old}", 1)
    await asyncio.sleep(0.01)
    assert [b.batch_id for b in (await _listed(served_api)).batches] == [new]
    assert await queue.redis.zrange(RECENT, 0, -1) == [new.encode()]

    # An entry older than any batch lives is dropped even if something left its hash.
    await queue.redis.zadd(RECENT, {new: time.time() - BATCH_TTL_S - 1})
    assert (await _listed(served_api)).batches == []
    assert await queue.redis.zcard(RECENT) == 0


async def test_the_list_keeps_the_newest_batches_only(served_api: Served) -> None:
    queue = served_api.queue
    ids = [
        (await queue.create_batch("c", [], label=f"batch {i}"))[0]
        for i in range(MAX_RECENT_BATCHES + 5)
    ]
    assert await queue.redis.zcard(RECENT) == MAX_RECENT_BATCHES
    listed = (await _listed(served_api, limit=MAX_RECENT_BATCHES)).batches
    assert [b.batch_id for b in listed] == ids[:4:-1]
    # The ones pushed out still have their status (they live their full time).
    assert (await queue.batch_status(ids[0])) is not None


async def test_a_listed_batch_carries_its_first_errors_only(served_api: Served) -> None:
    queue = served_api.queue
    items = [(f"/p/{i}.jpg", "folder", f"{i}.jpg") for i in range(30)]
    batch_id, _ = await queue.create_batch("c", items, label="many failures")
    for d in await queue.read("w", count=30, block_ms=100):
        await queue.fail(d, "corrupt_image", "the image data is truncated or corrupt")
    (listed,) = (await _listed(served_api)).batches
    assert (listed.failed, listed.finished, len(listed.errors)) == (30, True, 20)
    full = await queue.batch_status(batch_id)
    assert full is not None and len(full.errors) == 30
    assert listed.errors == full.errors[:20]


async def test_requeued_dead_letters_are_listed_as_a_batch_of_their_own(
    served_api: Served,
) -> None:
    queue = served_api.queue
    first, _ = await queue.create_batch("c", [("/p/a.jpg", "folder", "a.jpg")], label="/p")
    (d,) = await queue.read("w", count=1, block_ms=100)
    await queue.fail(d, "retries_exhausted", "encoder unreachable")
    r = await served_api.client.post("/api/index/dead-letters/requeue", json={"batch_id": first})
    assert r.status_code == 200, r.text
    (again,) = r.json()["batches"]
    listed = (await _listed(served_api)).batches
    assert [b.batch_id for b in listed] == [again["batch_id"], first]
    assert listed[0].label == "failed files of /p, re-queued"
    assert (listed[0].total, listed[0].pending) == (1, 1)


@pytest.mark.parametrize("junk", ["", "../x", "a" * 65, "a b", "*", 7, ["x"]])
async def test_requeue_of_a_batch_id_of_the_wrong_shape_is_a_422(
    served_api: Served, junk: object
) -> None:
    r = await served_api.client.post("/api/index/dead-letters/requeue", json={"batch_id": junk})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"


async def test_the_list_answers_503_while_redis_is_down(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data", redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    async with served(inprocess.create_api(settings)) as client:
        r = await client.get("/api/index/batches")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "upstream_unavailable"
    assert float(r.headers["Retry-After"]) > 0
