"""The HTTP surface: auth, refusals of bad bodies (never a 500), /health, /metrics."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

from imgsearch_encoder import create_app

pytestmark = pytest.mark.asyncio(loop_scope="session")

CROP_BYTES = 224 * 224 * 3


def _error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic encoder-test-token", "Bearer", "encoder-test-token"],
)
async def test_internal_endpoints_need_the_token(encoder, authorization) -> None:
    headers = {"X-Crop-Count": "1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    pixels = await encoder.client.post(
        "/v1/embed/pixels", content=bytes(CROP_BYTES), headers=headers
    )
    texts = await encoder.client.post("/v1/embed/texts", json={"texts": ["a"]}, headers=headers)
    for response in (pixels, texts):
        assert response.status_code == 401
        assert _error_code(response) == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unset_token_refuses_everyone(make_settings) -> None:
    # No lifespan, no model: the token check comes first.
    app = create_app(make_settings(internal_token=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://encoder") as client:
        for token in ("", "None", "encoder-test-token"):
            headers = {"Authorization": f"Bearer {token}"}
            response = await client.post("/v1/embed/texts", json={"texts": ["a"]}, headers=headers)
            assert response.status_code == 401
        health = await client.get("/health")
        assert health.status_code == 503  # the model is not loaded


async def test_invalid_json_is_401_before_parsing(encoder) -> None:
    response = await encoder.client.post("/v1/embed/texts", content=b"{not json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("count", "body", "status", "code"),
    [
        (None, bytes(CROP_BYTES), 400, "bad_request"),  # missing X-Crop-Count
        ("abc", bytes(CROP_BYTES), 400, "bad_request"),
        ("1.5", bytes(CROP_BYTES), 400, "bad_request"),
        ("-1", bytes(CROP_BYTES), 400, "bad_request"),
        ("1_0", bytes(CROP_BYTES), 400, "bad_request"),
        ("0", b"", 400, "empty_input"),
        ("1", bytes(CROP_BYTES - 1), 400, "bad_request"),
        ("1", bytes(CROP_BYTES + 1), 400, "bad_request"),
        ("2", bytes(CROP_BYTES), 400, "bad_request"),
        ("1", b"", 400, "bad_request"),
        ("17", bytes(17 * CROP_BYTES), 413, "payload_too_large"),  # limit is 16
        ("999999999", b"", 413, "payload_too_large"),
    ],
)
async def test_bad_pixel_bodies_are_refused(encoder, auth, count, body, status, code) -> None:
    headers = dict(auth)
    if count is not None:
        headers["X-Crop-Count"] = count
    response = await encoder.client.post("/v1/embed/pixels", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert _error_code(response) == code


async def test_chunked_pixel_body_is_length_checked(encoder, auth) -> None:
    async def chunks():
        for _ in range(3):
            yield bytes(CROP_BYTES // 2)

    response = await encoder.client.post(
        "/v1/embed/pixels", content=chunks(), headers={**auth, "X-Crop-Count": "1"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 400
    assert "got more" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"texts": []}, 400, "empty_input"),
        ({"texts": ["a"] * 9}, 413, "payload_too_large"),  # limit is 8
        ({"texts": ["a", "x" * 101]}, 413, "payload_too_large"),  # limit is 100 chars
        ({"texts": "a cat"}, 422, "validation_error"),
        ({"texts": [1, 2]}, 422, "validation_error"),
        ({"text": ["a"]}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ([], 422, "validation_error"),
    ],
)
async def test_bad_text_bodies_are_refused(encoder, auth, body, status, code) -> None:
    response = await encoder.client.post("/v1/embed/texts", json=body, headers=auth)
    assert response.status_code == status, response.text
    assert _error_code(response) == code


async def test_malformed_json_is_422(encoder, auth) -> None:
    response = await encoder.client.post(
        "/v1/embed/texts",
        content=b'{"texts": ["a"',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert _error_code(response) == "validation_error"


async def test_health_describes_the_model(encoder) -> None:
    response = await encoder.client.get("/health")
    assert response.status_code == 200
    health = response.json()
    fingerprint = health.get("fingerprint", "")
    assert len(fingerprint) == 32 and int(fingerprint, 16) >= 0  # the model, not the engine
    assert health == {
        "fingerprint": fingerprint,
        "status": "ok",
        "model": "ViT-B-32",
        "pretrained": "random",
        "device": "cpu",
        "gpu_available": False,
        "dtype": "float32",
        "engine": "torch",
        "precision": "fp32",
        "max_batch_size": 5,
        "dim": 512,
        "image_size": 224,
        "mean": pytest.approx([0.48145466, 0.4578275, 0.40821073]),
        "std": pytest.approx([0.26862954, 0.26130258, 0.27577711]),
    }


async def test_metrics_are_exposed(encoder, embed_pixels) -> None:
    await embed_pixels(encoder.client, np.zeros((1, 224, 224, 3), dtype=np.uint8))
    response = await encoder.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "imgsearch_encoder_batch_size_bucket",
        "imgsearch_encoder_forward_seconds_count",
        'imgsearch_encoder_request_seconds_count{kind="image",stage="queue"}',
        'imgsearch_encoder_request_seconds_count{kind="image",stage="model"}',
        "imgsearch_encoder_queue_items",
        'imgsearch_encoder_items_encoded_total{kind="image"}',
        "imgsearch_encoder_rejected_requests_total",
        "imgsearch_encoder_failed_batches_total",
    ):
        assert name in text
    # The registry is the app's own: nothing of prometheus_client's global one.
    assert "python_gc_objects_collected_total" not in text


async def test_embed_answers_say_the_gpu_memory_in_use(encoder, auth) -> None:
    """``X-GPU-Memory-Used`` on both embed answers (the search API's ``gpu_memory_used``):
    ``0`` on the CPU."""
    pixels = await encoder.client.post(
        "/v1/embed/pixels", content=bytes(CROP_BYTES), headers={**auth, "X-Crop-Count": "1"}
    )
    texts = await encoder.client.post("/v1/embed/texts", json={"texts": ["a"]}, headers=auth)
    health = (await encoder.client.get("/health")).json()
    for response in (pixels, texts):
        assert response.status_code == 200, response.text
        assert response.headers["X-GPU-Memory-Used"] == "0"
        # The model that made the vectors: what the API and workers check collections by.
        assert response.headers["X-Model-Fingerprint"] == health["fingerprint"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
async def test_on_cuda_the_gpu_is_available_and_its_memory_reported(
    run_encoder, make_settings, auth
) -> None:
    async with run_encoder(make_settings(device="cuda")) as running:
        health = (await running.client.get("/health")).json()
        pixels = await running.client.post(
            "/v1/embed/pixels", content=bytes(CROP_BYTES), headers={**auth, "X-Crop-Count": "1"}
        )
    assert health["device"].startswith("cuda") and health["gpu_available"] is True
    assert pixels.status_code == 200, pixels.text
    # The weights alone (ViT-B-32, fp16) take well over 100 MB.
    assert int(pixels.headers["X-GPU-Memory-Used"]) > 100_000_000
