"""The indexing loop.

A job: read + hash (thread pool) → if that content is indexed already, the index owner
only adds the file to its image (``attach``: nothing decoded, nothing encoded) → else
decode (EXIF applied) + full view + windows (thread pool) → encoder (uint8 pixels over
HTTP, batched there across all workers) → vectors handed to the index owner → **only
then** acknowledged. A worker killed at any point before the acknowledgement loses
nothing: the entry stays pending and is claimed again after ``claim_idle_ms``; point ids
are deterministic, so the replay rewrites the same points. Jobs count by outcome:
``done`` (encoded and written), ``attached`` (a file of an indexed content), ``failed``,
``retried``, ``deferred``.

Failures:
- permanent (corrupt file, unsupported format, too large, missing file): dead-
  lettered at once with the reason;
- transient (encoder or index owner unavailable/overloaded): retried with capped
  exponential backoff, never dead-lettered within ``retry_window_s`` of the job's
  first failure (``retries.RetryPolicy``);
- unexpected (anything that is not our error, a bug most likely): retried up to
  ``max_attempts`` times;
- an entry claimed more than ``max_deliveries`` times (it keeps killing its
  worker) is dead-lettered as ``worker_crashed``; an entry that is not a job, as
  ``malformed_job`` (by the queue, when it reads it).

Taking over: jobs a dead worker left pending are claimed one at a time and each runs
alone: the worker takes no new job until those in flight are done, then claims one stale
entry and runs only it. A worker that dies holding four jobs gives each one more delivery;
taken over together, every later death would blame all of them again, and an innocent
job would be dead-lettered with the one that kills its worker. Alone, a taken-over job is
the only one its worker held when that worker died: the deliveries counted against it
are, but for its first, deaths of its own.

Outages: while the encoder or the index owner keeps failing, its circuit breaker
(``breaker``) is open: the worker reads no new entry and claims none, sends no job
(a job it already holds goes to the delayed set, untried), keeps its in-flight
jobs' heartbeats, and probes the downstream until it answers. Redis errors under
the loop (a restart, a ``FLUSHALL``) are waited out with backoff, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from redis.exceptions import RedisError

from imgsearch_common.encoder_client import EncoderClient, EncoderInfo
from imgsearch_common.errors import ImgSearchError, Overloaded, UpstreamUnavailable
from imgsearch_common.ids import image_id
from imgsearch_common.jobs import Delivery, Job, JobQueue, is_nogroup

from .breaker import Backoff, BreakerMetrics, BreakerState, CircuitBreaker, overall_state
from .direct_index import IndexWriter
from .metrics import WorkerMetrics
from .pipeline import FileRead, PreparedImage, prepare_image, read_file_stat
from .points import file_record, image_points
from .retries import RetryPolicy
from .settings import WorkerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

ENCODER = "encoder"
INDEX = "index"
#: Errors of a downstream that count against its breaker: it is down or overwhelmed.
_DOWNSTREAM_FAILURES = (UpstreamUnavailable, Overloaded)
#: What a Redis call may raise when the server is away (redis-py wraps socket errors).
_REDIS_ERRORS = (RedisError, OSError)


class _BreakerOpen(Exception):
    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker.name)
        self.breaker = breaker


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        queue: JobQueue,
        encoder: EncoderClient,
        index: IndexWriter,
        metrics: WorkerMetrics | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.encoder = encoder
        self.index = index
        self.metrics = metrics or WorkerMetrics()
        self.name = settings.worker_name or f"{socket.gethostname()}:{os.getpid()}"
        self.policy = RetryPolicy.from_settings(settings)
        self._clock = clock
        self._pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self._tasks: set[asyncio.Task[None]] = set()
        #: Stream entries being handled here; their idle time is reset every maintenance
        #: round so that other workers do not claim them while this one is alive.
        self._in_flight: set[str] = set()
        self._image_size = 0
        self._layout = settings.window_layout()
        self.ready = asyncio.Event()
        breaker_metrics = BreakerMetrics(self.metrics.registry, (ENCODER, INDEX))
        self.breakers = {
            name: CircuitBreaker(
                name,
                failures=settings.breaker_failures,
                probe_base_s=settings.breaker_probe_s,
                probe_max_s=settings.breaker_probe_max_s,
                listener=breaker_metrics.update,
            )
            for name in (ENCODER, INDEX)
        }
        self._probes: dict[str, Callable[[], Awaitable[Any]]] = {
            ENCODER: partial(self.encoder.info, refresh=True),
            INDEX: self.index.probe,
        }
        #: Whether the last Redis call of a loop succeeded (``/health``, and logging
        #: transitions instead of every failed call).
        self._redis_ok = True
        #: A job taken over from a dead worker, running alone (see the module doc), and
        #: whether stale jobs wait for this worker's jobs in flight to finish first.
        self._takeover: asyncio.Task[None] | None = None
        self._draining = False

    # --- state ----------------------------------------------------------------------------

    @property
    def breaker_state(self) -> str:
        """``closed``, ``half-open`` or ``open``: the worst of the downstreams' breakers."""
        return overall_state(self.breakers.values()).value

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ready.is_set() else "starting",
            "worker": self.name,
            "breaker": self.breaker_state,
            "breakers": {name: b.state.value for name, b in self.breakers.items()},
            "redis": "ok" if self._redis_ok else "unavailable",
        }

    # --- loops --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.redis_retry_base_s, self.settings.redis_retry_max_s)
        while not stop.is_set():
            try:
                await self.queue.ensure_group()
                self._redis_answered(backoff)
                break
            except _REDIS_ERRORS as exc:
                await self._redis_failed(exc, backoff, stop, "creating the consumer group")
        info = await self._wait_for_encoder(stop)
        if info is None:  # stopped first
            return
        self._image_size = info.image_size
        self.ready.set()
        log.info("worker %s ready (encoder %s/%s)", self.name, info.model, info.pretrained)
        maintenance = asyncio.create_task(self._maintenance(stop))
        try:
            while not stop.is_set():
                if any(b.state is BreakerState.OPEN for b in self.breakers.values()):
                    await self._probe(stop)
                    continue
                free = self._free_slots()
                if not free:
                    if self._tasks:
                        await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    else:  # draining with nothing in flight: maintenance claims next
                        await _wait(stop, min(0.1, self.settings.maintenance_interval_s))
                    continue
                try:
                    deliveries = await self.queue.read(self.name, count=free, block_ms=1000)
                except _REDIS_ERRORS as exc:
                    await self._redis_failed(exc, backoff, stop, "reading jobs")
                    continue
                self._redis_answered(backoff)
                self._spawn(deliveries)
        finally:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            # Jobs in flight finish (or stay pending for another worker to claim).
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=30)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _wait_for_encoder(self, stop: asyncio.Event) -> EncoderInfo | None:
        """The encoder's model facts once it answers, however long it takes (services start
        in any order, and an encoder may be loading its model); None if stopped first."""
        ready = asyncio.ensure_future(self.encoder.wait_ready(timeout_s=math.inf))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ready, stopping):
                if not task.done():
                    task.cancel()
            await asyncio.gather(ready, stopping, return_exceptions=True)
        return ready.result() if not ready.cancelled() else None

    def _free_slots(self) -> int:
        """Jobs this worker may take now: none while a breaker is open, one (the trial)
        while one is half-open, none while a taken-over job runs or stale ones wait."""
        if self._takeover is not None or self._draining:
            return 0
        state = overall_state(self.breakers.values())
        if state is BreakerState.OPEN:
            return 0
        limit = 1 if state is BreakerState.HALF_OPEN else self.settings.worker_concurrency
        return max(0, limit - len(self._tasks))

    def _spawn(self, deliveries: list[Delivery]) -> list[asyncio.Task[None]]:
        tasks = []
        for delivery in deliveries:
            task = asyncio.create_task(self._guarded(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            tasks.append(task)
        return tasks

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
        backoff = Backoff(s.redis_retry_base_s, s.redis_retry_max_s)
        while not stop.is_set():
            try:
                # Heartbeats go on whatever the breakers say: the jobs held here are
                # alive and must not be claimed as a dead worker's.
                await self.queue.heartbeat(self.name, sorted(self._in_flight))
                await self.queue.promote_due()
                await self._take_over_stale()
                self._redis_answered(backoff)
            except _REDIS_ERRORS as exc:
                await self._redis_failed(exc, backoff, stop, "maintenance")
                continue
            except Exception:
                log.exception("maintenance round failed")
            await _wait(stop, s.maintenance_interval_s)

    async def _take_over_stale(self) -> None:
        """One job a dead worker left pending, run alone (see the module doc): stale jobs
        make this worker take no new job; once those in flight are done, one is claimed.
        Nothing while a breaker is open."""
        if self._takeover is not None:
            return
        if overall_state(self.breakers.values()) is BreakerState.OPEN:
            return
        idle_ms = self.settings.claim_idle_ms
        if not await self.queue.has_stale(idle_ms):
            self._draining = False
            return
        self._draining = True
        if self._tasks:
            return
        try:
            claimed = await self.queue.claim_stale(self.name, idle_ms, 1)
        finally:
            self._draining = False
        if not claimed:
            return
        (delivery,) = claimed
        log.info(
            "took over job %s of a stopped worker (delivery %d): running it alone",
            delivery.job.path,
            delivery.deliveries,
        )
        (task,) = self._spawn([delivery])
        self._takeover = task
        task.add_done_callback(self._takeover_done)

    def _takeover_done(self, task: asyncio.Task[None]) -> None:
        if self._takeover is task:
            self._takeover = None

    async def _probe(self, stop: asyncio.Event) -> None:
        """Probe the downstreams whose breaker is open and due; then wait for the next."""
        for name, breaker in self.breakers.items():
            if not breaker.probe_due():
                continue
            try:
                await asyncio.wait_for(
                    self._probes[name](), timeout=self.settings.breaker_probe_timeout_s
                )
            except Exception as exc:
                log.debug("%s probe failed: %s", name, exc)
                breaker.probe_failed()
            else:
                breaker.probe_succeeded()
        waits = [b.seconds_to_probe() for b in self.breakers.values() if not b.allows_work()]
        if waits:
            await _wait(stop, min(waits))

    async def _redis_failed(
        self, exc: BaseException, backoff: Backoff, stop: asyncio.Event, doing: str
    ) -> None:
        """After a Redis error: the group again if it is gone, else wait (capped backoff)."""
        if is_nogroup(exc):
            log.warning("the consumer group is gone (Redis lost its data?): creating it again")
            try:
                await self.queue.ensure_group()
                self._redis_answered(backoff)
                return
            except _REDIS_ERRORS as again:
                exc = again
        delay = backoff.next()
        if self._redis_ok:
            log.warning("redis failed while %s (%s); retrying with backoff", doing, exc)
        else:
            log.debug("redis still failing while %s (%s); next try in %.1fs", doing, exc, delay)
        self._redis_ok = False
        await _wait(stop, delay)

    def _redis_answered(self, backoff: Backoff) -> None:
        backoff.reset()
        if not self._redis_ok:
            log.info("redis answers again")
            self._redis_ok = True

    # --- one job ------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.job
        s = self.settings
        if delivery.deliveries > s.max_deliveries:
            await self._fail(delivery, "worker_crashed", "the job stopped its worker repeatedly")
            return
        try:
            self._check_breaker(ENCODER)
            self._check_breaker(INDEX)
            timings, prepared = await self._index(job)
        except _BreakerOpen as exc:
            await self._defer(delivery, exc.breaker)
            return
        except ImgSearchError as exc:
            if exc.permanent:
                await self._fail(delivery, exc.code, exc.message)
            else:
                await self._retry(delivery, exc.code, exc.message, unexpected=False)
            return
        except Exception as exc:
            log.exception("unexpected error on job %s (%s)", job.job_id, job.path)
            await self._retry(delivery, "internal_error", type(exc).__name__, unexpected=True)
            return
        await self.queue.complete(delivery)
        for stage, seconds in timings.items():
            self.metrics.stage_seconds.labels(stage).observe(seconds)
        if prepared is None:
            self.metrics.jobs.labels("attached").inc()
            return
        self.metrics.windows.inc(len(prepared.boxes))
        self.metrics.jobs.labels("done").inc()

    async def _index(self, job: Job) -> tuple[dict[str, float], PreparedImage | None]:
        """Index the file of ``job``: its stage timings, and what was encoded (None: its
        content was indexed already, and the file was only attached to that image)."""
        t0 = time.perf_counter()
        read = await self._read(job.path)
        t1 = time.perf_counter()
        self._check_breaker(INDEX)
        record = file_record(job, read.size, read.mtime_ns)
        attach = self.index.attach(job.collection, image_id(read.sha256), record)
        if await self._downstream(INDEX, attach):
            return {"read": t1 - t0, "attach": time.perf_counter() - t1}, None
        self._check_breaker(ENCODER)
        prepared = await self._prepare(job.path, read)
        t2 = time.perf_counter()
        self._check_breaker(ENCODER)
        # The vectors must come from the model the hand-off names (the collection's check).
        # Read once and kept by the client: not an encoder call the breaker should count.
        model = (await self.encoder.info()).model_record()
        embed = self.encoder.embed_pixels(prepared.pixels, model=model.fingerprint)
        vectors = await self._downstream(ENCODER, embed)
        t3 = time.perf_counter()
        self._check_breaker(INDEX)
        points = image_points(job, prepared, vectors).model_copy(update={"model": model})
        await self._downstream(INDEX, self.index.upsert(points))
        t4 = time.perf_counter()
        timings = {**prepared.timings, "read": t1 - t0, "encode": t3 - t2, "upsert": t4 - t3}
        return timings, prepared

    def _check_breaker(self, name: str) -> None:
        breaker = self.breakers[name]
        if not breaker.allows_work():
            raise _BreakerOpen(breaker)

    async def _downstream(self, name: str, call: Awaitable[T]) -> T:
        """``call`` to a downstream, its outcome recorded by that downstream's breaker."""
        breaker = self.breakers[name]
        try:
            result = await call
        except _DOWNSTREAM_FAILURES:
            breaker.record_failure()
            raise
        breaker.record_success()
        return result

    async def _read(self, path: str) -> FileRead:
        work = partial(read_file_stat, path, self.settings.max_file_bytes)
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def _prepare(self, path: str, read: FileRead) -> PreparedImage:
        s = self.settings
        work = partial(
            prepare_image,
            path,
            read=read,
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

    async def _retry(
        self, delivery: Delivery, reason: str, message: str, *, unexpected: bool
    ) -> None:
        again = self.policy.next_job(delivery.job, self._clock(), unexpected=unexpected)
        if again is None:
            await self._fail(delivery, "retries_exhausted", f"{reason}: {message}")
            return
        delay = self.policy.delay_s(again.attempt)
        log.info("job %s: %s, retry %d in %.1fs", delivery.job.path, reason, again.attempt, delay)
        await self.queue.retry_later(delivery, delay, job=again)
        self.metrics.jobs.labels("retried").inc()

    async def _defer(self, delivery: Delivery, breaker: CircuitBreaker) -> None:
        """A job this worker holds while ``breaker`` is open: to the delayed set, untried
        and unchanged (no attempt counted), for whichever worker can run it later."""
        delay = max(self.settings.retry_base_s, breaker.seconds_to_probe())
        log.debug("job %s waits for %s (%.1fs)", delivery.job.path, breaker.name, delay)
        await self.queue.retry_later(delivery, delay, job=delivery.job)
        self.metrics.jobs.labels("deferred").inc()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
