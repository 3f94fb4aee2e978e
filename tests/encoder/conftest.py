"""Fixtures of the encoder tests: the real app with seeded random weights, in process.

One app is loaded per session (a model load takes seconds on these CPUs) and driven
through ``httpx.ASGITransport``, which does not run the lifespan: the fixture enters
it itself. Tests using the shared app run in the session's event loop
(``pytestmark = pytest.mark.asyncio(loop_scope="session")``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import open_clip
import pytest
import pytest_asyncio
import torch
from fastapi import FastAPI
from PIL import Image

from imgsearch_encoder import EncoderSettings, create_app

TOKEN = "encoder-test-token"
MODEL = "ViT-B-32"
SEED = 0


@dataclass
class RunningEncoder:
    app: FastAPI
    client: httpx.AsyncClient


@dataclass
class Reference:
    """open_clip's own model and eval preprocessing, built with the app's seed."""

    model: Any
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Any

    def encode_image(self, img: Image.Image) -> np.ndarray:
        with torch.inference_mode():
            x = self.preprocess(img).unsqueeze(0)
            out = self.model.encode_image(x)
            return torch.nn.functional.normalize(out, dim=-1)[0].numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(texts))
            return torch.nn.functional.normalize(out, dim=-1).numpy()


def _settings(**overrides: Any) -> EncoderSettings:
    """Test settings: every field that matters is explicit, so no environment leaks in.
    The torch engine: these tests compare it with open_clip itself; the onnx engine (the
    default on a CPU) is compared with it in test_onnx_engine.py, and serves the stacks."""
    values: dict[str, Any] = {
        "clip_model": MODEL,
        "clip_pretrained": "random",
        "clip_random_seed": SEED,
        "device": "cpu",
        "encoder_engine": "torch",
        "internal_token": TOKEN,
        "max_batch_size": 5,
        # Long enough that concurrent test requests land in one batch even on a busy CPU.
        "batch_wait_ms": 100.0,
        "max_queue_items": 64,
        "max_request_crops": 16,
        "max_request_texts": 8,
        "max_text_chars": 100,
    }
    values.update(overrides)
    return EncoderSettings(**values)


@asynccontextmanager
async def _running(settings: EncoderSettings) -> AsyncIterator[RunningEncoder]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://encoder") as client:
            yield RunningEncoder(app, client)


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., EncoderSettings]:
    """``make_settings(**overrides)``: the tests' settings with some fields changed."""
    return _settings


@pytest.fixture(scope="session")
def run_encoder() -> Callable[[EncoderSettings], Any]:
    """``async with run_encoder(settings) as running:`` a started app and its client."""
    return _running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def encoder() -> AsyncIterator[RunningEncoder]:
    """The shared app: ViT-B-32, seeded random weights, batches of at most 5."""
    async with _running(_settings()) as running:
        yield running


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def reference() -> Reference:
    with torch.random.fork_rng(devices=[]):  # leave the process's RNG as it was
        torch.manual_seed(SEED)
        model, _, preprocess = open_clip.create_model_and_transforms(MODEL, pretrained=None)
    model.eval()
    return Reference(model, preprocess, open_clip.get_tokenizer(MODEL))


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.chelsea())


@pytest.fixture(scope="session")
def embed_pixels(auth: dict[str, str]) -> Callable[..., Any]:
    """``await embed_pixels(client, crops)``: POST /v1/embed/pixels, 200 expected → (N, D)."""

    async def embed(client: httpx.AsyncClient, crops: np.ndarray) -> np.ndarray:
        response = await client.post(
            "/v1/embed/pixels",
            content=np.ascontiguousarray(crops, dtype=np.uint8).tobytes(),
            headers={
                **auth,
                "X-Crop-Count": str(len(crops)),
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        dim = int(response.headers["X-Embedding-Dim"])
        return np.frombuffer(response.content, dtype="<f4").reshape(len(crops), dim)

    return embed
