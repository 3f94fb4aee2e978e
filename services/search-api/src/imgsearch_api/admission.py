"""Admission: how much search work the API takes on at once, and who waits or is refused.

A search by image costs CPU (decoding, text removal, cutting crops) and the encoder's
time; nothing else bounds how many run at once. Three limits do:

- **per client** (``SEARCH_PER_CLIENT``, :class:`ClientAdmission`, an ASGI middleware
  around ``POST /api/search/*``): one client address may have that many searches in
  progress and as many again waiting, each for at most ``SEARCH_QUEUE_WAIT_S``; beyond,
  429 + ``Retry-After``. It runs before the request body is parsed: a refused request's
  body is read and dropped (never held), and a client's slow uploads hold only its own
  slots. The client is the
  ASGI scope's address: the API never reads ``X-Forwarded-For`` itself. Uvicorn replaces
  the address with the header's only when the peer is in its ``FORWARDED_ALLOW_IPS``
  (uvicorn's own setting, default the loopback addresses): set it to the reverse proxy's
  address when there is one, or every client shares the proxy's limit.
- **global** (``SEARCH_CONCURRENCY``, a :class:`Gate` in ``SearchService``): that many
  searches (by image, by URL, by text) do their work at once, ``SEARCH_QUEUE`` more wait
  for at most ``SEARCH_QUEUE_WAIT_S``; beyond, 503 + ``Retry-After``. It is taken after
  the body was read (or the URL fetched), so slow uploads do not hold it.
- **the CPU pool** (:class:`BoundedExecutor`): a search holds at most ``1 +
  RESCORE_TOP_K`` tasks of the pool at a time, so the global limit bounds the pool's
  queue by construction; the executor refuses (503) submissions beyond
  :func:`cpu_queue_bound` as well, which also bounds the other users of the pool
  (uploads' checks).

Every limit lives on the API's one event loop: no locks but the executor's.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from imgsearch_common.backpressure import MAX_RETRY_AFTER_S
from imgsearch_common.errors import ImgSearchError, Overloaded, UpstreamUnavailable

from .asgi_errors import refuse

if TYPE_CHECKING:
    from .settings import ApiSettings

P = ParamSpec("P")
T = TypeVar("T")

#: Paths whose requests count against the limit per client (POST only).
SEARCH_PREFIX = "/api/search/"
#: Retry-After bounds (s): at least 1 (the header counts whole seconds), at most what
#: our clients honour.
_MIN_RETRY_AFTER_S = 1
_MAX_RETRY_AFTER_S = int(MAX_RETRY_AFTER_S)
#: Until a first search has finished, the Retry-After estimate assumes this long one (s).
_FIRST_GUESS_S = 1.0


def _retry_after(seconds: float) -> int:
    return max(_MIN_RETRY_AFTER_S, min(_MAX_RETRY_AFTER_S, math.ceil(seconds)))


@dataclass(frozen=True)
class AdmissionLimits:
    """The search limits of ``ApiSettings``, with their defaults resolved."""

    concurrency: int
    per_client: int
    queue: int
    wait_s: float

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> AdmissionLimits:
        concurrency = settings.search_concurrency or 2 * settings.cpu_threads
        return cls(
            concurrency=concurrency,
            per_client=settings.search_per_client,
            queue=concurrency if settings.search_queue is None else settings.search_queue,
            wait_s=settings.search_queue_wait_s,
        )


def cpu_queue_bound(settings: ApiSettings) -> int:
    """Tasks the CPU pool holds (running and queued) before it refuses more: what the
    admitted searches can hold at once (``1 + RESCORE_TOP_K`` each), and room for
    ``4 x CPU_THREADS`` other tasks (an upload's check holds one)."""
    limits = AdmissionLimits.from_settings(settings)
    return limits.concurrency * (1 + settings.rescore_top_k) + 4 * settings.cpu_threads


class Gate:
    """At most ``capacity`` holders at once, at most ``waiting`` more waiting in line
    (first come, first served) for at most ``wait_s`` seconds each; a request beyond
    either bound gets ``refuse(message, retry_after)`` raised at once.

    ``Retry-After`` is estimated from how long holders recently kept their slot.
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int,
        waiting: int,
        wait_s: float,
        refuse: Callable[[str, int], ImgSearchError],
    ) -> None:
        if capacity < 1 or waiting < 0 or wait_s < 0:
            raise ValueError("capacity must be positive, waiting and wait_s not negative")
        self.name = name
        self.capacity = capacity
        self.max_waiting = waiting
        self.wait_s = wait_s
        self._refuse = refuse
        self._running = 0
        self._line: deque[asyncio.Future[None]] = deque()
        self._hold_s = 0.0  # moving average of how long a slot is held

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._line)

    @property
    def idle(self) -> bool:
        return self._running == 0 and not self._line

    def retry_after(self) -> int:
        """Seconds until a newcomer would likely get in: the line ahead of it and itself,
        ``capacity`` at a time, at the recent holding time per slot."""
        per_slot = self._hold_s or _FIRST_GUESS_S
        return _retry_after(per_slot * (len(self._line) + 1) / self.capacity)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block (waiting in line first if need be)."""
        await self.acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            self.release(time.monotonic() - started)

    async def acquire(self) -> None:
        """A slot now, or after waiting in line; else ``refuse(...)`` is raised."""
        if self._running < self.capacity and not self._line:
            self._running += 1
            return
        if len(self._line) >= self.max_waiting:
            raise self._refuse(self._busy_message(), self.retry_after())
        turn = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            async with asyncio.timeout(self.wait_s):
                await turn
        except BaseException as exc:  # timed out, or the caller went away
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over just now: pass it on
            else:
                turn.cancel()
                self._line.remove(turn)
            if isinstance(exc, TimeoutError):
                raise self._refuse(self._busy_message(), self.retry_after()) from None
            raise

    def release(self, held_s: float) -> None:
        """Give back a slot :meth:`acquire` gave, held for ``held_s`` seconds."""
        self._hold_s = held_s if self._hold_s == 0.0 else 0.8 * self._hold_s + 0.2 * held_s
        self._release()

    def _release(self) -> None:
        """Hand the slot to the first in line, or free it."""
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1

    def _busy_message(self) -> str:
        return (
            f"too many searches in progress ({self.name}: {self._running} running, "
            f"{len(self._line)} waiting); retry later"
        )


def _too_many_of_yours(message: str, retry_after: int) -> ImgSearchError:
    return Overloaded(message, retry_after=retry_after)


def _server_busy(message: str, retry_after: int) -> ImgSearchError:
    return UpstreamUnavailable(message, retry_after=retry_after)


def global_gate(limits: AdmissionLimits) -> Gate:
    """The limit on searches doing their work at once; beyond it 503 + Retry-After."""
    return Gate(
        "all clients",
        capacity=limits.concurrency,
        waiting=limits.queue,
        wait_s=limits.wait_s,
        refuse=_server_busy,
    )


class ClientAdmission:
    """Pure ASGI middleware: the limit per client address on ``POST /api/search/*``.

    One :class:`Gate` per address with requests in progress or waiting (dropped when it
    is idle again, so the table holds only current clients); beyond it 429 +
    Retry-After, answered without parsing the body (read to its end and dropped).
    """

    def __init__(self, app: ASGIApp, limits: AdmissionLimits, *, drain_bytes: int) -> None:
        """``drain_bytes``: most of a refused request's body read (and dropped) before
        the answer (``MAX_UPLOAD_BYTES``; a larger one gets its answer and the
        connection closed)."""
        self.app = app
        self.limits = limits
        self.drain_bytes = drain_bytes
        self._gates: dict[str, Gate] = {}

    def _gate(self, client: str) -> Gate:
        gate = self._gates.get(client)
        if gate is None:
            gate = Gate(
                "this client",
                capacity=self.limits.per_client,
                waiting=self.limits.per_client,
                wait_s=self.limits.wait_s,
                refuse=_too_many_of_yours,
            )
            self._gates[client] = gate
        return gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(SEARCH_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        gate = self._gate(key)
        try:
            try:
                await gate.acquire()
            except ImgSearchError as exc:
                # Answering while the body still arrives and then closing makes the
                # kernel reset the connection, and the client never reads the answer:
                # read the body to its end first (dropping it), then answer.
                whole = await _drain(receive, self.drain_bytes)
                status, code, message = exc.status_code, exc.code, exc.message
                await refuse(send, status, code, message, headers=exc.headers, close=not whole)
                return
            started = time.monotonic()
            try:
                await self.app(scope, receive, send)
            finally:
                gate.release(time.monotonic() - started)
        finally:
            if gate.idle and self._gates.get(key) is gate:
                del self._gates[key]


def client_key(scope: Scope) -> str:
    """Who is asking: the peer's address as the server put it in the scope."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _drain(receive: Receive, limit: int) -> bool:
    """Read the request's body and drop it; False if it was over ``limit`` bytes (or the
    client went away) and was not read to its end."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if size > limit:
            return False


class BoundedExecutor(ThreadPoolExecutor):
    """A thread pool that holds at most ``max_pending`` tasks (running and queued); a
    submission beyond raises :class:`UpstreamUnavailable` (503 + Retry-After, estimated
    from the recent task time) instead of queueing without bound."""

    def __init__(self, max_workers: int, max_pending: int, *, thread_name_prefix: str = "") -> None:
        if max_pending < max_workers:
            raise ValueError("max_pending must be at least max_workers")
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.max_pending = max_pending
        self._workers = max_workers
        self._pending = 0
        self._task_s = 0.0  # moving average of submit-to-done time
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._pending >= self.max_pending:
                per_task = self._task_s or _FIRST_GUESS_S
                raise UpstreamUnavailable(
                    f"the server's CPU queue is full ({self._pending} tasks); retry later",
                    retry_after=_retry_after(per_task * self._pending / self._workers),
                )
            self._pending += 1
        submitted = time.monotonic()
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise

        def done(_: Future[T]) -> None:
            took = time.monotonic() - submitted
            with self._lock:
                self._pending -= 1
                self._task_s = took if self._task_s == 0.0 else 0.8 * self._task_s + 0.2 * took

        future.add_done_callback(done)
        return future
