"""The search API application: ``create_app(settings)``.

The lifespan owns every long-lived resource — Redis pool, job queue, vector
store, encoder client, URL fetcher, text remover, CPU pool — and tears them
down in reverse order. The vector store is opened here because an embedded
Qdrant Edge shard can be owned by one process only: this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.errors import install_error_handlers, install_unavailable_handler
from imgsearch_common.jobs import JobQueue
from imgsearch_common.vectorstore import open_vector_store

from .admission import (
    AdmissionLimits,
    BoundedExecutor,
    ClientAdmission,
    cpu_queue_bound,
    global_gate,
)
from .duplicates import DuplicatesService, duplicates_gate
from .files import IndexedFiles
from .indexing import IndexingService
from .metrics import ApiMetrics
from .reindex import Reindexer
from .routes import duplicates, indexing, internal, library, media, pages, reindex, search
from .search import SearchService, SearchTuning
from .security import BodySizeLimit, install_exposure_guards
from .settings import ApiSettings
from .state import AppState
from .text_removal import TextRemover
from .thumbnails import Thumbnails
from .url_fetch import Resolver, SafeFetcher
from .watch import FolderWatcher

log = logging.getLogger(__name__)


def create_app(
    settings: ApiSettings | None = None,
    *,
    url_transport: httpx.AsyncBaseTransport | None = None,
    url_resolver: Resolver | None = None,
    encoder_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app. ``url_transport`` / ``url_resolver`` replace the network and DNS
    under the URL fetcher (tests fake the remote web at that boundary);
    ``encoder_transport`` the network to the encoder (tests run the real encoder app in
    process behind an ``httpx.ASGITransport``)."""
    settings = settings or ApiSettings()
    limits = AdmissionLimits.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.internal_token_value() is None:
            log.warning("INTERNAL_TOKEN is not set: the internal endpoints refuse every request")
        async with AsyncExitStack() as stack:
            # Bounded: a Redis that does not answer fails a request (503), never hangs it.
            redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
            stack.push_async_callback(redis.aclose)
            queue = JobQueue(redis)
            store = open_vector_store(settings, settings.data_dir)
            stack.push_async_callback(store.close)
            encoder = EncoderClient(
                settings.encoder_url,
                settings.internal_token_value(),
                timeout_s=settings.encoder_timeout_s,
                # Searches go before indexing work in the encoder's batcher.
                priority="query",
                transport=encoder_transport,
            )
            stack.push_async_callback(encoder.aclose)
            fetcher = SafeFetcher(
                max_bytes=settings.url_max_bytes,
                timeout_s=settings.url_fetch_timeout_s,
                allow_private=settings.url_allow_private,
                transport=url_transport,
                resolver=url_resolver,
            )
            stack.push_async_callback(fetcher.aclose)
            # Refuses (503) rather than queueing without bound (admission.py).
            pool = BoundedExecutor(
                settings.cpu_threads, cpu_queue_bound(settings), thread_name_prefix="api-cpu"
            )
            stack.callback(pool.shutdown, wait=False, cancel_futures=True)
            text_remover = TextRemover()
            await asyncio.to_thread(text_remover.load)  # fail at start-up, not on a request
            files = IndexedFiles.of(settings.index_roots, settings.uploads_path())
            # Duplicate scans run on a thread of their own: searches keep the pool.
            scans = ThreadPoolExecutor(1, thread_name_prefix="api-duplicates")
            stack.callback(scans.shutdown, wait=False, cancel_futures=True)
            reindexer = Reindexer(store, queue, redis)
            stack.push_async_callback(reindexer.close)  # stopped before the store closes
            app.state.resources = AppState(
                settings=settings,
                redis=redis,
                queue=queue,
                store=store,
                encoder=encoder,
                fetcher=fetcher,
                text_remover=text_remover,
                pool=pool,
                files=files,
                search=SearchService(
                    store,
                    encoder,
                    pool,
                    tuning=SearchTuning.from_settings(settings),
                    max_pixels=settings.max_image_pixels,
                    remove_text=text_remover.remove,
                    admission=global_gate(limits),
                    files=files,
                ),
                indexing=IndexingService(
                    queue,
                    fetcher,
                    pool,
                    upload_dir=settings.uploads_path(),
                    index_roots=tuple(settings.index_roots),
                    max_pixels=settings.max_image_pixels,
                    store=store,
                ),
                metrics=app.state.metrics,
                duplicates=DuplicatesService(
                    store,
                    files,
                    scans,
                    max_pixels=settings.max_image_pixels,
                    admission=duplicates_gate(settings),
                ),
                reindexer=reindexer,
            )
            try:
                await queue.ensure_group()
                await reindexer.resume()
            except Exception:
                log.warning("redis not reachable at start-up; indexing endpoints will fail")
            if settings.watch_dirs:
                watcher = FolderWatcher(
                    app.state.resources.indexing,
                    queue,
                    settings.watch_dirs,
                    settings.watch_collection,
                    settings.watch_debounce_s,
                )
                watcher.start()
                stack.push_async_callback(watcher.aclose)  # stopped first, before the store
                app.state.watcher = watcher
            yield

    app = FastAPI(
        title="imgsearch",
        description="Semantic image search: full and partial matching with CLIP and Qdrant.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by routes/media.py from an installed package, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    app.state.thumbnails = Thumbnails.from_settings(settings)
    app.state.assets = media.Assets.load()
    install_error_handlers(app)
    # Redis down: the queue's endpoints answer 503 + Retry-After; searches go on.
    install_unavailable_handler(
        app, (RedisConnectionError, RedisTimeoutError), "the job queue is unavailable"
    )
    app.include_router(search.router)
    app.include_router(indexing.router)
    app.include_router(library.router)
    app.include_router(reindex.router)
    app.include_router(duplicates.router)
    app.include_router(internal.router)
    app.include_router(pages.router)
    app.include_router(media.router)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics: ApiMetrics = request.app.state.metrics
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    # Outermost: refuse oversized bodies before anything parses them.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    # Before that, the limit per client: a refused search (429) is dropped unparsed.
    app.add_middleware(ClientAdmission, limits=limits, drain_bytes=settings.max_upload_bytes)
    # Outermost of all: the Host, the Origin of writes, the listener a path belongs to.
    install_exposure_guards(app, settings)
    return app
