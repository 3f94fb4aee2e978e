"""SafeFetcher against a fake DNS and ``httpx.MockTransport``: nothing here touches the network."""

from __future__ import annotations

import asyncio
import functools
import gzip
import ipaddress
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest

from imgsearch_api.url_fetch import DEFAULT_RESOLVER_THREADS, SafeFetcher, is_public_address
from imgsearch_common.errors import PayloadTooLarge, UrlFetchFailed, UrlRefused

PUBLIC_IP = "93.184.216.34"
PUBLIC_IP_2 = "198.51.99.7"
IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100

DNS = {
    "images.example": [PUBLIC_IP],
    "cdn.example": [PUBLIC_IP_2],
    "localhost": ["127.0.0.1", "::1"],
    "intranet.example": ["10.1.2.3"],
    "metadata.google.internal": ["169.254.169.254"],
    "split.example": [PUBLIC_IP, "192.168.1.10"],
    "garbage.example": ["not-an-address"],
    "empty.example": [],
}
UNIFORM_REFUSAL = "the URL's host cannot be fetched (unknown, or not a public address)"


class FakeDns:
    """A resolver with a fixed table that records every question."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


class Recorder:
    """A MockTransport handler that records requests and answers from a callable."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda _: httpx.Response(200, content=IMAGE))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def make_fetcher(handler: Recorder, **kwargs: Any) -> tuple[SafeFetcher, FakeDns]:
    dns = FakeDns(DNS)
    fetcher = SafeFetcher(resolver=dns, transport=httpx.MockTransport(handler), **kwargs)
    return fetcher, dns


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://127.0.0.1:6379/",
        "http://10.0.0.1/x.png",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://0.0.0.0/x.png",
        "http://[::]/",
        "http://100.64.0.1/x.png",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "https://localhost/x.png",
        "http://intranet.example/x.png",
        "http://metadata.google.internal/computeMetadata/v1/",
        # One private answer among public ones refuses the host.
        "http://split.example/x.png",
    ],
)
async def test_non_public_destinations_are_refused_before_any_request(url: str) -> None:
    handler = Recorder()
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.fetch(url)
    assert handler.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://images.example/x.png",
        "file:///etc/passwd",
        "gopher://images.example/",
        "images.example/x.png",
        "http://user:secret@images.example/x.png",
        "http:///x.png",
    ],
)
async def test_bad_schemes_credentials_and_hostless_urls_are_refused(url: str) -> None:
    handler = Recorder()
    fetcher, dns = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.fetch(url)
    assert handler.requests == []
    assert dns.asked == []


async def test_public_host_is_fetched_from_the_checked_address() -> None:
    handler = Recorder()
    fetcher, dns = make_fetcher(handler)
    async with fetcher:
        body = await fetcher.fetch("https://images.example/cats/1.png?size=big")
    assert body == IMAGE
    assert dns.asked == [("images.example", 443)]
    [request] = handler.requests
    assert request.url == httpx.URL(f"https://{PUBLIC_IP}/cats/1.png?size=big")
    assert request.headers["Host"] == "images.example"
    assert request.extensions["sni_hostname"] == "images.example"


async def test_non_default_port_is_kept_in_url_and_host_header() -> None:
    handler = Recorder()
    fetcher, dns = make_fetcher(handler)
    async with fetcher:
        await fetcher.fetch("http://images.example:8080/x.png")
    assert dns.asked == [("images.example", 8080)]
    [request] = handler.requests
    assert request.url == httpx.URL(f"http://{PUBLIC_IP}:8080/x.png")
    assert request.headers["Host"] == "images.example:8080"
    assert "sni_hostname" not in request.extensions


async def test_redirect_to_loopback_is_refused_at_the_second_hop() -> None:
    handler = Recorder(
        lambda r: (
            httpx.Response(302, headers={"Location": "http://127.0.0.1/x"})
            if r.headers["Host"] == "images.example"
            else httpx.Response(200, content=b"secret")
        )
    )
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.fetch("http://images.example/x.png")
    assert [r.headers["Host"] for r in handler.requests] == ["images.example"]


async def test_redirect_to_a_name_resolving_privately_is_refused() -> None:
    handler = Recorder(
        lambda r: httpx.Response(301, headers={"Location": "http://intranet.example/admin"})
    )
    fetcher, dns = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.fetch("http://images.example/x.png")
    assert len(handler.requests) == 1
    assert ("intranet.example", 80) in dns.asked


async def test_redirect_to_a_bad_scheme_is_refused() -> None:
    handler = Recorder(lambda r: httpx.Response(302, headers={"Location": "file:///etc/passwd"}))
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused):
            await fetcher.fetch("http://images.example/x.png")


