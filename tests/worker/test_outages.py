"""Outages of the encoder or the index owner, malformed entries and requeued dead
letters, with the real worker loop on a real Redis (database 5 of the session's
server) and the in-process stack's encoder and search API behind a switchable transport.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import DEAD, JobQueue
from imgsearch_devstack import Proc
from imgsearch_worker.index_client import IndexClient
from imgsearch_worker.worker import Worker
from tests.support.inprocess import (
    API_INTERNAL_URL,
    ENCODER_URL,
    TOKEN,
    InProcessStack,
    LoopTransport,
)
from tests.support.worker_harness import (
    ATTACH,
    PIXELS,
    UPSERT,
    Switch,
    items,
    pending_of,
    running_worker,
    undelivered,
    wait_batches,
    wait_for,
    worker_settings,
    write_images,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def redis_url(redis_server: Proc) -> AsyncIterator[str]:
    url = redis_server.url[:-1] + "5"
    redis = Redis.from_url(url)
    await redis.flushdb()
    yield url
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
def fresh() -> str:
    """A suffix that makes a collection this test's own: the in-process index outlives the
    test, and a content indexed there already is only attached (no encoding, no upsert)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[JobQueue]:
    """A producer's queue on the workers' Redis database."""
    redis = Redis.from_url(redis_url)
    yield JobQueue(redis)
    await redis.aclose()


async def _collection_count(stack: InProcessStack, collection: str) -> int:
    async with stack.async_client() as client:
        counts = (await client.get("/api/status")).json()["collections"]
    return int(counts.get(collection, {}).get("full_images", 0))


@pytest.mark.parametrize("downstream", ["encoder", "index"])
async def test_an_outage_longer_than_the_old_budget_loses_nothing(
    inprocess: InProcessStack,
    redis_url: str,
    queue: JobQueue,
    tmp_path: Path,
    downstream: str,
    fresh: str,
) -> None:
    # With these settings the old rule (MAX_ATTEMPTS=3, backoff 0.1 then 0.2 s)
    # dead-lettered a job after about 0.3 s of outage; the window is 60 s.
    claim_idle_s = 3.0
    settings = worker_settings(
        redis_url, max_attempts=3, retry_window_s=60, claim_idle_ms=int(claim_idle_s * 1000)
    )
    collection = f"outage-{downstream}-{fresh}"
    # A job another worker took before it died: pending, never to be acknowledged by it.
    orphan_batch, _ = await queue.create_batch(
        collection, items(write_images(tmp_path / "orphan", 1, seed=1))
    )
    (orphan,) = await queue.read("dead-worker", count=1, block_ms=100)
    orphaned_at = time.monotonic()
    async with running_worker(inprocess, settings) as w:
        switch = w.encoder if downstream == "encoder" else w.index
        failing_call = PIXELS if downstream == "encoder" else ATTACH
        switch.down = True
        batch, n = await queue.create_batch(
            collection, items(write_images(tmp_path / "jobs", 6, seed=2))
        )
        assert n == 6
        await wait_for(lambda: switch.refused[failing_call] >= 2, within=60)
        await asyncio.sleep(2.5)  # well past the old budget
        assert (await queue.depth())["dead_letters"] == 0
        assert w.worker.breaker_state == "open"
        assert w.worker.health()["breaker"] == "open"

        # While open: no new entry read, no job attempted (no re-decode, no re-encode
        # storm), only probes of the downstream's health, with backoff.
        waiting = await undelivered(queue)
        assert waiting  # the jobs not taken yet
        encodes_before = w.encoder.answered[PIXELS] + w.encoder.refused[PIXELS]
        upserts_before = w.index.answered[UPSERT] + w.index.refused[UPSERT]
        probes_before = switch.refused["/health"]
        await wait_for(lambda: switch.refused["/health"] >= probes_before + 3, within=10)
        # The dead worker's job has been idle for longer than CLAIM_IDLE_MS: not taken
        # while the breaker is open (taking it would only fail it).
        await asyncio.sleep(max(0.0, claim_idle_s + 1.0 - (time.monotonic() - orphaned_at)))
        assert waiting <= await undelivered(queue)  # none of them was read meanwhile
        assert w.encoder.answered[PIXELS] + w.encoder.refused[PIXELS] == encodes_before
        assert w.index.answered[UPSERT] + w.index.refused[UPSERT] == upserts_before
        assert (await pending_of(queue)).get("dead-worker") == 1
        assert (await queue.depth())["dead_letters"] == 0
        assert not w.task.done()

        switch.down = False  # it comes back: the worker resumes by itself
        statuses = await wait_batches(queue, [orphan_batch, batch], within=120)
        assert w.worker.breaker_state == "closed"
    assert [(s.done, s.failed) for s in statuses] == [(1, 0), (6, 0)]
    assert (await queue.depth())["dead_letters"] == 0
    assert orphan.entry_id not in await _pending_ids(queue)
    # Exactly once: one successful hand-off per job, none repeated.
    assert w.index.answered[UPSERT] == 7
    assert await _collection_count(inprocess, collection) == 7


async def _pending_ids(queue: JobQueue) -> set[str]:
    rows = await queue.redis.xpending_range(queue.stream, queue.group, min="-", max="+", count=100)
    return {r["message_id"].decode() for r in rows}


