"""The encoder's HTTP API (docs/CONTRACTS.md, "Encoder HTTP API").

Handlers only validate, hand the items to the batcher and await the result; the
model lives in the batcher's thread. Every long-lived resource is created by the
``lifespan`` and kept on ``app.state``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from imgsearch_common.auth import bearer_or_key, check_secret
from imgsearch_common.catalog import FINGERPRINT_HEADER
from imgsearch_common.errors import (
    BadRequest,
    EmptyInput,
    PayloadTooLarge,
    UpstreamUnavailable,
    install_error_handlers,
)

from .batcher import DEFAULT_LANE, LANES, DynamicBatcher
from .metrics import EncoderMetrics
from .model import Engine, load_encoder
from .settings import EncoderSettings

log = logging.getLogger(__name__)

_CROP_COUNT_RE = re.compile(r"^[0-9]{1,9}$")
_OCTET_STREAM = "application/octet-stream"


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str]


_TEXTS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TextsRequest.model_json_schema()}},
    }
}


def _bearer_check(settings: EncoderSettings) -> Callable[[Request], Awaitable[None]]:
    """Dependency of the internal endpoints: ``Authorization: Bearer <INTERNAL_TOKEN>``.
    While INTERNAL_TOKEN is unset, nothing is let in."""

    async def require_internal_token(request: Request) -> None:
        presented = bearer_or_key(request.headers.get("authorization"))
        check_secret(presented, settings.internal_token_value())

    return require_internal_token


def _priority(request: Request) -> str:
    """The lane of the request: ``X-Priority: query`` (searches) or ``bulk`` (the default)."""
    raw = request.headers.get("x-priority")
    if raw is None or not raw.strip():
        return DEFAULT_LANE
    lane = raw.strip().lower()
    if lane not in LANES:
        raise BadRequest("X-Priority must be query or bulk")
    return lane


def _parse_crop_count(request: Request, limit: int) -> int:
    raw = request.headers.get("x-crop-count")
    if raw is None:
        raise BadRequest("the X-Crop-Count header is required")
    raw = raw.strip()
    if not _CROP_COUNT_RE.match(raw):
        raise BadRequest("X-Crop-Count must be a non-negative integer")
    count = int(raw)
    if count == 0:
        raise EmptyInput("X-Crop-Count is 0: nothing to encode")
    if count > limit:
        raise PayloadTooLarge(f"{count} crops in one request; the limit is {limit}")
    return count


async def _read_exact(request: Request, expected: int, what: str) -> bytearray:
    """The body, which must be exactly ``expected`` bytes; read no more than that."""
    mismatch = f"the body must be exactly {expected} bytes ({what})"
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip() != str(expected):
        raise BadRequest(f"{mismatch}; Content-Length says {declared.strip()}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > expected:
            raise BadRequest(f"{mismatch}; got more")
    if len(body) != expected:
        raise BadRequest(f"{mismatch}; got {len(body)}")
    return body


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    return bytes(body)


def _answer_headers(encoder: Engine) -> dict[str, str]:
    """``X-GPU-Memory-Used``: the device's allocated bytes after this answer's batch (0 on
    the CPU; the search API reports it as ``gpu_memory_used``, as the original system did);
    ``X-Model-Fingerprint``: the model that made the vectors (``imgsearch_common.catalog``)."""
    return {
        "X-GPU-Memory-Used": str(encoder.gpu_memory_used()),
        FINGERPRINT_HEADER: encoder.fingerprint,
    }


def _running(request: Request) -> tuple[Engine, DynamicBatcher]:
    encoder: Engine | None = getattr(request.app.state, "encoder", None)
    batcher: DynamicBatcher | None = getattr(request.app.state, "batcher", None)
    if encoder is None or batcher is None:
        raise UpstreamUnavailable("the model is not loaded", retry_after=5)
    return encoder, batcher


def create_app(settings: EncoderSettings | None = None) -> FastAPI:
    """The encoder app; the model is loaded when the app's lifespan starts."""
    settings = settings if settings is not None else EncoderSettings()
    metrics = EncoderMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.internal_token_value() is None:
            log.error("INTERNAL_TOKEN is unset: every /v1 request will be refused (401)")
        # Loading takes seconds (and may download): keep the event loop free meanwhile.
        encoder = await asyncio.to_thread(load_encoder, settings)
        try:
            await asyncio.to_thread(encoder.warmup)
            batcher = DynamicBatcher(
                encoder,
                max_batch_size=settings.batch_size_for(encoder.device.type),
                batch_wait_ms=settings.batch_wait_ms,
                max_queue_items=settings.max_queue_items,
                max_query_queue_items=settings.query_queue_items,
                query_batches_per_bulk=settings.query_batches_per_bulk,
                metrics=metrics,
            )
            await batcher.start()
            try:
                app.state.encoder = encoder
                app.state.batcher = batcher
                yield
            finally:
                app.state.batcher = None
                await batcher.close()
        finally:
            app.state.encoder = None
            encoder.close()

    app = FastAPI(
        title="imgsearch encoder",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.encoder = None
    app.state.batcher = None
    install_error_handlers(app)
    internal = [Depends(_bearer_check(settings))]

    @app.post("/v1/embed/pixels", dependencies=internal, response_class=Response)
    async def embed_pixels(request: Request) -> Response:
        """Raw uint8 crops (N × S × S × 3) → raw little-endian float32 (N × D)."""
        encoder, batcher = _running(request)
        priority = _priority(request)
        count = _parse_crop_count(request, settings.max_request_crops)
        size = encoder.image_size
        body = await _read_exact(
            request, count * size * size * 3, f"{count} crops of {size}x{size}x3 uint8"
        )
        pixels = np.frombuffer(body, dtype=np.uint8).reshape(count, size, size, 3)
        vectors = await batcher.encode_pixels(pixels, priority)
        return Response(
            content=vectors.astype("<f4", copy=False).tobytes(),
            media_type=_OCTET_STREAM,
            headers={"X-Embedding-Dim": str(vectors.shape[1]), **_answer_headers(encoder)},
        )

    # Worst case of a valid body: every character JSON-escaped as a surrogate pair.
    max_texts_body = settings.max_request_texts * (settings.max_text_chars * 12 + 8) + 1024

    @app.post("/v1/embed/texts", dependencies=internal, openapi_extra=_TEXTS_OPENAPI)
    async def embed_texts(request: Request) -> JSONResponse:
        """``{"texts": [...]}`` → ``{"embeddings": [[...], ...], "dim": D}``."""
        encoder, batcher = _running(request)
        priority = _priority(request)
        # Parsed here rather than by FastAPI, which would read and parse any body
        # (of any size) before the token is checked.
        raw = await _read_limited(request, max_texts_body)
        try:
            texts = TextsRequest.model_validate_json(raw).texts
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from exc
        if not texts:
            raise EmptyInput("texts is empty: nothing to encode")
        if len(texts) > settings.max_request_texts:
            raise PayloadTooLarge(
                f"{len(texts)} texts in one request; the limit is {settings.max_request_texts}"
            )
        for i, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                raise PayloadTooLarge(
                    f"texts[{i}] has {len(text)} characters; the limit is {settings.max_text_chars}"
                )
        vectors = await batcher.encode_texts(texts, priority)
        return JSONResponse(
            {"embeddings": vectors.tolist(), "dim": int(vectors.shape[1])},
            headers=_answer_headers(encoder),
        )

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        encoder, _ = _running(request)
        return {
            "status": "ok",
            "model": encoder.model_name,
            "pretrained": encoder.pretrained,
            "device": str(encoder.device),
            "gpu_available": encoder.device.type == "cuda",
            "dtype": encoder.dtype,
            "engine": encoder.engine,
            "precision": encoder.precision,
            "fingerprint": encoder.fingerprint,
            "max_batch_size": settings.batch_size_for(encoder.device.type),
            "dim": encoder.dim,
            "image_size": encoder.image_size,
            "mean": list(encoder.mean),
            "std": list(encoder.std),
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        content, content_type = metrics.render()
        return Response(content=content, media_type=content_type)

    return app
