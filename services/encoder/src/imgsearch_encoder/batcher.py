"""Cross-request dynamic batching: many small requests, few large forward passes.

How an item travels:

1. A request handler calls :meth:`DynamicBatcher.encode_pixels` (or ``encode_texts``).
   The request is *admitted* only if the items already admitted and not yet encoded
   plus its own stay within ``max_queue_items``; otherwise :class:`Overloaded`
   (HTTP 429 + Retry-After) is raised at once. Nothing queues without bound.
2. The request waits in a FIFO of its lane and kind (image crops and texts go through
   different towers, so a batch holds one kind) and the handler awaits its future.
   There are two lanes: ``query`` (searches, waiting on an answer) and ``bulk``
   (indexing, the default). Each has its own admission bound (``max_queue_items`` for
   bulk, ``max_query_queue_items`` for queries), so a full indexing backlog never
   refuses a search.
3. The collector task, on the event loop, forms the next batch: from the query lane
   when it has items, except that after ``query_batches_per_bulk`` query batches in a
   row while bulk items waited the bulk lane gets one (bulk work slows under a stream
   of searches, but never stops); up to
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

#: The lanes, in the order they are served: searches first, indexing second.
LANES = ("query", "bulk")
DEFAULT_LANE = "bulk"


class Encoder(Protocol):
    """What the batcher needs of a model: two blocking, batched encode calls."""

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class BatcherStats:
    """Counts since start, for tests and logs (the same facts are in the metrics)."""

    batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: Batches per lane (``query``, ``bulk``), both kinds together.
    lane_batches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LANES, 0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    largest_batch: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rejected_requests: int = 0
    failed_batches: int = 0


@dataclass(eq=False)
class _Request:
    lane: str
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
    lane: str
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
        max_query_queue_items: int | None = None,
        query_batches_per_bulk: int = 4,
        metrics: EncoderMetrics | None = None,
    ) -> None:
        """``max_queue_items`` bounds the bulk lane, ``max_query_queue_items`` the query
        lane (None: the same); ``query_batches_per_bulk``: query batches in a row before
        waiting bulk items get one."""
        query_queue = max_queue_items if max_query_queue_items is None else max_query_queue_items
        if (
            max_batch_size < 1
            or min(max_queue_items, query_queue) < 1
            or batch_wait_ms < 0
            or query_batches_per_bulk < 1
        ):
            raise ValueError(
                "batch size, queue sizes and query batches per bulk batch must be positive, "
                "the wait not negative"
            )
        self._encoder = encoder
        self._max_batch = max_batch_size
        self._wait_s = batch_wait_ms / 1000.0
        self._max_queue = {"query": query_queue, "bulk": max_queue_items}
        self._query_run_max = query_batches_per_bulk
        self._metrics = metrics if metrics is not None else EncoderMetrics()
        self.stats = BatcherStats()

        # One FIFO per (lane, kind).
        self._queues: dict[tuple[str, str], deque[_Request]] = {
            (lane, kind): deque() for lane in LANES for kind in KINDS
        }
        self._waiting = dict.fromkeys(self._queues, 0)  # items not yet in a batch
        self._admitted = dict.fromkeys(LANES, 0)  # waiting + in the running batch, per lane
        self._query_run = 0  # query batches since the last bulk one, taken while bulk waited
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
        """Items admitted and not yet encoded, both lanes."""
        return sum(self._admitted.values())

    # --- the request side ------------------------------------------------------------

    async def encode_pixels(self, pixels: np.ndarray, priority: str = DEFAULT_LANE) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 crops → ``(N, D)`` float32, in the same order;
        ``priority``: the lane, ``query`` or ``bulk``."""
        return await self._submit(priority, "image", pixels, len(pixels))

    async def encode_texts(self, texts: Sequence[str], priority: str = DEFAULT_LANE) -> np.ndarray:
        """``N`` texts → ``(N, D)`` float32, in the same order."""
        return await self._submit(priority, "text", list(texts), len(texts))

    async def _submit(self, lane: str, kind: str, items: Any, size: int) -> np.ndarray:
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        if size == 0:
            raise EmptyInput("nothing to encode")
        if self._task is None or self._wakeup is None or self._closing:
            raise UpstreamUnavailable("the encoder is not running", retry_after=5)
        bound = self._max_queue[lane]
        if size > bound:
            raise PayloadTooLarge(f"{size} items in one request; at most {bound} can be queued")
        admitted = self._admitted[lane]
        if admitted + size > bound:
            self.stats.rejected_requests += 1
            self._metrics.rejected_requests.labels(kind=kind).inc()
            raise Overloaded(
                f"the encoder queue is full ({admitted} of {bound} {lane} items "
                "waiting); retry later",
                retry_after=self._retry_after(lane),
            )
        loop = asyncio.get_running_loop()
        request = _Request(lane, kind, items, size, loop.create_future(), loop.time())
        self._queues[lane, kind].append(request)
        self._waiting[lane, kind] += size
        self._change_admitted(lane, size)
        self._wakeup.set()
        # If the caller goes away, awaiting cancels the future; the collector then drops
        # the request's remaining items instead of encoding them.
        return await request.future

    def _retry_after(self, lane: str) -> int:
        """Seconds until the lane's queue has drained, by the recent forward speed (a
        bulk item also waits for the queries ahead of it)."""
        items = self._admitted[lane] + (self._admitted["query"] if lane == "bulk" else 0)
        estimate = math.ceil(items * self._seconds_per_item)
        return max(1, min(_MAX_RETRY_AFTER_S, estimate))

    def _change_admitted(self, lane: str, delta: int) -> None:
        self._admitted[lane] += delta
        self._metrics.queue_items.set(self.queue_items)

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
            queue = self._next_queue()
            if queue is None:
                await self._sleep(None)
                continue
            if self._busy:
                # Whatever arrives while the model works joins the next batch for free.
                await self._sleep(None)
                continue
            deadline = self._queues[queue][0].enqueued_at + self._wait_s
            now = loop.time()
            if self._waiting[queue] >= self._max_batch or now >= deadline:
                batch = self._take(queue)
                if batch.parts:
                    self._count_turn(batch.lane)
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

    def _next_queue(self) -> tuple[str, str] | None:
        """The (lane, kind) the next batch comes from: the query lane's oldest kind,
        unless bulk items have waited through ``query_batches_per_bulk`` query batches
        in a row; then (or with no query waiting) the bulk lane's oldest kind."""
        query, bulk = self._oldest("query"), self._oldest("bulk")
        if query is not None and (bulk is None or self._query_run < self._query_run_max):
            return query
        return bulk

    def _oldest(self, lane: str) -> tuple[str, str] | None:
        heads = [
            (queue[0].enqueued_at, key)
            for key, queue in self._queues.items()
            if key[0] == lane and queue
        ]
        return min(heads)[1] if heads else None

    def _count_turn(self, lane: str) -> None:
        if lane == "bulk":
            self._query_run = 0
        elif self._oldest("bulk") is not None:
            self._query_run += 1

    def _take(self, key: tuple[str, str]) -> _Batch:
        lane, kind = key
        queue = self._queues[key]
        parts: list[tuple[_Request, int, int]] = []
        size = 0
        while queue and size < self._max_batch:
            request = queue[0]
            untaken = request.size - request.next_item
            if request.future.done():  # cancelled: its caller is gone
                queue.popleft()
                self._waiting[key] -= untaken
                self._change_admitted(lane, -untaken)
                continue
            count = min(untaken, self._max_batch - size)
            start = request.next_item
            parts.append((request, start, start + count))
            request.next_item += count
            size += count
            self._waiting[key] -= count
            if request.next_item == request.size:
                queue.popleft()
        return _Batch(lane, kind, parts, size)

    def _fail_waiting(self) -> None:
        for key, queue in self._queues.items():
            while queue:
                request = queue.popleft()
                self._change_admitted(key[0], -(request.size - request.next_item))
                if not request.future.done():
                    request.future.set_exception(
                        UpstreamUnavailable("the encoder is shutting down", retry_after=5)
                    )
            self._waiting[key] = 0

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
            self._change_admitted(batch.lane, -batch.size)
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
        self.stats.lane_batches[batch.lane] += 1
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
