"""A real :class:`Worker` on a test's own event loop, against a real Redis, with its
encoder and index owner (the in-process stack's apps) behind a transport that a test
can switch off: an outage faked at the one boundary we do not own, the network.

While a :class:`Switch` is down every request is refused as a refused connection would
be; while it holds, requests wait until it is released (a hanging downstream). It
counts what it refused and what it forwarded, by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue
from imgsearch_common.schemas import BatchStatus
from imgsearch_worker.index_client import IndexClient
from imgsearch_worker.settings import WorkerSettings
from imgsearch_worker.worker import Worker
from tests.support.inprocess import (
    API_INTERNAL_URL,
    ENCODER_URL,
    TOKEN,
    InProcessStack,
    LoopTransport,
)

PIXELS = "/v1/embed/pixels"
UPSERT = "/internal/v1/upsert"
#: A worker's first call to the index owner for each job (is its content indexed already?).
ATTACH = "/internal/v1/attach"


class Switch(httpx.AsyncBaseTransport):
    """Forwards to ``inner`` while up; refuses while down. :meth:`hold_next` makes the next
    request to a path hang until :meth:`release` (it then goes through, down or not: the
    downstream had accepted it before the outage)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False
        self.refused: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.holding = 0
        self._hold_path: str | None = None
        self._released = asyncio.Event()

    def hold_next(self, path: str) -> None:
        self._hold_path = path
        self._released.clear()

    def release(self) -> None:
        self._hold_path = None
        self._released.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == self._hold_path:
            self._hold_path = None
            self.holding += 1
            try:
                await self._released.wait()
            finally:
                self.holding -= 1
        elif self.down:
            self.refused[path] += 1
            raise httpx.ConnectError("connection refused (test outage)", request=request)
        response = await self.inner.handle_async_request(request)
        self.answered[path] += 1
        return response


def worker_settings(redis_url: str, **overrides: Any) -> WorkerSettings:
    """Small, fast settings: full views only (one crop per image), quick maintenance."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "encoder_url": ENCODER_URL,
        "api_internal_url": API_INTERNAL_URL,
        "internal_token": TOKEN,
        "worker_name": "test-worker",
        "max_windows": 0,
        "worker_concurrency": 2,
        "claim_idle_ms": 3000,
        "maintenance_interval_s": 0.2,
        "retry_base_s": 0.1,
        "retry_max_s": 0.4,
        "breaker_failures": 2,
        "breaker_probe_s": 0.2,
        "breaker_probe_max_s": 0.4,
        "redis_retry_base_s": 0.1,
        "redis_retry_max_s": 0.5,
    }
    return WorkerSettings(**{**values, **overrides})


@dataclass
class RunningWorker:
    worker: Worker
    queue: JobQueue
    encoder: Switch
    index: Switch
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def running_worker(
    stack: InProcessStack,
    settings: WorkerSettings,
    *,
    encoder: Switch | None = None,
    index: Switch | None = None,
) -> AsyncIterator[RunningWorker]:
    """``settings``' worker running on this loop until the block ends."""
    encoder = encoder or Switch(stack.encoder_transport())
    index = index or Switch(LoopTransport(stack.api_app, stack.loop))
    redis = Redis.from_url(settings.redis_url)
    encoder_client = EncoderClient(ENCODER_URL, TOKEN, transport=encoder)
    index_client = IndexClient(API_INTERNAL_URL, TOKEN, transport=index)
    queue = JobQueue(redis)
    worker = Worker(settings, queue, encoder_client, index_client)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(lambda: worker.ready.is_set() or task.done(), within=60)
        if task.done():
            task.result()
        yield RunningWorker(worker, queue, encoder, index, task, stop)
    finally:
        stop.set()
        encoder.release()
        index.release()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=60)
        await index_client.aclose()
        await encoder_client.aclose()
        await redis.aclose()


async def wait_for(condition: Any, *, within: float, poll_s: float = 0.05) -> None:
    """Poll ``condition()`` (sync or async) until it is true; TimeoutError after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(poll_s)


async def wait_batches(
    queue: JobQueue, batch_ids: Iterable[str], *, within: float = 90
) -> list[BatchStatus]:
    """The batches' statuses once every one of them is finished."""
    ids = list(batch_ids)
    statuses: list[BatchStatus] = []

    async def finished() -> bool:
        nonlocal statuses
        found = [await queue.batch_status(b) for b in ids]
        statuses = [s for s in found if s is not None]
        return len(statuses) == len(ids) and all(s.finished for s in statuses)

    await wait_for(finished, within=within, poll_s=0.1)
    return statuses


def write_images(folder: Path, count: int, *, seed: int) -> list[Path]:
    """``count`` small JPEGs of distinct random content."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        path = folder / f"img{i}.jpg"
        Image.fromarray(pixels).resize((160, 120)).save(path, quality=85)
        paths.append(path)
    return paths


def items(paths: Iterable[Path]) -> list[tuple[str, str, str]]:
    return [(str(p), "folder", p.name) for p in paths]


async def undelivered(queue: JobQueue) -> set[str]:
    """Stream entries the group has not handed to any consumer yet (in the stream, not
    pending). An entry read by ``XREADGROUP`` leaves this set for good: it is pending, or
    handled and deleted (XINFO's ``entries-read`` would say it more simply, from Redis 7)."""
    entries = await queue.redis.xrange(queue.stream, count=10_000)
    rows = await queue.redis.xpending_range(
        queue.stream, queue.group, min="-", max="+", count=10_000
    )
    pending = {_text(r["message_id"]) for r in rows}
    return {_text(entry_id) for entry_id, _ in entries} - pending


async def pending_of(queue: JobQueue) -> dict[str, int]:
    """Pending entries per consumer."""
    summary: dict[str, Any] = await queue.redis.xpending(queue.stream, queue.group)
    return {_text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
