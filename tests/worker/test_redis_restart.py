"""A worker outlives its Redis: killed and started again (same port, same append-only
file), and wiped (``FLUSHALL``: the consumer group is gone, ``NOGROUP``). Its own
redis-server, so that killing it disturbs no other test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from imgsearch_common.jobs import GROUP, STREAM, JobQueue
from imgsearch_devstack import Proc, RedisBinary, available_redis, free_port, start_redis
from tests.support.inprocess import InProcessStack
from tests.support.worker_harness import (
    items,
    running_worker,
    wait_batches,
    wait_for,
    worker_settings,
    write_images,
)

pytestmark = [pytest.mark.slow]


class OwnRedis:
    def __init__(self, data_dir: Path, binary: RedisBinary) -> None:
        self.data_dir = data_dir
        self.binary = binary
        self.port = free_port()
        self.proc: Proc = start_redis(data_dir, self.port, binary=binary)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.proc.kill()

    def restart(self) -> None:
        self.proc = start_redis(self.data_dir, self.port, binary=self.binary)


@pytest.fixture(params=available_redis(), ids=lambda b: b.id)
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis", request.param)
    yield server
    server.proc.stop()


async def _group_exists(redis: Redis) -> bool:
    try:
        groups = await redis.xinfo_groups(STREAM)
    except ResponseError:  # no such key
        return False
    return any(g["name"].decode() == GROUP for g in groups)


async def test_worker_survives_a_redis_restart_and_a_flushall(
    inprocess: InProcessStack, own_redis: OwnRedis, tmp_path: Path
) -> None:
    settings = worker_settings(own_redis.url, claim_idle_ms=1000)
    producer = Redis.from_url(own_redis.url)
    queue = JobQueue(producer)
    try:
        async with running_worker(inprocess, settings) as w:
            first, _ = await queue.create_batch(
                "redis-restart", items(write_images(tmp_path / "a", 2, seed=11))
            )
            await wait_batches(queue, [first])

            own_redis.kill()
            # Longer than redis-py's own retries: every read, heartbeat and claim fails.
            await asyncio.sleep(3.0)
            assert not w.task.done(), "the worker died with its Redis"
            assert w.worker.health()["redis"] == "unavailable"
            own_redis.restart()
            # The producer's pooled connections died with the server (the API's problem,
            # not this test's): a new client.
            await producer.aclose()
            producer = Redis.from_url(own_redis.url)
            queue = JobQueue(producer)
            second, _ = await queue.create_batch(
                "redis-restart", items(write_images(tmp_path / "b", 2, seed=12))
            )
            (status,) = await wait_batches(queue, [second])
            assert (status.done, status.failed) == (2, 0)
            await wait_for(lambda: w.worker.health()["redis"] == "ok", within=10)

            # Redis lost its data: the group is gone; the worker recreates it itself.
            await producer.flushall()
            await wait_for(lambda: _group_exists(producer), within=20)
            third, _ = await queue.create_batch(
                "redis-restart", items(write_images(tmp_path / "c", 2, seed=13))
            )
            (status,) = await wait_batches(queue, [third])
            assert (status.done, status.failed) == (2, 0)
            assert not w.task.done()
    finally:
        await producer.aclose()
