"""``python -m imgsearch_worker`` / ``imgsearch-worker``: one worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue

from .index_client import IndexClient
from .settings import WorkerSettings
from .worker import Worker

log = logging.getLogger("imgsearch_worker")


def health_app(worker: Worker) -> FastAPI:
    app = FastAPI(title="imgsearch indexer worker", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> JSONResponse:
        ready = worker.ready.is_set()
        body = {"status": "ok" if ready else "starting", "worker": worker.name}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(worker.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def serve(settings: WorkerSettings) -> None:
    token = settings.internal_token_value()
    redis = Redis.from_url(settings.redis_url)
    encoder = EncoderClient(settings.encoder_url, token, timeout_s=settings.encoder_timeout_s)
    index = IndexClient(settings.api_internal_url, token)
    worker = Worker(settings, JobQueue(redis), encoder, index)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http: uvicorn.Server | None = None
    http_task: asyncio.Task[None] | None = None
    if settings.worker_port:
        config = uvicorn.Config(
            health_app(worker),
            host=settings.worker_host,
            port=settings.worker_port,
            log_level="warning",
        )
        http = uvicorn.Server(config)
        http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        http_task = asyncio.create_task(http.serve())
    try:
        await worker.run(stop)
    finally:
        if http is not None and http_task is not None:
            http.should_exit = True
            with contextlib.suppress(Exception):
                await http_task
        await index.aclose()
        await encoder.aclose()
        await redis.aclose()


def main() -> None:
    settings = WorkerSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
