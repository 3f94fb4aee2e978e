"""What queuing a folder found is kept with its batch (``JobQueue.create_batch(counts=)``),
against a real redis-server; a batch with no job is finished at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imgsearch_common.jobs import JobQueue
from imgsearch_common.schemas import SyncCounts
from imgsearch_devstack import Proc


@pytest.fixture
async def queue(redis_server: Proc) -> AsyncIterator[JobQueue]:
    redis = Redis.from_url(redis_server.url[:-1] + "3")
    await redis.flushdb()
    yield JobQueue(redis)
    await redis.flushdb()
    await redis.aclose()


async def test_the_counts_come_back_with_the_status(queue: JobQueue) -> None:
    counts = SyncCounts(new=1, changed=1, unchanged=5, moved=2, removed=3)
    items = [("/p/a.jpg", "folder", "a.jpg"), ("/p/b.jpg", "folder", "b.jpg")]
    batch_id, n = await queue.create_batch("c", items, counts=counts)
    status = await queue.batch_status(batch_id)
    assert n == 2 and status is not None
    assert SyncCounts.model_validate(status.model_dump(include=set(SyncCounts.model_fields))) == (
        counts
    )
    assert (status.total, status.pending, status.finished) == (2, 2, False)


async def test_a_batch_without_jobs_is_finished_at_once(queue: JobQueue) -> None:
    batch_id, n = await queue.create_batch("c", [], counts=SyncCounts(unchanged=4))
    status = await queue.batch_status(batch_id)
    assert n == 0 and status is not None
    assert (status.total, status.done, status.pending, status.finished) == (0, 0, 0, True)
    assert (status.unchanged, status.new, status.removed) == (4, 0, 0)


async def test_batches_queued_without_counts_report_zeros(queue: JobQueue) -> None:
    batch_id, _ = await queue.create_batch("c", [("/u/x.png", "upload", "x.png")])
    status = await queue.batch_status(batch_id)
    assert status is not None
    assert status.model_dump(include=set(SyncCounts.model_fields)) == SyncCounts().model_dump()