async def test_relative_and_cross_host_redirects_are_followed_and_rechecked() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        host, path = request.headers["Host"], request.url.path
        if (host, path) == ("images.example", "/a/start"):
            return httpx.Response(302, headers={"Location": "../moved.png"})
        if (host, path) == ("images.example", "/moved.png"):
            return httpx.Response(307, headers={"Location": "https://cdn.example/final.png"})
        if (host, path) == ("cdn.example", "/final.png"):
            return httpx.Response(200, content=IMAGE)
        return httpx.Response(404)

    handler = Recorder(answer)
    fetcher, dns = make_fetcher(handler)
    async with fetcher:
        assert await fetcher.fetch("http://images.example/a/start") == IMAGE
    assert [str(r.url) for r in handler.requests] == [
        f"http://{PUBLIC_IP}/a/start",
        f"http://{PUBLIC_IP}/moved.png",
        f"https://{PUBLIC_IP_2}/final.png",
    ]
    assert handler.requests[-1].extensions["sni_hostname"] == "cdn.example"
    assert dns.asked == [("images.example", 80), ("images.example", 80), ("cdn.example", 443)]


async def test_too_many_redirects_fail() -> None:
    handler = Recorder(lambda r: httpx.Response(302, headers={"Location": r.url.path + "x"}))
    fetcher, _ = make_fetcher(handler, max_redirects=3)
    async with fetcher:
        with pytest.raises(UrlFetchFailed, match="too many redirects"):
            await fetcher.fetch("http://images.example/x")
    # The first request plus three followed redirects; the fourth is not followed.
    assert len(handler.requests) == 4


async def test_redirect_limit_is_inclusive() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        hops = request.url.path.count("x")
        if hops < 3:
            return httpx.Response(302, headers={"Location": request.url.path + "x"})
        return httpx.Response(200, content=IMAGE)

    fetcher, _ = make_fetcher(Recorder(answer), max_redirects=2)
    async with fetcher:
        assert await fetcher.fetch("http://images.example/x") == IMAGE


async def test_body_over_the_limit_with_content_length_is_refused_unread() -> None:
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(100):
            chunks_sent += 1
            yield b"a" * 1000

    handler = Recorder(
        lambda r: httpx.Response(200, headers={"Content-Length": "100000"}, content=body())
    )
    fetcher, _ = make_fetcher(handler, max_bytes=10_000)
    async with fetcher:
        with pytest.raises(PayloadTooLarge):
            await fetcher.fetch("http://images.example/big.png")
    assert chunks_sent == 0


async def test_body_over_the_limit_with_plain_content_length() -> None:
    handler = Recorder(lambda r: httpx.Response(200, content=b"a" * 10_001))
    fetcher, _ = make_fetcher(handler, max_bytes=10_000)
    async with fetcher:
        with pytest.raises(PayloadTooLarge):
            await fetcher.fetch("http://images.example/big.png")


