"""Client of the encoder's internal HTTP API (see docs/CONTRACTS.md).

Pixels travel as raw uint8 (no lossy re-encoding), vectors come back as raw
float32.

``base_url`` may name several encoder replicas, comma-separated
(``ENCODER_URL=http://encoder-1:8001,http://encoder-2:8001``). Requests go to them in
turn (round robin), and one that cannot be reached or answers 5xx is skipped: the
same request goes to the next replica at once (encoding is a pure function, so a
replay is harmless) and the failed replica is tried last for ``down_for_s`` seconds.
A 429/503 from a replica's bounded queue moves the request to the next replica too;
when every replica is busy the client waits the shortest ``Retry-After`` and starts
another round, a bounded number of times, then gives up with :class:`Overloaded`.
When no replica can be reached it raises :class:`UpstreamUnavailable` (the indexer
then schedules a retry). A 4xx other than 429 is our request's fault: no failover.

``priority="query"`` marks every request ``X-Priority: query``: the encoder batches them
before indexing work, in a lane with its own queue bound (the search API's client);
the default, ``bulk``, is the indexing workers'.

Every replica must serve the same model (``CLIP_MODEL``, ``CLIP_PRETRAINED``); vectors
of different models are not comparable.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from .auth import internal_client
from .backpressure import retry_after_s
from .catalog import FINGERPRINT_HEADER, ModelChanged, ModelRecord
from .errors import ImgSearchError, Overloaded, UpstreamUnavailable

log = logging.getLogger(__name__)

#: Statuses that mean "this replica's queue is full, try later or elsewhere".
_BUSY = (429, 503)

#: The encoder's lanes (``X-Priority``): searches waiting on an answer, or indexing.
Priority = Literal["query", "bulk"]


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    pretrained: str
    dim: int
    image_size: int
    device: str
    dtype: str
    #: The model runs on a GPU (an encoder from before the field: its device is CUDA).
    gpu_available: bool = False
    #: The model's fingerprint (``imgsearch_common.catalog``); "" from an encoder that
    #: names none.
    fingerprint: str = ""

    def model_record(self) -> ModelRecord:
        """The model this encoder runs, as a collection records it."""
        return ModelRecord(
            model=self.model,
            pretrained=self.pretrained,
            image_size=self.image_size,
            dim=self.dim,
            fingerprint=self.fingerprint or f"unnamed:{self.model}:{self.pretrained}",
        )


#: Header of the encoder's embed answers: bytes allocated on its GPU (0 on the CPU).
GPU_MEMORY_HEADER = "X-GPU-Memory-Used"


def split_urls(base_url: str) -> list[str]:
    """``"http://a:8001, http://b:8001/"`` → ``["http://a:8001", "http://b:8001"]``."""
    urls = [u.strip().rstrip("/") for u in base_url.split(",")]
    urls = [u for u in urls if u]
    if not urls:
        raise ValueError("ENCODER_URL names no encoder")
    if len(set(urls)) != len(urls):
        raise ValueError("ENCODER_URL names the same encoder twice")
    return urls


class _Replica:
    """One encoder replica: its HTTP client and when it last failed."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client
        self.down_until = 0.0

    def mark_down(self, now: float, down_for_s: float, reason: str) -> None:
        if self.down_until <= now:  # log transitions, not every failed request
            log.warning("encoder %s failed (%s); trying the others first", self.url, reason)
        self.down_until = now + down_for_s

    def mark_up(self) -> None:
        if self.down_until:
            log.info("encoder %s answers again", self.url)
        self.down_until = 0.0


class EncoderClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = 120.0,
        max_overload_retries: int = 20,
        down_for_s: float = 5.0,
        priority: Priority = "bulk",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if priority not in ("query", "bulk"):
            raise ValueError(f"priority must be query or bulk, not {priority!r}")
        self.priority = priority
        self._replicas = [
            _Replica(url, internal_client(url, token, timeout_s=timeout_s, transport=transport))
            for url in split_urls(base_url)
        ]
        self._turn = itertools.count()
        self._max_overload_retries = max_overload_retries
        self._down_for_s = down_for_s
        self._info: EncoderInfo | None = None
        #: ``X-GPU-Memory-Used`` of the last embed answer (of any replica); 0 before one.
        self.gpu_memory_used = 0

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self._replicas]

    async def aclose(self) -> None:
        for replica in self._replicas:
            await replica.client.aclose()

    async def info(self, *, refresh: bool = False) -> EncoderInfo:
        if self._info is None or refresh:
            body = (await self._request("GET", "/health")).json()
            device = str(body["device"])
            self._info = EncoderInfo(
                model=str(body["model"]),
                pretrained=str(body["pretrained"]),
                dim=int(body["dim"]),
                image_size=int(body["image_size"]),
                device=device,
                dtype=str(body["dtype"]),
                gpu_available=bool(body.get("gpu_available", device.startswith("cuda"))),
                fingerprint=str(body.get("fingerprint", "")),
            )
        return self._info

    async def wait_ready(self, timeout_s: float = 120.0) -> EncoderInfo:
        """Poll ``/health`` until an encoder answers (services start in any order)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                return await self.info(refresh=True)
            except UpstreamUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def embed_pixels(self, pixels: np.ndarray, *, model: str | None = None) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 → ``(N, D)`` float32, L2-normalised.

        ``model``: the fingerprint the vectors must come from; an answer from another model
        (an encoder restarted with new weights since :meth:`info`) raises
        :class:`~imgsearch_common.catalog.ModelChanged` instead of returning its vectors (a
        retry reads the model again)."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError("pixels must be an (N, S, S, 3) uint8 array")
        n = pixels.shape[0]
        response = await self._request(
            "POST",
            "/v1/embed/pixels",
            content=np.ascontiguousarray(pixels).tobytes(),
            headers={
                "Content-Type": "application/octet-stream",
                "X-Crop-Count": str(n),
                "X-Priority": self.priority,
            },
        )
        self._note_answer(response, model)
        dim = int(response.headers.get("X-Embedding-Dim", "0"))
        vectors = np.frombuffer(response.content, dtype="<f4")
        if dim <= 0 or vectors.size != n * dim:
            raise UpstreamUnavailable("the encoder answered with a malformed body")
        return vectors.reshape(n, dim)

    async def embed_texts(self, texts: list[str], *, model: str | None = None) -> np.ndarray:
        """``model``: as :meth:`embed_pixels`'s."""
        response = await self._request(
            "POST", "/v1/embed/texts", json={"texts": texts}, headers={"X-Priority": self.priority}
        )
        self._note_answer(response, model)
        return np.asarray(response.json()["embeddings"], dtype=np.float32)

    def _note_answer(self, response: httpx.Response, model: str | None) -> None:
        """Keep the answer's ``X-GPU-Memory-Used`` (a missing or malformed one, from an
        older encoder, leaves the last value); check the model that made it."""
        raw = response.headers.get(GPU_MEMORY_HEADER, "").strip()
        if raw.isascii() and raw.isdigit() and len(raw) <= 20:
            self.gpu_memory_used = int(raw)
        made_by = response.headers.get(FINGERPRINT_HEADER, "")
        if not made_by:
            return  # an encoder that names no model: nothing to check
        if self._info is not None and made_by != self._info.fingerprint:
            log.warning("the encoder's model changed (now %s): reading its /health again", made_by)
            self._info = None
        if model is not None and made_by != model:
            raise ModelChanged(
                f"the encoder answered with model {made_by[:12]}, not {model[:12]}: it was "
                "restarted with other weights; try again"
            )

    # --- routing --------------------------------------------------------------------------

    def _order(self) -> list[_Replica]:
        """This request's replicas: round robin, replicas that failed recently last."""
        start = next(self._turn) % len(self._replicas)
        rotated = self._replicas[start:] + self._replicas[:start]
        now = time.monotonic()
        return sorted(rotated, key=lambda r: r.down_until > now)  # stable: keeps the turn

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for busy_round in itertools.count():
            busy: list[httpx.Response] = []
            failure = "no encoder"
            for replica in self._order():
                try:
                    response = await replica.client.request(method, url, **kwargs)
                except httpx.HTTPError as exc:
                    # Refused, reset, DNS, timeout: the next replica gets the request.
                    failure = f"encoder unreachable ({type(exc).__name__})"
                    replica.mark_down(time.monotonic(), self._down_for_s, type(exc).__name__)
                    continue
                status = response.status_code
                if status in _BUSY:
                    busy.append(response)
                    continue
                if status >= 500:
                    failure = f"encoder error {status}"
                    replica.mark_down(time.monotonic(), self._down_for_s, f"HTTP {status}")
                    continue
                replica.mark_up()
                if status >= 400:
                    raise ImgSearchError(f"encoder refused the request ({status})")
                return response
            if not busy:
                raise UpstreamUnavailable(failure)
            if busy_round >= self._max_overload_retries:
                last = busy[-1]
                if last.status_code == 429:
                    raise Overloaded(
                        "the encoder is overloaded",
                        retry_after=int(retry_after_s(last.headers, default=1.0)),
                    )
                raise UpstreamUnavailable(f"encoder error {last.status_code}")
            wait = min(retry_after_s(r.headers, default=1.0) for r in busy)
            log.debug("every encoder is busy, retrying in %.1fs", wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")
