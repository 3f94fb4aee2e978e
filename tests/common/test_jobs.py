"""The Redis Streams queue against a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from imgsearch_common.jobs import DEAD, DELAYED, Job, JobQueue, MalformedJob
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


# --- failure times, malformed entries, requeue --------------------------------------------


def test_job_fields_round_trip_with_their_failure_record() -> None:
    job = Job("j", "b", "c", "/p.jpg", "url", "p", 3, first_failed_at=1700.5, unexpected_failures=1)
    assert Job.from_fields({k.encode(): v.encode() for k, v in job.fields().items()}) == job
    # Entries queued before the failure record existed read as never failed.
    old = {"job_id": "j", "batch_id": "b", "collection": "c", "path": "/p.jpg", "attempt": "2"}
    assert Job.from_fields(old) == Job("j", "b", "c", "/p.jpg", attempt=2)


@pytest.mark.parametrize(
    "fields",
    [
        {"job_id": "j", "batch_id": "b", "collection": "c"},  # no path
        {"job_id": "", "batch_id": "b", "collection": "c", "path": "/p"},
        {"job_id": "j", "batch_id": "b", "collection": "c", "path": "/p", "attempt": "many"},
        {b"job_id": b"\xff\xfe", b"batch_id": b"b", b"collection": b"c", b"path": b"/p"},
    ],
)
def test_fields_that_are_not_a_job_raise_malformed_job(fields: dict[Any, Any]) -> None:
    with pytest.raises(MalformedJob):
        Job.from_fields(fields)


async def test_retry_later_stores_the_job_it_is_given(queue: JobQueue) -> None:
    await queue.create_batch("c1", [("/a.jpg", "folder", "a.jpg")])
    (d,) = await queue.read("w", count=1, block_ms=100)
    again = dataclasses.replace(d.job, attempt=4, first_failed_at=123.25, unexpected_failures=2)
    await queue.retry_later(d, delay_s=0, job=again)
    assert await queue.promote_due() == 1
    (back,) = await queue.read("w", count=1, block_ms=100)
    assert back.job == again


async def test_a_malformed_entry_is_dead_lettered_once_and_counted_in_its_batch(
    queue: JobQueue,
) -> None:
    batch_id, _ = await queue.create_batch("c1", [("/a.jpg", "folder", "a.jpg")])
    # An entry its producer counted in the batch but wrote wrong (no collection, no path).
    await queue.redis.xadd(
        queue.stream, {"job_id": "bad", "batch_id": batch_id, "junk": "x" * 50_000}
    )
    await queue.redis.hincrby(f"imgsearch:batch:{batch_id}", "total", 1)
    got = await queue.read("w", count=10, block_ms=100)
    assert [d.job.path for d in got] == ["/a.jpg"]  # the good one; the bad one is handled
    assert await queue.read("w", count=10, block_ms=50) == []
    (dead,) = await queue.dead_letters()
    assert dead["reason"] == "malformed_job"
    assert dead["job"]["job_id"] == "bad" and dead["job"]["batch_id"] == batch_id
    assert len(json.dumps(dead)) < 10_000  # raw fields kept, capped
    pending = await queue.redis.xpending(queue.stream, queue.group)
    assert pending["pending"] == 1  # the good job only
    await queue.complete(got[0])
    status = await queue.batch_status(batch_id)
    assert status is not None
    # The bad entry counts as failed and shows among the errors: the batch finishes.
    assert (status.total, status.done, status.failed, status.finished) == (2, 1, 1, True)
    assert [e.reason for e in status.errors] == ["malformed_job"]
    assert await queue.redis.xlen(queue.stream) == 0


async def test_a_pending_malformed_entry_is_dead_lettered_when_claimed(queue: JobQueue) -> None:
    # Left pending by a worker that died on it (before this fix, every claimer died too).
    await queue.ensure_group()
    await queue.redis.xadd(queue.stream, {"what": "no job here"})
    await queue.redis.xreadgroup(queue.group, "dead", {queue.stream: ">"}, count=1)
    await asyncio.sleep(0.15)
    assert await queue.claim_stale("other", min_idle_ms=100, count=10) == []
    assert [d["reason"] for d in await queue.dead_letters()] == ["malformed_job"]
    assert (await queue.redis.xpending(queue.stream, queue.group))["pending"] == 0
    assert await queue.claim_stale("other", min_idle_ms=0, count=10) == []


async def _dead_letter(queue: JobQueue, collection: str, path: str, reason: str) -> None:
    await queue.create_batch(collection, [(path, "folder", path.rsplit("/", 1)[-1])])
    (d,) = await queue.read("w", count=1, block_ms=100)
    failed = dataclasses.replace(d.job, attempt=5, first_failed_at=99.0, unexpected_failures=1)
    await queue.fail(dataclasses.replace(d, job=failed), reason, "it failed")


async def test_requeue_moves_dead_letters_into_a_new_batch_per_collection(
    queue: JobQueue,
) -> None:
    await _dead_letter(queue, "cats", "/c1.jpg", "retries_exhausted")
    await _dead_letter(queue, "dogs", "/d1.jpg", "retries_exhausted")
    await _dead_letter(queue, "cats", "/c2.jpg", "worker_crashed")
    await _dead_letter(queue, "cats", "/c3.jpg", "corrupt_image")
    await _dead_letter(queue, "cats", "/c4.jpg", "retries_exhausted")
    await queue.redis.xadd(queue.stream, {"nope": "1"})
    assert await queue.read("w", count=1, block_ms=100) == []  # dead-lettered, malformed
    assert (await queue.depth())["dead_letters"] == 6

    # Only the reasons asked for, oldest first, at most ``limit``.
    first = await queue.requeue(reasons=["retries_exhausted", "worker_crashed"], limit=3)
    assert first.requeued == 3
    assert sorted((b.collection, b.queued) for b in first.batches) == [("cats", 2), ("dogs", 1)]
    moved = await queue.read("w", count=10, block_ms=100)
    assert sorted(d.job.path for d in moved) == ["/c1.jpg", "/c2.jpg", "/d1.jpg"]
    by_collection = {b.collection: b.batch_id for b in first.batches}
    for d in moved:
        # A fresh start: new batch, no failure record; the job id stays.
        assert d.job.batch_id == by_collection[d.job.collection]
        assert (d.job.attempt, d.job.first_failed_at, d.job.unexpected_failures) == (0, 0.0, 0)
    left = [(x["job"].get("path"), x["reason"]) for x in await queue.dead_letters()]
    assert left == [
        ("/c3.jpg", "corrupt_image"),
        ("/c4.jpg", "retries_exhausted"),
        (None, "malformed_job"),
    ]
    status = await queue.batch_status(by_collection["cats"])
    assert status is not None
    assert (status.collection, status.total, status.pending, status.finished) == (
        "cats", 2, 2, False,
    )  # fmt: skip

    # No reasons: every dead letter but the malformed ones (they are not jobs).
    rest = await queue.requeue()
    assert rest.requeued == 2
    assert [x["reason"] for x in await queue.dead_letters()] == ["malformed_job"]
    assert (await queue.requeue()).requeued == 0


async def test_concurrent_requeues_move_each_dead_letter_once(queue: JobQueue) -> None:
    for i in range(20):
        await _dead_letter(queue, "c", f"/{i}.jpg", "retries_exhausted")
    results = await asyncio.gather(*(queue.requeue(limit=7) for _ in range(5)))
    assert sum(r.requeued for r in results) == 20
    entries = await queue.read("w", count=100, block_ms=100)
    assert sorted(d.job.path for d in entries) == sorted(f"/{i}.jpg" for i in range(20))
    assert (await queue.depth())["dead_letters"] == 0


async def test_requeue_of_one_batch_moves_only_its_dead_letters(queue: JobQueue) -> None:
    await _dead_letter(queue, "cats", "/other-1.jpg", "retries_exhausted")
    items = [(f"/ours-{i}.jpg", "folder", f"ours-{i}.jpg") for i in range(3)]
    ours, _ = await queue.create_batch("cats", items, label="/photos/ours")
    for d in await queue.read("w", count=3, block_ms=100):
        await queue.fail(d, "corrupt_image" if d.job.path == "/ours-2.jpg" else "missing_file", "x")
    await _dead_letter(queue, "dogs", "/other-2.jpg", "retries_exhausted")

    # Reasons and limit still apply within the batch.
    one = await queue.requeue(reasons=["missing_file"], limit=1, batch_id=ours)
    assert one.requeued == 1
    rest = await queue.requeue(batch_id=ours)
    assert rest.requeued == 2
    moved = await queue.read("w", count=10, block_ms=100)
    assert sorted(d.job.path for d in moved) == ["/ours-0.jpg", "/ours-1.jpg", "/ours-2.jpg"]
    # The other batches' dead letters stay, in their order.
    left = [x["job"]["path"] for x in await queue.dead_letters()]
    assert left == ["/other-1.jpg", "/other-2.jpg"]
    (batch,) = rest.batches
    status = await queue.batch_status(batch.batch_id)
    assert status is not None and status.label == "failed files of /photos/ours, re-queued"
    # The old batch keeps counting them as failed.
    old = await queue.batch_status(ours)
    assert old is not None and (old.failed, old.finished) == (3, True)
    # Nothing left of that batch: nothing moves, no batch is made.
    again = await queue.requeue(batch_id=ours)
    assert (again.requeued, again.batches) == (0, [])
    assert (await queue.requeue(batch_id="0" * 32)).requeued == 0


async def test_requeue_of_a_requeued_batch_names_the_first_batch_once(queue: JobQueue) -> None:
    first, _ = await queue.create_batch("cats", [("/a.jpg", "folder", "a.jpg")], label="/photos")
    batch_id = first
    for _ in range(3):
        for d in await queue.read("w", count=1, block_ms=100):
            await queue.fail(d, "missing_file", "gone")
        (batch,) = (await queue.requeue(batch_id=batch_id)).batches
        batch_id = batch.batch_id
        status = await queue.batch_status(batch_id)
        assert status is not None and status.label == "failed files of /photos, re-queued"


@pytest.mark.parametrize("junk", ["", "../x", "a" * 65, "batch id", "*"])
async def test_requeue_refuses_a_batch_id_of_the_wrong_shape(queue: JobQueue, junk: str) -> None:
    await _dead_letter(queue, "cats", "/c1.jpg", "retries_exhausted")
    with pytest.raises(ValueError):
        await queue.requeue(batch_id=junk)
    assert (await queue.depth())["dead_letters"] == 1