async def test_body_over_the_limit_without_content_length_is_cut_off() -> None:
    chunks_sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        while True:
            chunks_sent += 1
            yield b"a" * 4096

    def answer(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(200, content=endless())
        assert "Content-Length" not in response.headers
        return response

    fetcher, _ = make_fetcher(Recorder(answer), max_bytes=50_000)
    async with fetcher:
        with pytest.raises(PayloadTooLarge):
            await fetcher.fetch("http://images.example/stream")
    assert chunks_sent == 50_000 // 4096 + 1


async def test_body_exactly_at_the_limit_is_accepted() -> None:
    handler = Recorder(lambda r: httpx.Response(200, content=b"a" * 10_000))
    fetcher, _ = make_fetcher(handler, max_bytes=10_000)
    async with fetcher:
        assert len(await fetcher.fetch("http://images.example/ok.png")) == 10_000


# --- encoded bodies: httpx decodes any Content-Encoding, whatever we asked for --------------

BOMB_DECODED_BYTES = 64 * 1024 * 1024


def _compress(chunks: Iterable[bytes], coding: str) -> bytes:
    """``chunks`` compressed with the zlib-family ``coding`` ("gzip" or "deflate")."""
    wbits = {"gzip": 31, "deflate": 15}[coding]
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(packer.compress(c) for c in chunks) + packer.flush()


@functools.cache
def _bomb(content_encoding: str) -> bytes:
    """A body that decodes to 64 MiB of zeros under ``content_encoding`` (codings listed in
    the order they were applied, as in the header), built without holding 64 MiB."""
    first, *rest = (c.strip() for c in content_encoding.split(","))
    mib = bytes(1024 * 1024)
    body = _compress((mib for _ in range(BOMB_DECODED_BYTES // len(mib))), first)
    for coding in rest:
        body = _compress([body], coding)
    return body


async def _on_the_wire(body: bytes, chunk: int = 16 * 1024) -> AsyncIterator[bytes]:
    """``body`` as a network transport delivers it. (``httpx.Response(content=bytes)``
    would read, and so decode, the body when the fake builds the response.)"""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


async def _fetch_traced(fetcher: SafeFetcher, url: str) -> tuple[int, BaseException | None]:
    """``fetcher.fetch(url)`` under tracemalloc: the peak traced bytes and the error raised."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        error: BaseException | None = None
        try:
            await fetcher.fetch(url)
        except Exception as exc:
            error = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, error


@pytest.mark.parametrize("content_encoding", ["gzip", "gzip, gzip", "deflate", "deflate, gzip"])
async def test_compression_bomb_is_refused_without_decoding(content_encoding: str) -> None:
    bomb = _bomb(content_encoding)
    assert len(bomb) < 100_000
    handler = Recorder(
        lambda r: httpx.Response(
            200, headers={"Content-Encoding": content_encoding}, content=_on_the_wire(bomb)
        )
    )
    fetcher, _ = make_fetcher(handler, max_bytes=1024 * 1024)
    async with fetcher:
        peak, error = await _fetch_traced(fetcher, "http://images.example/bomb.png")
    assert isinstance(error, UrlFetchFailed), error
    assert "encoded" in error.message
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB during the fetch"


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Encoding", "br")],
        [("Content-Encoding", "zstd")],
        [("Content-Encoding", "compress")],
        [("Content-Encoding", "x-made-up")],
        [("Content-Encoding", "GZIP")],
        [("Content-Encoding", "identity, gzip")],
        [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
    ],
)
async def test_any_content_coding_but_identity_is_refused(headers: list[tuple[str, str]]) -> None:
    handler = Recorder(
        lambda r: httpx.Response(200, headers=headers, content=_on_the_wire(_bomb("gzip")))
    )
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlFetchFailed, match="encoded"):
            await fetcher.fetch("http://images.example/x.png")


@pytest.mark.parametrize("streamed", [True, False])
@pytest.mark.parametrize(
    "headers", [{}, {"Content-Encoding": "identity"}, {"Content-Encoding": "Identity"}]
)
async def test_identity_bodies_are_fetched_as_sent(headers: dict[str, str], streamed: bool) -> None:
    # Bytes that look like gzip are an image's business: without a coding they are the body.
    body = gzip.compress(IMAGE * 1000)

    def answer(request: httpx.Request) -> httpx.Response:
        content = _on_the_wire(body, chunk=1000) if streamed else body
        return httpx.Response(200, headers=headers, content=content)

    fetcher, _ = make_fetcher(Recorder(answer))
    async with fetcher:
        assert await fetcher.fetch("http://images.example/x.png") == body


# --- DNS: its own threads, a bounded number of lookups, a timeout ---------------------------


async def test_slow_dns_keeps_off_the_default_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image serving and status run on the loop's default executor: lookups that hang
    must not take its threads, and the fetches still end by their deadline."""
    release = threading.Event()
    lock = threading.Lock()
    active = peak = 0
    thread_names: set[str] = set()
    real_getaddrinfo = socket.getaddrinfo

    def hanging_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        # The boundary we don't own: the system resolver. Other hosts (Redis of the
        # in-process stack, say) still resolve for real.
        if not (isinstance(host, str) and host.endswith(".slow.example")):
            return real_getaddrinfo(host, port, *args, **kwargs)
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            thread_names.add(threading.current_thread().name)
        try:
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    loop = asyncio.get_running_loop()
    fetcher = SafeFetcher(transport=httpx.MockTransport(Recorder()), timeout_s=1.0)
    try:
        async with fetcher:
            fetches = [
                asyncio.create_task(fetcher.fetch(f"http://host{i}.slow.example/x.png"))
                for i in range(24)
            ]
            await asyncio.sleep(0.2)
            # The default executor still answers while the lookups hang.
            assert await asyncio.wait_for(loop.run_in_executor(None, sum, (1, 2)), 5.0) == 3
            results = await asyncio.wait_for(asyncio.gather(*fetches, return_exceptions=True), 10)
    finally:
        release.set()
    assert all(isinstance(r, UrlRefused | UrlFetchFailed) for r in results), results
    assert 1 <= peak <= DEFAULT_RESOLVER_THREADS
    assert all(name.startswith("url-dns") for name in thread_names), thread_names


async def test_dns_lookups_are_bounded_and_time_out_inside_the_deadline() -> None:
    active = peak = 0

    async def hanging(host: str, port: int) -> list[str]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(30)
            return [PUBLIC_IP]
        finally:
            active -= 1

    fetcher = SafeFetcher(
        resolver=hanging,
        transport=httpx.MockTransport(Recorder()),
        timeout_s=2.0,
        resolve_timeout_s=0.2,
        resolver_threads=2,
    )
    async with fetcher:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(fetcher.fetch(f"http://h{i}.example/x.png") for i in range(6)),
                return_exceptions=True,
            ),
            10,
        )
    assert peak == 2
    # Each lookup is cut at 0.2 s and its host refused like an unknown one; six lookups two
    # at a time fit in the 2 s deadline.
    assert all(isinstance(r, UrlRefused) and r.message == UNIFORM_REFUSAL for r in results)


def test_fetcher_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SafeFetcher(resolver_threads=0)
    with pytest.raises(ValueError):
        SafeFetcher(resolve_timeout_s=0)


async def test_slow_remote_hits_the_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=IMAGE)

    fetcher = SafeFetcher(resolver=FakeDns(DNS), transport=httpx.MockTransport(slow), timeout_s=0.2)
    async with fetcher:
        with pytest.raises(UrlFetchFailed, match="timed out"):
            await fetcher.fetch("http://images.example/x.png")


async def test_slow_body_hits_the_deadline() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        while True:
            yield b"a"
            await asyncio.sleep(0.05)

    handler = Recorder(lambda r: httpx.Response(200, content=trickle()))
    fetcher, _ = make_fetcher(handler, timeout_s=0.3)
    async with fetcher:
        with pytest.raises(UrlFetchFailed, match="timed out"):
            await fetcher.fetch("http://images.example/x.png")


@pytest.mark.parametrize("status", [404, 500, 304])
async def test_non_2xx_final_status_fails_with_the_status(status: int) -> None:
    fetcher, _ = make_fetcher(Recorder(lambda r: httpx.Response(status)))
    async with fetcher:
        with pytest.raises(UrlFetchFailed, match=str(status)):
            await fetcher.fetch("http://images.example/missing.png")


async def test_network_errors_do_not_leak_their_text() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connect to 10.9.8.7 failed: secret detail", request=request)

    fetcher, _ = make_fetcher(Recorder(broken))
    async with fetcher:
        with pytest.raises(UrlFetchFailed) as caught:
            await fetcher.fetch("http://images.example/x.png")
    assert "secret" not in caught.value.message
    assert "10.9.8.7" not in caught.value.message


async def test_unresolvable_host_is_refused() -> None:
    handler = Recorder()
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        with pytest.raises(UrlRefused, match="host cannot be fetched"):
            await fetcher.fetch("http://nowhere.example/x.png")
    assert handler.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://nowhere.example/x.png",  # no such name
        "http://garbage.example/x.png",  # the resolver's answer is not an address
        "http://empty.example/x.png",  # the resolver answers nothing
        "http://intranet.example/x.png",  # resolves to a private address
        "http://localhost/x.png",
        "http://10.0.0.1/x.png",  # private IP literal
        "http://[::1]/x.png",
    ],
)
async def test_unknown_and_private_hosts_get_one_answer(url: str) -> None:
    """Otherwise the difference maps which internal names exist."""
    fetcher, _ = make_fetcher(Recorder())
    async with fetcher:
        with pytest.raises(UrlRefused) as caught:
            await fetcher.fetch(url)
    assert type(caught.value) is UrlRefused
    assert caught.value.message == UNIFORM_REFUSAL


