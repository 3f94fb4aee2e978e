"""Cross-request dynamic batching: many small requests, few large forward passes.

How an item travels:

1. A request handler calls :meth:`DynamicBatcher.encode_pixels` (or ``encode_texts``).
   The request is *admitted* only if the items already admitted and not yet encoded
   plus its own stay within ``max_queue_items``; otherwise :class:`Overloaded`
   (HTTP 429 + Retry-After) is raised at once. Nothing queues without bound.
2. The request waits in a FIFO of its kind (image crops and texts go through
   different towers, so a batch holds one kind) and the handler awaits its future.
3. The collector task, on the event loop, forms the next batch: up to
   ``max_batch_size`` items, taken from as many requests as fit (a request larger
   than a batch is split over several), once the batch is full or ``batch_wait_ms``
   has passed since its oldest item arrived. While the model thread is busy the next
   batch keeps filling: waiting costs nothing then, and the batch grows.
4. The forward pass runs in one dedicated model thread, so the event loop never
   blocks and one model is never entered twice at once.
5. Back on the event loop the rows are copied into each request's output; a
   request's future resolves when its last row is in.

Closing fails every request still waiting with :class:`UpstreamUnavailable` (503),
lets the running forward pass finish, and stops the thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from imgsearch_common.errors import (
    EmptyInput,
    ImgSearchError,
    Overloaded,
    PayloadTooLarge,
    UpstreamUnavailable,
)

from .metrics import KINDS, EncoderMetrics

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER_S = 60


class Encoder(Protocol):
    """What the batcher needs of a model: two blocking, batched encode calls."""

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class BatcherStats:
    """Counts since start, for tests and logs (the same facts are in the metrics)."""

    batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    largest_batch: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rejected_requests: int = 0
    failed_batches: int = 0


@dataclass(eq=False)
class _Request:
    kind: str
    items: Any  # (N, S, S, 3) uint8 array for images, list[str] for texts
    size: int
    future: asyncio.Future[np.ndarray]
    enqueued_at: float
    started_at: float | None = None  # when its first forward pass started
    next_item: int = 0  # first item not yet taken into a batch
    done_items: int = 0
    result: np.ndarray | None = None


@dataclass
class _Batch:
    kind: str
    parts: list[tuple[_Request, int, int]]  # (request, start, stop) in request item indices
    size: int


class DynamicBatcher:
    def __init__(
        self,
        encoder: Encoder,
        *,
        max_batch_size: int,
        batch_wait_ms: float,
        max_queue_items: int,
        metrics: EncoderMetrics | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_items < 1 or batch_wait_ms < 0:
            raise ValueError("batch size and queue size must be positive, the wait not negative")
        self._encoder = encoder
        self._max_batch = max_batch_size
        self._wait_s = batch_wait_ms / 1000.0
        self._max_queue = max_queue_items
        self._metrics = metrics if metrics is not None else EncoderMetrics()
        self.stats = BatcherStats()

        self._queues: dict[str, deque[_Request]] = {kind: deque() for kind in KINDS}
        self._waiting: dict[str, int] = dict.fromkeys(KINDS, 0)  # not yet in a batch
        self._admitted = 0  # waiting + in the running batch
        self._busy = False
        self._closing = False
        self._seconds_per_item = 0.0  # moving average, for Retry-After

        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the batcher is already started")
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-model")
        self._task = asyncio.create_task(self._run(), name="encoder-batcher")

    async def close(self) -> None:
        """Fail waiting requests, let the running forward pass end, stop the thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._fail_waiting()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def queue_items(self) -> int:
        """Items admitted and not yet encoded (what ``max_queue_items`` bounds)."""
        return self._admitted

    # --- the request side ------------------------------------------------------------

    async def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 crops → ``(N, D)`` float32, in the same order."""
        return await self._submit("image", pixels, len(pixels))

    async def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``N`` texts → ``(N, D)`` float32, in the same order."""
        return await self._submit("text", list(texts), len(texts))

    async def _submit(self, kind: str, items: Any, size: int) -> np.ndarray:
        if size == 0:
            raise EmptyInput("nothing to encode")
        if self._task is None or self._wakeup is None or self._closing:
            raise UpstreamUnavailable("the encoder is not running", retry_after=5)
        if size > self._max_queue:
            raise PayloadTooLarge(
                f"{size} items in one request; at most {self._max_queue} can be queued"
            )
        if self._admitted + size > self._max_queue:
            self.stats.rejected_requests += 1
            self._metrics.rejected_requests.labels(kind=kind).inc()
            raise Overloaded(
                f"the encoder queue is full ({self._admitted} of {self._max_queue} items "
                "waiting); retry later",
                retry_after=self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        request = _Request(kind, items, size, loop.create_future(), loop.time())
        self._queues[kind].append(request)
        self._waiting[kind] += size
        self._change_admitted(size)
        self._wakeup.set()
        # If the caller goes away, awaiting cancels the future; the collector then drops
        # the request's remaining items instead of encoding them.
        return await request.future

    def _retry_after(self) -> int:
        """Seconds until the queue has drained, by the recent forward speed."""
        estimate = math.ceil(self._admitted * self._seconds_per_item)
        return max(1, min(_MAX_RETRY_AFTER_S, estimate))

    def _change_admitted(self, delta: int) -> None:
        self._admitted += delta
        self._metrics.queue_items.set(self._admitted)

    # --- the collector (event loop) ------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                if batch is None:
                    break
                if self._inflight is not None:
                    await self._inflight  # already finished: the model thread was free
                now = asyncio.get_running_loop().time()
                for request, _, _ in batch.parts:
                    if request.started_at is None:
                        request.started_at = now
                self._busy = True
                self._inflight = asyncio.create_task(self._forward(batch))
        except Exception:
            # A bug here would leave every caller waiting forever: fail them instead.
            log.exception("the encoder batcher stopped")
        finally:
            self._closing = True
            if self._inflight is not None:
                await self._inflight
            self._fail_waiting()

    async def _next_batch(self) -> _Batch | None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            kind = self._oldest_kind()
            if kind is None:
                await self._sleep(None)
                continue
            if self._busy:
                # Whatever arrives while the model works joins the next batch for free.
                await self._sleep(None)
                continue
            deadline = self._queues[kind][0].enqueued_at + self._wait_s
            now = loop.time()
            if self._waiting[kind] >= self._max_batch or now >= deadline:
                batch = self._take(kind)
                if batch.parts:
                    return batch
                continue  # every request in it had been abandoned by its caller
            await self._sleep(deadline - now)
        return None

    async def _sleep(self, max_wait_s: float | None) -> None:
        """Until something changes (new request, model free, closing) or ``max_wait_s`` s."""
        assert self._wakeup is not None
        # No await between the caller's checks and clear(): no wake-up can be lost.
        self._wakeup.clear()
        try:
            async with asyncio.timeout(max_wait_s):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def _oldest_kind(self) -> str | None:
        heads = [(queue[0].enqueued_at, kind) for kind, queue in self._queues.items() if queue]
        return min(heads)[1] if heads else None

    def _take(self, kind: str) -> _Batch:
        queue = self._queues[kind]
        parts: list[tuple[_Request, int, int]] = []
        size = 0
        while queue and size < self._max_batch:
            request = queue[0]
            untaken = request.size - request.next_item
            if request.future.done():  # cancelled: its caller is gone
                queue.popleft()
                self._waiting[kind] -= untaken
                self._change_admitted(-untaken)
                continue
            count = min(untaken, self._max_batch - size)
            start = request.next_item
            parts.append((request, start, start + count))
            request.next_item += count
            size += count
            self._waiting[kind] -= count
            if request.next_item == request.size:
                queue.popleft()
        return _Batch(kind, parts, size)

    def _fail_waiting(self) -> None:
        for kind, queue in self._queues.items():
            while queue:
                request = queue.popleft()
                self._change_admitted(-(request.size - request.next_item))
                if not request.future.done():
                    request.future.set_exception(
                        UpstreamUnavailable("the encoder is shutting down", retry_after=5)
                    )
            self._waiting[kind] = 0

    # --- the forward pass ------------------------------------------------------------

    async def _forward(self, batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        try:
            out, seconds = await loop.run_in_executor(self._executor, self._forward_sync, batch)
        except Exception:
            log.exception("forward pass over %d %s items failed", batch.size, batch.kind)
            self.stats.failed_batches += 1
            self._metrics.failed_batches.labels(kind=batch.kind).inc()
            for request, _, _ in batch.parts:
                if not request.future.done():
                    request.future.set_exception(
                        ImgSearchError("the model failed to encode this request")
                    )
        else:
            self._record(batch, seconds)
            for request in self._distribute(batch, out):
                self._record_request(request, loop.time())
        finally:
            self._change_admitted(-batch.size)
            self._busy = False
            assert self._wakeup is not None
            self._wakeup.set()

    def _forward_sync(self, batch: _Batch) -> tuple[np.ndarray, float]:
        """In the model thread: gather the batch's items, encode them, time it."""
        started = time.perf_counter()
        if batch.kind == "image":
            chunks = [request.items[a:b] for request, a, b in batch.parts]
            pixels = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            out = self._encoder.encode_pixels(pixels)
        else:
            texts = [text for request, a, b in batch.parts for text in request.items[a:b]]
            out = self._encoder.encode_texts(texts)
        seconds = time.perf_counter() - started
        if out.ndim != 2 or out.shape[0] != batch.size:
            raise RuntimeError(f"the model returned {out.shape} for {batch.size} items")
        return out, seconds

    def _record(self, batch: _Batch, seconds: float) -> None:
        kind, size = batch.kind, batch.size
        self.stats.batches[kind] += 1
        self.stats.items[kind] += size
        self.stats.largest_batch[kind] = max(self.stats.largest_batch[kind], size)
        self._metrics.batch_size.labels(kind=kind).observe(size)
        self._metrics.forward_seconds.labels(kind=kind).observe(seconds)
        self._metrics.items_encoded.labels(kind=kind).inc(size)
        per_item = seconds / size
        if self._seconds_per_item == 0.0:
            self._seconds_per_item = per_item
        else:
            self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * per_item

    def _record_request(self, request: _Request, done_at: float) -> None:
        started = request.started_at if request.started_at is not None else done_at
        seconds = self._metrics.request_seconds
        seconds.labels(kind=request.kind, stage="queue").observe(started - request.enqueued_at)
        seconds.labels(kind=request.kind, stage="model").observe(done_at - started)

    @staticmethod
    def _distribute(batch: _Batch, out: np.ndarray) -> list[_Request]:
        """Copy the rows into their requests; the requests completed by this batch."""
        completed = []
        offset = 0
        for request, start, stop in batch.parts:
            count = stop - start
            if not request.future.done():
                if request.result is None:
                    request.result = np.empty((request.size, out.shape[1]), dtype=np.float32)
                request.result[start:stop] = out[offset : offset + count]
                request.done_items += count
                if request.done_items == request.size:
                    request.future.set_result(request.result)
                    completed.append(request)
            offset += count
        return completed
