"""Client of the encoder's internal HTTP API (see docs/CONTRACTS.md).

Pixels travel as raw uint8 (no lossy re-encoding), vectors come back as raw
float32. A 429/503 from the encoder's bounded queue is honoured: the client
waits ``Retry-After`` and tries again, a bounded number of times, then gives up
with :class:`UpstreamUnavailable` (the indexer then schedules a retry).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from .auth import internal_client
from .errors import ImgSearchError, Overloaded, UpstreamUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    pretrained: str
    dim: int
    image_size: int
    device: str
    dtype: str


class EncoderClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = 120.0,
        max_overload_retries: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = internal_client(base_url, token, timeout_s=timeout_s, transport=transport)
        self._max_overload_retries = max_overload_retries
        self._info: EncoderInfo | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def info(self, *, refresh: bool = False) -> EncoderInfo:
        if self._info is None or refresh:
            body = (await self._request("GET", "/health")).json()
            self._info = EncoderInfo(
                model=str(body["model"]),
                pretrained=str(body["pretrained"]),
                dim=int(body["dim"]),
                image_size=int(body["image_size"]),
                device=str(body["device"]),
                dtype=str(body["dtype"]),
            )
        return self._info

    async def wait_ready(self, timeout_s: float = 120.0) -> EncoderInfo:
        """Poll ``/health`` until the encoder answers (services start in any order)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                return await self.info(refresh=True)
            except UpstreamUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 → ``(N, D)`` float32, L2-normalised."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError("pixels must be an (N, S, S, 3) uint8 array")
        n = pixels.shape[0]
        response = await self._request(
            "POST",
            "/v1/embed/pixels",
            content=np.ascontiguousarray(pixels).tobytes(),
            headers={"Content-Type": "application/octet-stream", "X-Crop-Count": str(n)},
        )
        dim = int(response.headers.get("X-Embedding-Dim", "0"))
        vectors = np.frombuffer(response.content, dtype="<f4")
        if dim <= 0 or vectors.size != n * dim:
            raise UpstreamUnavailable("the encoder answered with a malformed body")
        return vectors.reshape(n, dim)

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        response = await self._request("POST", "/v1/embed/texts", json={"texts": texts})
        return np.asarray(response.json()["embeddings"], dtype=np.float32)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self._max_overload_retries + 1):
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise UpstreamUnavailable(f"encoder unreachable ({type(exc).__name__})") from exc
            if response.status_code in (429, 503) and attempt < self._max_overload_retries:
                wait = _retry_after(response)
                log.debug("encoder busy (%s), retrying in %.1fs", response.status_code, wait)
                await asyncio.sleep(wait)
                continue
            if response.status_code == 429:
                raise Overloaded(
                    "the encoder is overloaded", retry_after=int(_retry_after(response))
                )
            if response.status_code >= 500:
                raise UpstreamUnavailable(f"encoder error {response.status_code}")
            if response.status_code >= 400:
                raise ImgSearchError(f"encoder refused the request ({response.status_code})")
            return response
        raise AssertionError("unreachable")


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.05, min(float(response.headers.get("Retry-After", "1")), 30.0))
    except ValueError:
        return 1.0
