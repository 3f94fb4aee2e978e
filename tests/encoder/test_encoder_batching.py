"""Cross-request dynamic batching, backpressure and shutdown, on the real model."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from imgsearch_common.errors import UpstreamUnavailable
from imgsearch_common.imaging import crops_to_model_inputs
from imgsearch_encoder.batcher import DynamicBatcher

pytestmark = pytest.mark.asyncio(loop_scope="session")

# 12 different crops of one photo, so a mixed-up row would show.
BOXES = [(x, y, x + side, y + side) for side in (160, 260) for x in (0, 170, 340) for y in (0, 240)]


@pytest.fixture(scope="module")
def crops(astronaut: Image.Image) -> np.ndarray:
    return crops_to_model_inputs(astronaut, BOXES, 224)


def _min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


async def test_concurrent_requests_share_forward_passes(encoder, embed_pixels, crops) -> None:
    stats = encoder.app.state.batcher.stats
    groups = [crops[i : i + 3] for i in range(0, 12, 3)]  # 4 requests of 3 crops
    passes_before = stats.batches["image"]

    results = await asyncio.gather(*(embed_pixels(encoder.client, g) for g in groups))

    passes = stats.batches["image"] - passes_before
    assert passes < len(groups)  # 12 crops in batches of at most 5: 3 passes
    assert stats.largest_batch["image"] == 5  # only possible by merging 3-crop requests
    model = encoder.app.state.encoder
    alone = [await asyncio.to_thread(model.encode_pixels, g) for g in groups]
    for got, want in zip(results, alone, strict=True):
        assert got.shape == (3, 512)
        assert _min_row_cosine(got, want) > 0.999

    # One request larger than a batch is split over several passes and reassembled in order.
    passes_before = stats.batches["image"]
    big = await embed_pixels(encoder.client, crops[:7])
    assert stats.batches["image"] - passes_before == 2  # 5 + 2
    assert _min_row_cosine(big, np.concatenate(alone)[:7]) > 0.999


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_queue(make_settings, run_encoder):
    """A smaller model behind a queue of 4 items, batches of 2, no waiting."""
    settings = make_settings(
        clip_model="ViT-S-32",
        max_queue_items=4,
        max_request_crops=2,
        max_request_texts=2,
        max_batch_size=2,
        batch_wait_ms=0,
    )
    async with run_encoder(settings) as running:
        yield running


async def test_full_queue_answers_429_with_retry_after(small_queue, auth, crops) -> None:
    client = small_queue.client
    headers = {**auth, "X-Crop-Count": "2"}
    body = crops[:2].tobytes()

    responses = await asyncio.gather(
        *(client.post("/v1/embed/pixels", content=body, headers=headers) for _ in range(6))
    )

    codes = [r.status_code for r in responses]
    assert codes.count(200) >= 1
    assert codes.count(429) >= 1
    assert set(codes) == {200, 429}
    for refused in (r for r in responses if r.status_code == 429):
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "overloaded"
    assert small_queue.app.state.batcher.stats.rejected_requests == codes.count(429)
    metrics = (await client.get("/metrics")).text
    assert f'imgsearch_encoder_rejected_requests_total{{kind="image"}} {codes.count(429)}.0' in (
        metrics
    )

    # The queue drained: the service answers again, and reports its own model.
    again = await client.post("/v1/embed/pixels", content=body, headers=headers)
    assert again.status_code == 200
    assert int(again.headers["X-Embedding-Dim"]) == 384
    assert small_queue.app.state.batcher.queue_items == 0
    assert (await client.get("/health")).json()["dim"] == 384


async def test_close_fails_waiting_requests_and_stops_the_thread(small_queue, crops) -> None:
    model = small_queue.app.state.encoder
    batcher = DynamicBatcher(model, max_batch_size=1, batch_wait_ms=0, max_queue_items=8)
    threads_before = set(threading.enumerate())
    await batcher.start()
    pending = [asyncio.ensure_future(batcher.encode_pixels(crops[i : i + 1])) for i in range(4)]
    await asyncio.sleep(0.02)  # admitted; the first is probably in the model thread by now
    model_threads = set(threading.enumerate()) - threads_before
    assert model_threads

    await batcher.close()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)

    finished = [o for o in outcomes if isinstance(o, np.ndarray)]
    failed = [o for o in outcomes if isinstance(o, UpstreamUnavailable)]
    assert len(finished) + len(failed) == 4
    assert len(failed) >= 1
    assert all(o.shape == (1, 384) for o in finished)
    assert not any(t.is_alive() for t in model_threads)
    with pytest.raises(UpstreamUnavailable):
        await batcher.encode_pixels(crops[:1])
