"""``python -m imgsearch_worker`` / ``imgsearch-worker``: one worker process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue

from .direct_index import open_index_writer
from .settings import WorkerSettings
from .worker import Worker

log = logging.getLogger("imgsearch_worker")


def _answer(worker: Worker, path: str) -> tuple[str, str, bytes]:
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(worker.metrics.registry)
    if path == "/health":
        # Ready means this process works; an open breaker (a downstream is failing) or
        # an unreachable Redis is reported, not a reason to restart it (that would not help).
        status = "200 OK" if worker.ready.is_set() else "503 Service Unavailable"
        return status, "application/json", json.dumps(worker.health()).encode()
    body_404 = {"error": {"code": "not_found", "message": "not found"}}
    return "404 Not Found", "application/json", json.dumps(body_404).encode()


async def _respond(
    worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """``GET /health`` and ``GET /metrics``. A worker has no other HTTP surface, so a
    few lines of asyncio serve it; uvicorn's ``serve()`` would capture SIGINT/SIGTERM,
    which this process handles itself to stop the worker loop cleanly."""
    try:
        request_line = await asyncio.wait_for(reader.readline(), timeout=5)
        while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
            pass
        parts = request_line.decode("latin-1").split()
        path = parts[1] if len(parts) >= 2 and parts[0] == "GET" else ""
        status, ctype, body = _answer(worker, path)
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(settings: WorkerSettings) -> None:
    token = settings.internal_token_value()
    # Timeouts, so that a Redis behind a dead network link fails the call (and the loop
    # backs off) instead of hanging it; the socket timeout is well above XREADGROUP's
    # 1 s block.
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30)
    encoder = EncoderClient(settings.encoder_url, token, timeout_s=settings.encoder_timeout_s)
    index = open_index_writer(settings, token)
    worker = Worker(settings, JobQueue(redis), encoder, index)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http: asyncio.Server | None = None
    if settings.worker_port:
        http = await asyncio.start_server(
            lambda r, w: _respond(worker, r, w), settings.worker_host, settings.worker_port
        )
    try:
        await worker.run(stop)
    finally:
        if http is not None:
            http.close()
            await http.wait_closed()
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
