"""Bounded work per search: a limit per client (429 + Retry-After), a global one (503 +
Retry-After), each with a short waiting line, and a CPU pool that refuses rather than
queues without bound.

The HTTP tests run a search API of their own (small limits, an empty index of its own) on
the test's event loop, wired to the session's in-process encoder; each client is an
``httpx.ASGITransport`` with its own address in the ASGI scope, which is what the limit
per client keys on.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from imgsearch_common.errors import Overloaded, UpstreamUnavailable
from tests.support.images import jpeg_bytes
from tests.support.inprocess import InProcessStack

pytestmark = [pytest.mark.slow]

#: A query that keeps the CPU pool and the encoder busy for a while: every option on.
HEAVY = {"remove_text": "true", "enhance_image": "true", "match_mode": "auto"}


def _heavy_query() -> bytes:
    return jpeg_bytes(Image.effect_noise((1600, 1200), 60).convert("RGB"), 85)


def _plain_query() -> bytes:
    return jpeg_bytes(Image.effect_noise((320, 240), 40).convert("RGB"), 85)


@asynccontextmanager
async def _api(stack: InProcessStack, data_dir: Path, **limits: Any) -> AsyncIterator[FastAPI]:
    app = stack.create_api(stack.api_settings(data_dir=data_dir, rescore_top_k=0, **limits))
    async with app.router.lifespan_context(app):
        yield app


def _client(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120)


async def _by_image(
    client: httpx.AsyncClient, data: bytes, headers: dict[str, str] | None = None, **form: str
) -> httpx.Response:
    return await client.post(
        "/api/search/by-image",
        files={"file": ("q.jpg", data, "image/jpeg")},
        data=form,
        headers=headers,
    )


def _assert_refusal(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == code


# --- over HTTP ----------------------------------------------------------------------------


async def test_one_client_gets_429_beyond_its_share_and_another_is_still_served(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    """12 heavy searches at once from one address: at most 2 run and 2 wait, the rest are
    told to come back (429 + Retry-After); nothing hangs or fails otherwise. Meanwhile a
    plain search from another address is answered, before the first client's burst is."""
    async with (
        _api(inprocess, tmp_path, search_per_client=2, search_concurrency=4) as app,
        _client(app, "10.1.0.1") as greedy,
        _client(app, "10.1.0.2") as polite,
    ):
        heavy = _heavy_query()
        finished: list[str] = []

        async def greedy_search() -> httpx.Response:
            r = await _by_image(greedy, heavy, **HEAVY)
            finished.append("greedy")
            return r

        burst = [asyncio.ensure_future(greedy_search()) for _ in range(12)]
        await asyncio.sleep(0.2)  # the burst is in
        plain = await _by_image(polite, _plain_query())
        finished.append("polite")
        answers = await asyncio.gather(*burst)

    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {200, 429}, codes
    assert codes[429] >= 12 - 4, codes  # 2 running + 2 waiting at most
    assert codes[200] >= 2, codes
    for r in answers:
        if r.status_code == 429:
            _assert_refusal(r, 429, "overloaded")
    assert plain.status_code == 200, plain.text
    # The plain search did not wait for the burst.
    assert finished.index("polite") < len(finished) - 1, finished