async def test_jobs_held_while_the_breaker_is_open_are_not_taken_over(
    inprocess: InProcessStack, redis_url: str, queue: JobQueue, tmp_path: Path, fresh: str
) -> None:
    # One encode hangs, then the encoder goes down and the next jobs fail: the breaker
    # opens while the hanging job is in flight. Its worker keeps its heartbeat, so a
    # second worker (breaker closed, encoder up) does not claim it as a dead worker's.
    held = worker_settings(redis_url, worker_name="held", worker_concurrency=3, claim_idle_ms=800)
    other = worker_settings(redis_url, worker_name="other", claim_idle_ms=800)
    collection = f"held-open-{fresh}"
    async with running_worker(inprocess, held) as a:
        a.encoder.hold_next(PIXELS)
        slow_batch, _ = await queue.create_batch(
            collection, items(write_images(tmp_path / "slow", 1, seed=5))
        )
        await wait_for(lambda: a.encoder.holding == 1, within=60)
        (slow_entry,) = await _pending_ids(queue)
        a.encoder.down = True
        fail_batch, _ = await queue.create_batch(
            collection, items(write_images(tmp_path / "fail", 2, seed=6))
        )
        await wait_for(lambda: a.worker.breaker_state == "open", within=60)
        async with running_worker(inprocess, other) as b:
            for _ in range(4):  # several CLAIM_IDLE_MS
                await asyncio.sleep(0.8)
                rows = await queue.redis.xpending_range(
                    queue.stream, queue.group, min=slow_entry, max=slow_entry, count=1
                )
                (row,) = rows
                assert row["consumer"].decode() == "held"
                assert row["times_delivered"] == 1
            assert a.worker.breaker_state == "open"
            a.encoder.down = False
            a.encoder.release()
            statuses = await wait_batches(queue, [slow_batch, fail_batch], within=120)
            upserts = a.index.answered[UPSERT] + b.index.answered[UPSERT]
        await wait_for(lambda: a.worker.breaker_state == "closed", within=30)
    assert [(s.done, s.failed) for s in statuses] == [(1, 0), (2, 0)]
    assert upserts == 3


async def test_a_malformed_entry_is_dead_lettered_once(
    inprocess: InProcessStack, redis_url: str, queue: JobQueue, tmp_path: Path
) -> None:
    settings = worker_settings(redis_url, claim_idle_ms=300)
    async with running_worker(inprocess, settings) as w:
        batch, _ = await queue.create_batch(
            "malformed", items(write_images(tmp_path / "ok", 1, seed=7))
        )
        # No path, no collection: not a job. A worker used to die on it (KeyError), and
        # the entry stayed pending, to be claimed and to kill again.
        await queue.redis.xadd(queue.stream, {"job_id": "bad1", "note": "x" * 100_000})
        await wait_batches(queue, [batch])
        await wait_for(lambda: queue.redis.llen(DEAD), within=10)
        await asyncio.sleep(1.0)  # several claim rounds: nothing comes back
        assert not w.task.done()
        raw_dead = await queue.redis.lrange(DEAD, 0, -1)
        pending = await pending_of(queue)
        length = await queue.redis.xlen(queue.stream)
    (entry,) = [json.loads(x) for x in raw_dead]
    assert entry["reason"] == "malformed_job"
    assert entry["job"]["job_id"] == "bad1"
    assert len(json.dumps(entry)) < 10_000  # the raw fields are recorded, capped
    assert sum(pending.values()) == 0 and length == 0


async def test_requeued_dead_letters_are_indexed(
    inprocess: InProcessStack, redis_url: str, queue: JobQueue, tmp_path: Path, fresh: str
) -> None:
    # A tiny window and a breaker that never opens: the outage dead-letters the jobs.
    settings = worker_settings(redis_url, retry_window_s=0.3, max_attempts=2, breaker_failures=1000)
    paths = write_images(tmp_path / "requeue", 3, seed=8)
    async with running_worker(inprocess, settings) as w:
        w.encoder.down = True
        batch, _ = await queue.create_batch(f"requeued-{fresh}", items(paths))
        (status,) = await wait_batches(queue, [batch])
        assert (status.done, status.failed) == (0, 3)
        assert {e.reason for e in status.errors} == {"retries_exhausted"}
        assert all("upstream_unavailable" in e.message for e in status.errors)
        w.encoder.down = False
        result = await queue.requeue(reasons=["retries_exhausted"])
        assert result.requeued == 3
        (queued,) = result.batches
        assert (queued.collection, queued.queued) == (f"requeued-{fresh}", 3)
        (again,) = await wait_batches(queue, [queued.batch_id])
        assert (again.total, again.done, again.failed) == (3, 3, 0)
        assert (await queue.depth())["dead_letters"] == 0
    assert w.index.answered[UPSERT] == 3
    assert await _collection_count(inprocess, f"requeued-{fresh}") == 3


async def test_a_worker_waits_for_its_encoder_and_stops_while_waiting(
    inprocess: InProcessStack, redis_url: str
) -> None:
    # Started while the encoder is down (it loads its model, or is being redeployed): the
    # worker waits as long as it takes, without exiting, and a stop request ends the wait.
    encoder = Switch(inprocess.encoder_transport())
    encoder.down = True
    redis = Redis.from_url(redis_url)
    client = EncoderClient(ENCODER_URL, TOKEN, transport=encoder)
    transport = LoopTransport(inprocess.api_app, inprocess.loop)
    index = IndexClient(API_INTERNAL_URL, TOKEN, transport=transport)
    worker = Worker(worker_settings(redis_url), JobQueue(redis), client, index)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(lambda: encoder.refused["/health"] >= 3, within=30)
        assert not task.done() and not worker.ready.is_set()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await index.aclose()
        await client.aclose()
        await redis.aclose()
