"""EncoderClient over several encoder replicas (``ENCODER_URL=a,b``): round robin,
failover on connection errors and 5xx, 429 back-off. The replicas are faked at the
transport (``httpx.MockTransport``); the client is the real one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from imgsearch_common.catalog import ModelMismatch
from imgsearch_common.encoder_client import EncoderClient, split_urls
from imgsearch_common.errors import ImgSearchError, Overloaded, UpstreamUnavailable

A, B, C = "http://encoder-1:8001", "http://encoder-2:8001", "http://encoder-3:8001"
DIM = 4
Behaviour = Callable[[httpx.Request], httpx.Response]


def healthy(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/embed/pixels":
        n = int(request.headers["X-Crop-Count"])
        vectors = np.tile(np.eye(1, DIM, dtype="<f4"), (n, 1))
        return httpx.Response(200, content=vectors.tobytes(), headers={"X-Embedding-Dim": "4"})
    if request.url.path == "/v1/embed/texts":
        return httpx.Response(200, json={"embeddings": [[1.0, 0, 0, 0]], "dim": DIM})
    info = {"model": "m", "pretrained": "p", "dim": DIM, "image_size": 2}
    return httpx.Response(200, json={**info, "device": "cuda", "dtype": "float16"})


def refusing(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def answering(status: int, retry_after: str = "0.05") -> Behaviour:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": retry_after}, json={"error": {}})

    return answer


@dataclass
class Replicas:
    """Fake encoders by base URL; records which one got each request, and the bodies."""

    behaviour: dict[str, Behaviour]
    calls: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        self.calls.append(base)
        self.bodies.append(request.content)
        assert request.headers["Authorization"] == "Bearer token"
        return self.behaviour[base](request)

    def client(self, *, max_overload_retries: int = 20, down_for_s: float = 5.0) -> EncoderClient:
        return EncoderClient(
            ",".join(self.behaviour),
            "token",
            max_overload_retries=max_overload_retries,
            down_for_s=down_for_s,
            transport=httpx.MockTransport(self),
        )


def test_the_url_list() -> None:
    assert split_urls(f" {A}/ ,{B}") == [A, B]
    assert split_urls(A) == [A]
    for bad in ("", " , ", f"{A},{A}/"):
        with pytest.raises(ValueError):
            split_urls(bad)


async def test_requests_take_turns() -> None:
    replicas = Replicas({A: healthy, B: healthy, C: healthy})
    client = replicas.client()
    try:
        for _ in range(6):
            await client.embed_texts(["a cat"])
    finally:
        await client.aclose()
    assert replicas.calls == [A, B, C, A, B, C]


async def test_an_unreachable_replica_is_skipped_and_tried_last_for_a_while() -> None:
    replicas = Replicas({A: refusing, B: healthy})
    client = replicas.client(down_for_s=60)
    pixels = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    try:
        vectors = [await client.embed_pixels(pixels) for _ in range(4)]
    finally:
        await client.aclose()
    assert all(v.shape == (3, DIM) for v in vectors)
    # The first request failed over within itself; later ones went to B first.
    assert replicas.calls == [A, B, B, B, B]
    assert replicas.bodies[0] == replicas.bodies[1] == pixels.tobytes()  # replayed as is


async def test_a_failed_replica_gets_its_turn_back_after_the_pause() -> None:
    replicas = Replicas({A: answering(500), B: healthy})
    client = replicas.client(down_for_s=0)
    try:
        await client.embed_texts(["x"])
        replicas.behaviour[A] = healthy
        await client.embed_texts(["x"])
        await client.embed_texts(["x"])
    finally:
        await client.aclose()
    assert replicas.calls == [A, B, B, A]


async def test_a_busy_replica_hands_the_request_to_the_next_at_once() -> None:
    replicas = Replicas({A: answering(429, retry_after="30"), B: healthy})
    client = replicas.client()
    try:
        await client.embed_texts(["x"])  # no 30 s wait: B was free
    finally:
        await client.aclose()
    assert replicas.calls == [A, B]


async def test_when_every_replica_is_busy_the_client_backs_off_then_gives_up() -> None:
    replicas = Replicas({A: answering(429), B: answering(429)})
    client = replicas.client(max_overload_retries=2)
    try:
        with pytest.raises(Overloaded):
            await client.embed_texts(["x"])
    finally:
        await client.aclose()
    assert len(replicas.calls) == 6  # three rounds over both


async def test_a_busy_round_that_clears_succeeds() -> None:
    answers = iter([answering(429)])
    replicas = Replicas({A: answering(503), B: lambda r: next(answers, healthy)(r)})
    client = replicas.client()
    try:
        assert (await client.embed_texts(["x"])).shape == (1, DIM)
    finally:
        await client.aclose()
    # Round one: both busy; a Retry-After later, round two starts at the next turn.
    assert replicas.calls == [A, B, B]


async def test_no_replica_reachable_is_upstream_unavailable() -> None:
    replicas = Replicas({A: refusing, B: answering(502)})
    client = replicas.client()
    try:
        with pytest.raises(UpstreamUnavailable):
            await client.embed_texts(["x"])
    finally:
        await client.aclose()
    assert sorted(replicas.calls) == [A, B]


async def test_a_refused_request_does_not_fail_over() -> None:
    replicas = Replicas({A: answering(413), B: healthy})
    client = replicas.client()
    try:
        with pytest.raises(ImgSearchError) as caught:
            await client.embed_texts(["x" * 10])
    finally:
        await client.aclose()
    assert not isinstance(caught.value, UpstreamUnavailable | Overloaded)
    assert replicas.calls == [A]  # the request is at fault, not the replica


async def test_one_url_behaves_as_before() -> None:
    answers = iter([answering(429)])
    replicas = Replicas({A: lambda r: next(answers, healthy)(r)})
    client = replicas.client()
    try:
        info = await client.wait_ready(timeout_s=5)
        assert info.dim == DIM
        assert (await client.embed_texts(["x"])).shape == (1, DIM)
    finally:
        await client.aclose()
    assert replicas.calls == [A, A, A]


async def test_the_last_gpu_memory_an_encoder_reported_is_kept() -> None:
    """``X-GPU-Memory-Used`` of each embed answer (pixels or texts, any replica); a
    missing or malformed header (an older encoder) keeps the last value."""
    reported = iter(["1234", "77", None, "12x", "-5", "9" * 30, " 5 "])

    def encoder(request: httpx.Request) -> httpx.Response:
        answer = healthy(request)
        value = next(reported)
        if value is not None:
            answer.headers["X-GPU-Memory-Used"] = value
        return answer

    client = Replicas({A: encoder, B: encoder}).client()
    try:
        assert client.gpu_memory_used == 0
        seen = []
        for i in range(7):
            if i % 2:
                await client.embed_texts(["a"])
            else:
                await client.embed_pixels(np.zeros((1, 2, 2, 3), dtype=np.uint8))
            seen.append(client.gpu_memory_used)
    finally:
        await client.aclose()
    assert seen == [1234, 77, 77, 77, 77, 77, 5]


async def test_gpu_available_comes_from_the_encoder_or_its_device() -> None:
    def answering_health(extra: dict[str, object], device: str) -> Behaviour:
        def answer(request: httpx.Request) -> httpx.Response:
            info = {"model": "m", "pretrained": "p", "dim": DIM, "image_size": 2}
            return httpx.Response(200, json={**info, "device": device, "dtype": "f", **extra})

        return answer

    cases = [
        ({"gpu_available": True}, "cuda", True),
        ({"gpu_available": False}, "cpu", False),
        ({}, "cuda:1", True),  # an encoder from before the field
        ({}, "cpu", False),
    ]
    for extra, device, expected in cases:
        client = Replicas({A: answering_health(extra, device)}).client()
        try:
            assert (await client.info()).gpu_available is expected
        finally:
            await client.aclose()


async def test_an_answer_from_another_model_is_refused_and_the_model_read_again() -> None:
    """A replica restarted with other weights: its vectors are not returned to a caller who
    asked for the old model's, and the next ``info()`` reads the new model."""
    fingerprints = {"now": "old"}

    def encoder(request: httpx.Request) -> httpx.Response:
        answer = healthy(request)
        if request.url.path == "/health":
            return httpx.Response(200, json={**answer.json(), "fingerprint": fingerprints["now"]})
        answer.headers["X-Model-Fingerprint"] = fingerprints["now"]
        return answer

    client = Replicas({A: encoder}).client()
    pixels = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    try:
        info = await client.info()
        assert info.fingerprint == "old" and info.model_record().fingerprint == "old"
        assert (await client.embed_pixels(pixels, model="old")).shape == (1, DIM)
        fingerprints["now"] = "new"
        with pytest.raises(ModelMismatch):
            await client.embed_pixels(pixels, model="old")
        with pytest.raises(ModelMismatch):
            await client.embed_texts(["a"], model="old")
        assert (await client.info()).fingerprint == "new"  # read again, not the cached one
        assert (await client.embed_texts(["a"])).shape == (1, DIM)  # no model asked: any
    finally:
        await client.aclose()