async def test_the_client_is_its_address_not_what_x_forwarded_for_says(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    async with (
        _api(inprocess, tmp_path, search_per_client=1, search_concurrency=8) as app,
        _client(app, "10.2.0.1") as spoofer,
    ):
        heavy = _heavy_query()
        answers = await asyncio.gather(
            *(
                _by_image(spoofer, heavy, {"X-Forwarded-For": f"192.0.2.{i}"}, **HEAVY)
                for i in range(6)
            )
        )
    codes = Counter(r.status_code for r in answers)
    assert codes[429] >= 6 - 2, codes  # 1 running + 1 waiting


async def test_many_clients_beyond_the_global_limit_get_503_with_retry_after(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    """8 addresses, one heavy search each, 2 may run and 1 may wait: the others are
    refused at once with 503 + Retry-After (the server is busy, not the client greedy)."""
    async with _api(
        inprocess, tmp_path, search_per_client=2, search_concurrency=2, search_queue=1
    ) as app:
        heavy = _heavy_query()
        clients = [_client(app, f"10.3.0.{i}") for i in range(8)]
        try:
            answers = await asyncio.gather(*(_by_image(c, heavy, **HEAVY) for c in clients))
        finally:
            for c in clients:
                await c.aclose()
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {200, 503}, codes
    assert codes[503] >= 8 - 3, codes
    assert codes[200] >= 2, codes
    for r in answers:
        if r.status_code == 503:
            _assert_refusal(r, 503, "upstream_unavailable")


async def test_text_searches_are_counted_too(inprocess: InProcessStack, tmp_path: Path) -> None:
    async with (
        _api(inprocess, tmp_path, search_per_client=1, search_concurrency=8) as app,
        _client(app, "10.4.0.1") as client,
    ):
        answers = await asyncio.gather(
            *(client.post("/api/search/by-text", json={"text": f"a cat {i}"}) for i in range(8))
        )
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {200, 429}, codes
    assert codes[200] >= 1 and codes[429] >= 1, codes


async def test_the_apis_cpu_pool_is_bounded(inprocess: InProcessStack, tmp_path: Path) -> None:
    from imgsearch_api.admission import BoundedExecutor

    async with _api(inprocess, tmp_path) as app:
        pool = app.state.resources.pool
        assert isinstance(pool, BoundedExecutor)
        assert 0 < pool.max_pending < 1000


# --- the parts -----------------------------------------------------------------------------


def _refuse_429(message: str, retry_after: int) -> Overloaded:
    return Overloaded(message, retry_after=retry_after)


async def test_gate_admits_capacity_queues_a_few_and_refuses_the_rest() -> None:
    from imgsearch_api.admission import Gate

    gate = Gate("test", capacity=2, waiting=1, wait_s=5.0, refuse=_refuse_429)
    release = asyncio.Event()
    entered: list[int] = []

    async def hold(i: int) -> None:
        async with gate.slot():
            entered.append(i)
            await release.wait()

    tasks = [asyncio.ensure_future(hold(i)) for i in range(5)]
    await asyncio.sleep(0.05)
    assert entered == [0, 1]
    assert (gate.running, gate.waiting) == (2, 1)
    refused = [t for t in tasks if t.done()]
    assert len(refused) == 2
    for t in refused:
        exc = t.exception()
        assert isinstance(exc, Overloaded) and exc.retry_after >= 1

    release.set()
    await asyncio.gather(*(t for t in tasks if t not in refused))
    assert entered == [0, 1, 2]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_gate_waits_a_bounded_time_and_leaves_no_slot_behind() -> None:
    from imgsearch_api.admission import Gate

    gate = Gate("test", capacity=1, waiting=4, wait_s=0.05, refuse=_refuse_429)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        async with gate.slot():
            pass
    # A waiter whose caller goes away leaves the line.
    waiter = asyncio.ensure_future(hold())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.waiting == 0
    release.set()
    await holder
    assert (gate.running, gate.waiting) == (0, 0)
    async with gate.slot():
        assert gate.running == 1


def test_bounded_executor_refuses_beyond_its_bound_with_503() -> None:
    from imgsearch_api.admission import BoundedExecutor

    pool = BoundedExecutor(1, max_pending=2, thread_name_prefix="test")
    gate = threading.Event()
    try:
        first = pool.submit(gate.wait, 10)
        second = pool.submit(gate.wait, 10)
        with pytest.raises(UpstreamUnavailable) as refused:
            pool.submit(gate.wait, 10)
        assert int(refused.value.headers["Retry-After"]) >= 1
        gate.set()
        assert first.result(10) and second.result(10)
        assert pool.submit(lambda: 3).result(10) == 3  # room again once they are done
    finally:
        gate.set()
        pool.shutdown(wait=True)


async def test_a_refused_request_is_read_to_its_end_first() -> None:
    """Closing a connection whose request body is still arriving makes the peer's kernel
    answer with a reset, and the client never reads its 429: the middleware reads (and
    drops) the body before it answers, and keeps the connection."""
    from imgsearch_api.admission import AdmissionLimits, ClientAdmission

    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limits = AdmissionLimits(concurrency=8, per_client=1, queue=8, wait_s=5.0)
    middleware = ClientAdmission(app, limits, drain_bytes=1_000_000)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/search/by-image",
        "client": ("10.5.0.1", 1),
        "headers": [],
    }

    def request(chunks: int) -> tuple[Any, list[dict[str, Any]], list[int]]:
        sent: list[dict[str, Any]] = []
        read = [0]

        async def receive() -> dict[str, Any]:
            read[0] += 1
            return {"type": "http.request", "body": b"x" * 1000, "more_body": read[0] < chunks}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        return asyncio.ensure_future(middleware(scope, receive, send)), sent, read

    running = [request(3), request(3)]  # one runs, one waits
    await asyncio.sleep(0.01)
    refused, sent, read = request(5)
    await refused
    assert read[0] == 5  # the whole body, chunk by chunk
    start = sent[0]
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert int(headers[b"retry-after"]) >= 1
    assert b"connection" not in headers

    # A body larger than the limit is not read to its end: refused, connection closed.
    oversized = ClientAdmission(app, limits, drain_bytes=2_500)
    middleware = oversized
    blockers = [request(3), request(3)]
    await asyncio.sleep(0.01)
    refused, sent, read = request(100)
    await refused
    assert read[0] == 3
    assert dict(sent[0]["headers"])[b"connection"] == b"close"

    release.set()
    await asyncio.gather(*(t for t, _, _ in running + blockers))
