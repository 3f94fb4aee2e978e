"""Jobs a dead worker left pending are taken over one at a time, each run alone.

Why: an entry claimed more than ``MAX_DELIVERIES`` times is dead-lettered as
``worker_crashed`` ("the job stopped its worker repeatedly"). A worker that dies holding
four jobs gives each of them one more delivery; if the jobs it left are then taken over
together (and beside new ones), every later death blames all of them again, and an
innocent job shares the fate of the one that kills its worker (``make chaos`` dead-lettered
an image this way after its holders were SIGKILLed five times in twenty seconds). Run
alone, a taken-over job is the only one its worker held when that worker died.

The real worker loop on a real Redis (database 6 of the session's server), the in-process
stack's encoder and search API behind the harness's transport.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from imgsearch_common.jobs import GROUP, STREAM, JobQueue
from imgsearch_devstack import Proc
from tests.support.inprocess import InProcessStack
from tests.support.worker_harness import (
    items,
    running_worker,
    wait_batches,
    worker_settings,
    write_images,
)

pytestmark = [pytest.mark.slow]

WORKER = "test-worker"


@pytest.fixture
async def queue(redis_server: Proc) -> AsyncIterator[JobQueue]:
    redis = Redis.from_url(redis_server.url[:-1] + "6")
    await redis.flushdb()
    yield JobQueue(redis)
    await redis.flushdb()
    await redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_jobs_left_by_a_dead_worker_are_taken_over_one_at_a_time_alone(
    inprocess: InProcessStack, queue: JobQueue, redis_server: Proc, tmp_path: Path
) -> None:
    claim_idle_ms = 300
    settings = worker_settings(
        redis_server.url[:-1] + "6", worker_concurrency=4, claim_idle_ms=claim_idle_ms
    )
    paths = write_images(tmp_path / "images", 10, seed=23)
    # A collection of this run's own: in one the in-process index holds from an earlier
    # run, the contents are indexed already and each job only attaches its file (too fast
    # for the watch below to see every job held).
    batch, _ = await queue.create_batch(f"takeover-{uuid.uuid4().hex[:8]}", items(paths))
    # A worker that died holding four jobs: delivered to it, never acknowledged.
    dead = await queue.read("dead-worker", count=4, block_ms=1000)
    stale = {d.entry_id for d in dead}
    assert len(stale) == 4
    await asyncio.sleep(2 * claim_idle_ms / 1000)

    held: list[set[str]] = []  # what the live worker holds, as the group records it
    watching = True

    async def watch() -> None:
        while watching:
            rows = await queue.redis.xpending_range(
                STREAM, GROUP, min="-", max="+", count=100, consumername=WORKER
            )
            held.append({_text(r["message_id"]) for r in rows})
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        async with running_worker(inprocess, settings):
            (status,) = await wait_batches(queue, [batch], within=120)
    finally:
        watching = False
        await watcher
    assert (status.done, status.failed) == (10, 0)
    with_stale = [h for h in held if h & stale]
    assert {e for h in with_stale for e in h} >= stale, "the dead worker's jobs were taken over"
    beside = [sorted(h) for h in with_stale if len(h) > 1]
    assert beside == [], "a taken-over job ran beside other jobs"


async def test_has_stale_sees_only_entries_idle_long_enough(queue: JobQueue) -> None:
    await queue.create_batch("stale", [("/x/a.jpg", "folder", "a.jpg")])
    assert not await queue.has_stale(0)  # queued, delivered to nobody
    (delivery,) = await queue.read("gone", count=1, block_ms=1000)
    assert not await queue.has_stale(60_000)
    await asyncio.sleep(0.05)
    assert await queue.has_stale(20)
    await queue.complete(delivery)
    assert not await queue.has_stale(0)