async def test_allow_private_fetches_internal_hosts_but_still_pins_the_address() -> None:
    handler = Recorder()
    fetcher, _ = make_fetcher(handler, allow_private=True)
    async with fetcher:
        assert await fetcher.fetch("http://intranet.example/x.png") == IMAGE
        with pytest.raises(UrlRefused):
            await fetcher.fetch("file:///etc/passwd")
    [request] = handler.requests
    assert request.url.host == "10.1.2.3"
    assert request.headers["Host"] == "intranet.example"


async def test_fetcher_is_reusable_and_stores_no_cookies() -> None:
    handler = Recorder(
        lambda r: httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"}, content=IMAGE)
    )
    fetcher, _ = make_fetcher(handler)
    async with fetcher:
        await fetcher.fetch("http://images.example/1.png")
        await fetcher.fetch("http://images.example/2.png")
    assert len(handler.requests) == 2
    assert "Cookie" not in handler.requests[1].headers


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:93.184.216.34", True),
        ("127.0.0.1", False),
        ("127.255.0.9", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("172.32.0.1", True),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("100.128.0.1", True),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.251", False),
        ("192.0.0.8", False),
        ("198.18.0.1", False),
        ("::", False),
        ("::1", False),
        ("::7f00:1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::5db8:d822", True),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_international_names_are_resolved_and_sent_in_idna_form() -> None:
    handler = Recorder()
    dns = FakeDns({"xn--bcher-kva.example": [PUBLIC_IP]})
    async with SafeFetcher(resolver=dns, transport=httpx.MockTransport(handler)) as fetcher:
        await fetcher.fetch("https://bücher.example/x.png")
    assert dns.asked == [("xn--bcher-kva.example", 443)]
    [request] = handler.requests
    assert request.headers["Host"] == "xn--bcher-kva.example"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"
