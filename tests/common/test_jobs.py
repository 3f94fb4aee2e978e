"""The Redis Streams queue against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imgsearch_common.jobs import DEAD, DELAYED, JobQueue
from imgsearch_devstack import Proc


@pytest.fixture
async def queue(redis_server: Proc) -> AsyncIterator[JobQueue]:
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    yield JobQueue(redis)
    await redis.flushdb()
    await redis.aclose()


async def test_batch_progress_is_exact_even_when_a_job_completes_twice(queue: JobQueue) -> None:
    items = [(f"/img/{i}.jpg", "folder", f"{i}.jpg") for i in range(5)]
    batch_id, n = await queue.create_batch("c1", items, chunk=2)
    assert n == 5
    status = await queue.batch_status(batch_id)
    assert status is not None
    assert (status.total, status.done, status.pending, status.finished) == (5, 0, 5, False)
    got = await queue.read("w1", count=10, block_ms=100)
    assert [d.job.path for d in got] == [p for p, _, _ in items]
    for d in got[:3]:
        await queue.complete(d)
    await queue.complete(got[0])  # a replayed completion changes nothing
    await queue.fail(got[3], "corrupt_image", "the image data is truncated or corrupt")
    status = await queue.batch_status(batch_id)
    assert status is not None
    assert (status.done, status.failed, status.pending, status.finished) == (3, 1, 1, False)
    assert [(e.path, e.reason) for e in status.errors] == [("3.jpg", "corrupt_image")]
    await queue.complete(got[4])
    status = await queue.batch_status(batch_id)
    assert status is not None and status.finished
    assert await queue.depth() == {"pending": 0, "delayed": 0, "dead_letters": 1}
    dead = await queue.dead_letters()
    assert dead[0]["reason"] == "corrupt_image" and dead[0]["job"]["path"] == "/img/3.jpg"


async def test_unacknowledged_jobs_are_claimed_after_idle(queue: JobQueue) -> None:
    await queue.create_batch("c1", [("/a.jpg", "folder", "a.jpg"), ("/b.jpg", "folder", "b.jpg")])
    taken = await queue.read("dead-worker", count=2, block_ms=100)
    assert len(taken) == 2
    assert await queue.claim_stale("other", min_idle_ms=60_000, count=10) == []  # not stale yet
    await asyncio.sleep(0.25)
    claimed = await queue.claim_stale("other", min_idle_ms=200, count=10)
    assert sorted(d.job.path for d in claimed) == ["/a.jpg", "/b.jpg"]
    assert all(d.deliveries == 2 for d in claimed)
    assert await queue.read("other", count=10, block_ms=50) == []  # nothing new
    for d in claimed:
        await queue.complete(d)
    pending = await queue.redis.xpending(queue.stream, queue.group)
    assert pending["pending"] == 0


async def test_retry_later_goes_through_the_delayed_set(queue: JobQueue) -> None:
    batch_id, _ = await queue.create_batch("c1", [("/a.jpg", "folder", "a.jpg")])
    (d,) = await queue.read("w", count=1, block_ms=100)
    await queue.retry_later(d, delay_s=0.2)
    assert await queue.depth() == {"pending": 1, "delayed": 1, "dead_letters": 0}
    assert await queue.promote_due() == 0  # not due yet
    await asyncio.sleep(0.25)
    assert await queue.promote_due() == 1
    (again,) = await queue.read("w", count=1, block_ms=100)
    assert again.job.attempt == 1
    assert again.job.job_id == d.job.job_id and again.job.batch_id == batch_id
    assert await queue.redis.zcard(DELAYED) == 0
    await queue.complete(again)
    status = await queue.batch_status(batch_id)
    assert status is not None and status.finished and status.done == 1


async def test_dead_letter_list_is_json(queue: JobQueue) -> None:
    await queue.create_batch("c1", [("/x.png", "upload", "x.png")])
    (d,) = await queue.read("w", count=1, block_ms=100)
    await queue.fail(d, "unsupported_image", "not an image")
    raw = await queue.redis.lrange(DEAD, 0, -1)
    entry = json.loads(raw[0])
    assert entry["job"]["source"] == "upload" and entry["message"] == "not an image"


async def test_unknown_batch(queue: JobQueue) -> None:
    assert await queue.batch_status("nope") is None


async def test_heartbeat_keeps_a_slow_job_from_being_claimed(queue: JobQueue) -> None:
    await queue.create_batch("c1", [("/slow.jpg", "folder", "slow.jpg")])
    (d,) = await queue.read("slow-worker", count=1, block_ms=100)
    await asyncio.sleep(0.25)
    await queue.heartbeat("slow-worker", [d.entry_id])
    assert await queue.claim_stale("other", min_idle_ms=200, count=10) == []
    await asyncio.sleep(0.25)  # no heartbeat now: the job looks abandoned
    (claimed,) = await queue.claim_stale("other", min_idle_ms=200, count=10)
    assert claimed.deliveries == 2  # the heartbeat did not count as a delivery
