"""Queries before indexing: ``X-Priority: query`` requests have a lane and a queue bound of
their own, and are batched before bulk work, which still gets a turn (at least one bulk
batch per ``QUERY_BATCHES_PER_BULK`` query batches while both wait). On the real model."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from PIL import Image

from imgsearch_common.imaging import crops_to_model_inputs

pytestmark = pytest.mark.asyncio(loop_scope="session")

BOXES = [(x, y, x + 200, y + 200) for x in (0, 150, 300) for y in (0, 150, 300)]


@pytest.fixture(scope="module")
def crops(astronaut: Image.Image) -> np.ndarray:
    return crops_to_model_inputs(astronaut, BOXES, 224)


def _post(
    client: httpx.AsyncClient, auth: dict[str, str], crops: np.ndarray, priority: str | None
) -> asyncio.Future[httpx.Response]:
    headers = {**auth, "X-Crop-Count": str(len(crops)), "Content-Type": "application/octet-stream"}
    if priority is not None:
        headers["X-Priority"] = priority
    return asyncio.ensure_future(
        client.post("/v1/embed/pixels", content=crops.tobytes(), headers=headers)
    )


async def test_a_query_overtakes_a_full_bulk_backlog(encoder, auth, crops) -> None:
    """The bulk lane is full (64 items: 13 forward passes of 5); a query of 2 crops is
    still admitted, and answered while most of the backlog still waits."""
    batcher = encoder.app.state.batcher
    backlog = [_post(encoder.client, auth, crops[:4], None) for _ in range(16)]
    for _ in range(2000):  # until every bulk request is admitted
        if batcher.queue_items == 64:
            break
        await asyncio.sleep(0.005)
    assert batcher.queue_items == 64
    query = _post(encoder.client, auth, crops[4:6], "query")

    answer = await query
    bulk_done_then = sum(f.done() for f in backlog)
    bulk = await asyncio.gather(*backlog)

    assert answer.status_code == 200, answer.content[:200]
    assert {r.status_code for r in bulk} == {200}
    # One batch in the model when the query came, the query's the next: at most 2
    # bulk batches (of 5 items, 4 per request) before it.
    assert bulk_done_then <= 4, bulk_done_then
    vectors = np.frombuffer(answer.content, dtype="<f4").reshape(2, -1)
    model = encoder.app.state.encoder
    alone = await asyncio.to_thread(model.encode_pixels, crops[4:6])
    assert float(np.min(np.sum(vectors * alone, axis=1))) > 0.999


async def test_the_query_lane_has_its_own_bound(make_settings, run_encoder, auth, crops) -> None:
    settings = make_settings(
        clip_model="ViT-S-32",
        max_queue_items=4,
        max_query_queue_items=2,
        max_request_crops=2,
        max_request_texts=2,
        max_batch_size=2,
        batch_wait_ms=0,
    )
    async with run_encoder(settings) as running:
        queries = [_post(running.client, auth, crops[:2], "query") for _ in range(4)]
        codes = [r.status_code for r in await asyncio.gather(*queries)]
        assert codes.count(200) >= 1 and codes.count(429) >= 1, codes
        refused = (await asyncio.gather(*queries))[codes.index(429)]
        assert int(refused.headers["Retry-After"]) >= 1


async def test_an_unknown_priority_is_refused(encoder, auth, crops) -> None:
    r = await _post(encoder.client, auth, crops[:1], "urgent")
    assert r.status_code == 400, r.status_code
    assert "X-Priority" in r.json()["error"]["message"]
    texts = await encoder.client.post(
        "/v1/embed/texts", json={"texts": ["a"]}, headers={**auth, "X-Priority": "query"}
    )
    assert texts.status_code == 200, texts.text


async def test_bulk_work_is_not_starved_by_a_stream_of_queries(encoder, crops) -> None:
    """6 bulk requests and 12 query requests of one batch each, all waiting: queries go
    first, but never more than 2 query batches in a row while bulk work waits."""
    from imgsearch_encoder.batcher import DynamicBatcher

    batcher = DynamicBatcher(
        encoder.app.state.encoder,
        max_batch_size=2,
        batch_wait_ms=0,
        max_queue_items=64,
        query_batches_per_bulk=2,
    )
    await batcher.start()
    order: list[str] = []

    async def run(priority: str) -> None:
        await batcher.encode_pixels(crops[:2], priority=priority)
        order.append(priority)

    try:
        blocker = asyncio.ensure_future(run("bulk"))  # holds the model while the rest queue
        await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(run("bulk")) for _ in range(6)]
        tasks += [asyncio.ensure_future(run("query")) for _ in range(12)]
        await asyncio.gather(blocker, *tasks)
    finally:
        await batcher.close()

    assert order.count("bulk") == 7 and order.count("query") == 12
    assert order[1] == "query", order  # the first batch after the blocker is a query's
    run_length = 0
    for i, lane in enumerate(order):
        run_length = run_length + 1 if lane == "query" else 0
        if "bulk" in order[i + 1 :]:
            assert run_length <= 2, order
    assert batcher.stats.lane_batches == {"query": 12, "bulk": 7}


async def test_the_encoder_client_marks_its_requests(encoder, crops) -> None:
    """``EncoderClient(priority="query")`` (the search API's) lands in the query lane; the
    default (the workers') in the bulk lane."""
    from imgsearch_common.encoder_client import EncoderClient

    from .conftest import TOKEN

    lanes = encoder.app.state.batcher.stats.lane_batches
    transport = httpx.ASGITransport(app=encoder.app)
    for priority in ("query", "bulk"):
        client = EncoderClient("http://encoder", TOKEN, priority=priority, transport=transport)
        before = dict(lanes)
        try:
            await client.embed_pixels(crops[:1])
            await client.embed_texts(["a cat"])
        finally:
            await client.aclose()
        assert lanes[priority] - before[priority] == 2
        other = "bulk" if priority == "query" else "query"
        assert lanes[other] == before[other]
    with pytest.raises(ValueError):
        EncoderClient("http://encoder", TOKEN, priority="urgent")  # type: ignore[arg-type]
