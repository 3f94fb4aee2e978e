"""What a worker's /health and /metrics say about its circuit breakers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue
from imgsearch_worker.__main__ import _answer
from imgsearch_worker.index_client import IndexClient
from imgsearch_worker.settings import WorkerSettings
from imgsearch_worker.worker import Worker


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    # Nothing is contacted: the answers come from the worker's own state.
    redis = Redis.from_url("redis://127.0.0.1:9/0")
    encoder = EncoderClient("http://encoder", None)
    index = IndexClient("http://api", None)
    yield Worker(
        WorkerSettings(worker_name="w1", breaker_failures=2), JobQueue(redis), encoder, index
    )
    await index.aclose()
    await encoder.aclose()
    await redis.aclose()


def _health(worker: Worker) -> tuple[str, dict[str, object]]:
    status, ctype, body = _answer(worker, "/health")
    assert ctype == "application/json"
    return status, json.loads(body)


async def test_health_shows_the_breaker(worker: Worker) -> None:
    status, body = _health(worker)
    assert status.startswith("503") and body["status"] == "starting"
    worker.ready.set()
    status, body = _health(worker)
    assert status.startswith("200")
    assert body == {
        "status": "ok",
        "worker": "w1",
        "breaker": "closed",
        "breakers": {"encoder": "closed", "index": "closed"},
        "redis": "ok",
    }
    for _ in range(2):
        worker.breakers["index"].record_failure()
    status, body = _health(worker)
    # The worker itself is fine (a restart would not help): 200, with the breaker open.
    assert status.startswith("200")
    assert body["breaker"] == "open"
    assert body["breakers"] == {"encoder": "closed", "index": "open"}


async def test_metrics_carry_the_breaker_state(worker: Worker) -> None:
    for _ in range(2):
        worker.breakers["encoder"].record_failure()
    _, _, body = _answer(worker, "/metrics")
    text = body.decode()
    assert 'imgsearch_worker_breaker_state{downstream="encoder"} 2.0' in text
    assert 'imgsearch_worker_breaker_state{downstream="index"} 0.0' in text
    assert 'imgsearch_worker_breaker_opened_total{downstream="encoder"} 1.0' in text
