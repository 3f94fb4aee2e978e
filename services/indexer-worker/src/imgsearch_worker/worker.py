"""The indexing loop.

A job: read + decode (EXIF applied) + full view + windows (thread pool) →
encoder (uint8 pixels over HTTP, batched there across all workers) → vectors
handed to the index owner → **only then** acknowledged. A worker killed at any
point before the acknowledgement loses nothing: the entry stays pending and is
claimed again after ``claim_idle_ms``; point ids are deterministic, so the
replay rewrites the same points.

Failures:
- permanent (corrupt file, unsupported format, too large, missing file): dead-
  lettered at once with the reason;
- transient (encoder or index owner unavailable/overloaded, anything unexpected):
  retried with exponential backoff up to ``max_attempts``, then dead-lettered;
- an entry claimed more than ``max_deliveries`` times (it keeps killing its
  worker) is dead-lettered as ``worker_crashed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.errors import ImgSearchError
from imgsearch_common.jobs import Delivery, JobQueue

from .direct_index import IndexWriter
from .metrics import WorkerMetrics
from .pipeline import PreparedImage, prepare_image
from .points import image_points
from .settings import WorkerSettings

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        queue: JobQueue,
        encoder: EncoderClient,
        index: IndexWriter,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.encoder = encoder
        self.index = index
        self.metrics = metrics or WorkerMetrics()
        self.name = settings.worker_name or f"{socket.gethostname()}:{os.getpid()}"
        self._pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self._tasks: set[asyncio.Task[None]] = set()
        #: Stream entries being handled here; their idle time is reset every maintenance
        #: round so that other workers do not claim them while this one is alive.
        self._in_flight: set[str] = set()
        self._image_size = 0
        self._layout = settings.window_layout()
        self.ready = asyncio.Event()

    # --- loops --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.ensure_group()
        info = await self.encoder.wait_ready(timeout_s=600)
        self._image_size = info.image_size
        self.ready.set()
        log.info("worker %s ready (encoder %s/%s)", self.name, info.model, info.pretrained)
        maintenance = asyncio.create_task(self._maintenance(stop))
        try:
            while not stop.is_set():
                free = self._free_slots()
                if not free:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                self._spawn(await self.queue.read(self.name, count=free, block_ms=1000))
        finally:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            # Jobs in flight finish (or stay pending for another worker to claim).
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=30)
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _free_slots(self) -> int:
        return max(0, self.settings.worker_concurrency - len(self._tasks))

    def _spawn(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            task = asyncio.create_task(self._guarded(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(self, delivery: Delivery) -> None:
        self.metrics.in_flight.inc()
        self._in_flight.add(delivery.entry_id)
        try:
            await self.handle(delivery)
        except Exception:
            # Redis itself failed while recording the outcome: the entry stays
            # pending and is claimed again later. Nothing is lost.
            log.exception("could not record the outcome of job %s", delivery.job.job_id)
        finally:
            self._in_flight.discard(delivery.entry_id)
            self.metrics.in_flight.dec()

    async def _maintenance(self, stop: asyncio.Event) -> None:
        s = self.settings
        while not stop.is_set():
            try:
                await self.queue.heartbeat(self.name, sorted(self._in_flight))
                await self.queue.promote_due()
                free = self._free_slots()
                if free:
                    claimed = await self.queue.claim_stale(self.name, s.claim_idle_ms, free)
                    if claimed:
                        log.info("claimed %d stale job(s)", len(claimed))
                    self._spawn(claimed)
            except Exception:
                log.exception("maintenance round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=s.maintenance_interval_s)

    # --- one job ------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.job
        s = self.settings
        if delivery.deliveries > s.max_deliveries:
            await self._fail(delivery, "worker_crashed", "the job stopped its worker repeatedly")
            return
        try:
            prepared = await self._prepare(job.path)
            t0 = time.perf_counter()
            vectors = await self.encoder.embed_pixels(prepared.pixels)
            t1 = time.perf_counter()
            await self.index.upsert(image_points(job, prepared, vectors))
            t2 = time.perf_counter()
        except ImgSearchError as exc:
            if exc.permanent:
                await self._fail(delivery, exc.code, exc.message)
            else:
                await self._retry(delivery, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("unexpected error on job %s (%s)", job.job_id, job.path)
            await self._retry(delivery, "internal_error", type(exc).__name__)
            return
        await self.queue.complete(delivery)
        timings = {**prepared.timings, "encode": t1 - t0, "upsert": t2 - t1}
        for stage, seconds in timings.items():
            self.metrics.stage_seconds.labels(stage).observe(seconds)
        self.metrics.windows.inc(len(prepared.boxes))
        self.metrics.jobs.labels("done").inc()

    async def _prepare(self, path: str) -> PreparedImage:
        s = self.settings
        work = partial(
            prepare_image,
            path,
            image_size=self._image_size,
            max_bytes=s.max_file_bytes,
            max_pixels=s.max_image_pixels,
            layout=self._layout,
            jpeg_draft=s.jpeg_draft,
            prescale_factor=s.window_prescale,
        )
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def _fail(self, delivery: Delivery, reason: str, message: str) -> None:
        log.warning("job %s failed permanently: %s (%s)", delivery.job.path, reason, message)
        await self.queue.fail(delivery, reason, message)
        self.metrics.jobs.labels("failed").inc()

    async def _retry(self, delivery: Delivery, reason: str, message: str) -> None:
        s = self.settings
        attempt = delivery.job.attempt + 1
        if attempt >= s.max_attempts:
            await self._fail(delivery, "retries_exhausted", f"{reason}: {message}")
            return
        delay = min(s.retry_max_s, s.retry_base_s * 2 ** (attempt - 1))
        log.info("job %s: %s, retry %d in %.1fs", delivery.job.path, reason, attempt, delay)
        await self.queue.retry_later(delivery, delay)
        self.metrics.jobs.labels("retried").inc()
