"""The whole stack in this process: the real encoder, search API and worker, no processes.

Everything is our real code: the encoder app with seeded random weights, the search API
app with its Qdrant Edge shard in a temporary folder, worker loops on a real Redis
server. What is replaced is the network between them, at the transport
(``httpx.ASGITransport``), the one boundary we do not own.

The services share one event loop on a thread of their own, so the tests see them as a
server: synchronous tests use :meth:`InProcessStack.client` (an ``httpx.Client``), async
tests (on their own loops) :meth:`InProcessStack.async_client`; both go through
:class:`LoopTransport`, which hands each request to the stack's loop. Starting takes
one model load (seconds), against the process stack's three (``tests/e2e``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from imgsearch_api.app import create_app
from imgsearch_api.settings import ApiSettings
from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue
from imgsearch_encoder import EncoderSettings
from imgsearch_encoder import create_app as create_encoder_app
from imgsearch_worker.direct_index import open_index_writer
from imgsearch_worker.settings import WorkerSettings
from imgsearch_worker.worker import Worker

T = TypeVar("T")

TOKEN = "in-process-internal-token"
ENCODER_URL = "http://encoder"
API_URL = "http://api"
#: The search API's internal listener (``INTERNAL_PORT``), where the workers hand their
#: vectors: ``httpx.ASGITransport`` gives the app the URL's port as the listener's
#: (``scope["server"]``), so ``API_URL`` (port 80) is the public listener and this one the
#: internal one.
INTERNAL_PORT = 8002
API_INTERNAL_URL = f"http://api:{INTERNAL_PORT}"
#: Settings of the worker loops, as the process stack's (a stalled job is taken over
#: after 3 s, retries start after 0.2 s).
WORKER_ENV: dict[str, Any] = {
    "claim_idle_ms": 3000,
    "maintenance_interval_s": 0.5,
    "retry_base_s": 0.2,
}


class LoopTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Requests to an ASGI app that runs on another thread's event loop.

    The request body is read here, the app answers on its loop (through
    ``httpx.ASGITransport``), and the whole response body travels back.
    """

    def __init__(self, app: FastAPI, loop: asyncio.AbstractEventLoop) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = loop

    async def _on_loop(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        body = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return asyncio.run_coroutine_threadsafe(self._on_loop(request), self._loop).result()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        future = asyncio.run_coroutine_threadsafe(self._on_loop(request), self._loop)
        return await asyncio.wrap_future(future)


def encoder_settings(**overrides: Any) -> EncoderSettings:
    """The encoder of the test stacks: ViT-B-32 with seeded random weights, on the CPU."""
    values: dict[str, Any] = {
        "clip_model": "ViT-B-32",
        "clip_pretrained": "random",
        "clip_random_seed": 0,
        "device": "cpu",
        "internal_token": TOKEN,
        "torch_threads": 2,
    }
    return EncoderSettings(**{**values, **overrides})


@dataclass
class InProcessStack:
    """Encoder + search API + ``workers`` worker loops on one event loop of their own."""

    data_dir: Path
    redis_url: str
    workers: int = 2
    api_overrides: dict[str, Any] = field(default_factory=dict)
    #: ``INDEX_ROOTS`` of the search API (the folders the tests index lie under them).
    index_roots: list[Path] = field(default_factory=list)

    loop: asyncio.AbstractEventLoop = field(init=False)
    encoder_app: FastAPI = field(init=False)
    api_app: FastAPI = field(init=False)
    _thread: threading.Thread = field(init=False)
    _exit: contextlib.AsyncExitStack = field(init=False)
    _stop_workers: asyncio.Event = field(init=False)
    _worker_tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)

    # --- what the tests use -----------------------------------------------------------------

    def api_settings(self, **overrides: Any) -> ApiSettings:
        """Settings of a search API wired to this stack's Redis and encoder."""
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "redis_url": self.redis_url,
            "encoder_url": ENCODER_URL,
            "internal_token": TOKEN,
            "index_roots": list(self.index_roots),
            # The name the tests' clients use (API_URL, API_INTERNAL_URL).
            "allowed_hosts": ["api"],
            "internal_port": INTERNAL_PORT,
        }
        return ApiSettings(**{**values, **overrides})

    def create_api(self, settings: ApiSettings, **kwargs: Any) -> FastAPI:
        """Another search API app (for a test's own loop) that uses this stack's encoder;
        ``kwargs`` go to ``create_app`` (URL transport and resolver fakes)."""
        return create_app(settings, encoder_transport=self.encoder_transport(), **kwargs)

    def encoder_transport(self) -> LoopTransport:
        """The transport to this stack's encoder, for an app or client on another loop."""
        return LoopTransport(self.encoder_app, self.loop)

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(
            transport=LoopTransport(self.api_app, self.loop), base_url=API_URL, timeout=timeout
        )

    def async_client(self, timeout: float = 120.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=LoopTransport(self.api_app, self.loop), base_url=API_URL, timeout=timeout
        )

    def encoder_client(self) -> httpx.Client:
        """A plain HTTP client of the encoder app (no token)."""
        return httpx.Client(transport=self.encoder_transport(), base_url=ENCODER_URL)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coro`` on the stack's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> InProcessStack:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="in-process-stack", daemon=True
        )
        self._thread.start()
        try:
            self.run(self._start(), timeout=300)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(AttributeError):
                self.run(self._stop(), timeout=120)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
        self.loop.close()

    def __enter__(self) -> InProcessStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        self._exit = contextlib.AsyncExitStack()
        self._stop_workers = asyncio.Event()
        # The default engine (on a CPU: onnx, its graphs in ONNX_CACHE_DIR, else DATA_DIR).
        self.encoder_app = create_encoder_app(encoder_settings(data_dir=self.data_dir))
        await self._exit.enter_async_context(_lifespan(self.encoder_app))
        self.api_app = create_app(
            self.api_settings(**self.api_overrides),
            encoder_transport=httpx.ASGITransport(app=self.encoder_app),
        )
        await self._exit.enter_async_context(_lifespan(self.api_app))
        for i in range(self.workers):
            await self._start_worker(i)

    async def _start_worker(self, index: int) -> None:
        settings = WorkerSettings(
            redis_url=self.redis_url,
            encoder_url=ENCODER_URL,
            api_internal_url=API_INTERNAL_URL,
            internal_token=TOKEN,
            worker_name=f"in-process-{index}",
            **WORKER_ENV,
        )
        redis = Redis.from_url(self.redis_url)
        self._exit.push_async_callback(redis.aclose)
        encoder = EncoderClient(
            ENCODER_URL, TOKEN, transport=httpx.ASGITransport(app=self.encoder_app)
        )
        self._exit.push_async_callback(encoder.aclose)
        # The transport sends to the URL's port: the internal listener (API_INTERNAL_URL).
        index = open_index_writer(settings, TOKEN, transport=httpx.ASGITransport(app=self.api_app))
        self._exit.push_async_callback(index.aclose)
        worker = Worker(settings, JobQueue(redis), encoder, index)
        self._worker_tasks.append(asyncio.create_task(worker.run(self._stop_workers)))
        await asyncio.wait_for(worker.ready.wait(), timeout=60)

    async def _stop(self) -> None:
        self._stop_workers.set()
        if self._worker_tasks:
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        await self._exit.aclose()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def served(app: FastAPI, base_url: str = API_URL) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan entered, and a client of it, on the caller's loop."""
    async with _lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
