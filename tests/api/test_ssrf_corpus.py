"""SSRF corpus: every way we know to point the URL fetcher inside the network.

Each URL is fetched by a real :class:`SafeFetcher` over the real network transport, with a
worst-case fake DNS (:class:`WorstCaseDns`) and a loopback canary, a TCP server on
127.0.0.1 that counts connections. Every URL aimed at loopback aims at the canary's port,
directly or through redirects from a (fake) public host. The canary must see no connection,
no request may reach the network at all, and every URL must end in ``UrlRefused`` or
``UrlFetchFailed`` (4xx), never anything else. The same corpus then goes through
``POST /api/search/by-url`` once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from imgsearch_api.url_fetch import SafeFetcher
from imgsearch_common.errors import UrlFetchFailed, UrlRefused
from tests.support.inprocess import InProcessStack, served
from tests.support.ssrf import (
    PUBLIC_IP,
    PUBLIC_IP_2,
    LoopbackCanary,
    PublicWeb,
    Rebinding,
    WorstCaseDns,
)

# Names and what they resolve to.
DNS: dict[str, list[str] | Rebinding] = {
    "public.example": [PUBLIC_IP],
    "cdn.example": [PUBLIC_IP_2],
    "localhost": ["127.0.0.1", "::1"],
    "loopback.example": ["127.0.0.1"],
    "loopback6.example": ["::1"],
    "intranet.example": ["10.1.2.3"],
    "corp.example": ["172.16.9.9"],
    "home.example": ["192.168.1.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata.example": ["169.254.169.254"],
    "linklocal6.example": ["fe80::1"],
    "ula.example": ["fd00::1"],
    "cgnat.example": ["100.64.0.1"],
    "ietf.example": ["192.0.0.8"],
    "benchmark.example": ["198.18.0.1"],
    "multicast.example": ["224.0.0.1"],
    "broadcast.example": ["255.255.255.255"],
    "zero.example": ["0.0.0.0"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "nat64.example": ["64:ff9b::7f00:1"],
    "sixtofour.example": ["2002:7f00:1::"],
    "v4compat.example": ["::7f00:1"],
    "documentation6.example": ["2001:db8::1"],
    # One private answer among public ones refuses the host.
    "split.example": [PUBLIC_IP, "127.0.0.1"],
    # DNS rebinding: public at the first lookup, loopback afterwards.
    "rebind.example": Rebinding([PUBLIC_IP], ["127.0.0.1"]),
    "rebind2.example": Rebinding([PUBLIC_IP], ["::ffff:127.0.0.1"]),
    # The other way round: loopback first.
    "rebind3.example": Rebinding(["127.0.0.1"], [PUBLIC_IP]),
    # An international name, stored in its IDNA form as DNS has it.
    "xn--bcher-intern-dlb.example": ["10.0.0.7"],
}


@dataclass(frozen=True)
class Case:
    """``url`` with ``{port}`` standing for the canary's port; ``expect`` the error class."""

    url: str
    expect: type[UrlRefused | UrlFetchFailed] = UrlRefused

    def at(self, port: int) -> str:
        return self.url.replace("{port}", str(port))


def _redirect(status: int, location: str, via: str = "http://public.example") -> str:
    return f"{via}/redirect/{status}?to={quote(location, safe='{}')}"


DIRECT = [
    # --- loopback, every spelling of 127.0.0.1 and ::1 ---
    "http://127.0.0.1:{port}/",
    "http://127.1:{port}/",
    "http://127.0.1:{port}/",
    "http://0x7f000001:{port}/",
    "http://0x7f.1:{port}/",
    "http://2130706433:{port}/",
    "http://017700000001:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://127.127.127.127:{port}/",
    "http://127.0.0.1.:{port}/",
    "HTTP://127.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://[0:0:0:0:0:0:0:1]:{port}/",
    "http://[::1%25lo]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/",
    # the unspecified address dials the local host
    "http://0.0.0.0:{port}/",
    "http://0:{port}/",
    "http://[::]:{port}/",
    # --- loopback by name ---
    "http://localhost:{port}/",
    "http://localhost.:{port}/",
    "http://LOCALHOST:{port}/",
    "https://localhost:{port}/",
    "http://loopback.example:{port}/",
    "http://loopback6.example:{port}/",
    # --- IPv6 forms that embed an IPv4 address: NAT64, 6to4, IPv4-compatible ---
    "http://[64:ff9b::7f00:1]:{port}/",
    "http://[64:ff9b::127.0.0.1]:{port}/",
    "http://[2002:7f00:1::]:{port}/",
    "http://[::127.0.0.1]:{port}/",
    "http://[::7f00:1]:{port}/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://nat64.example:{port}/",
    "http://sixtofour.example:{port}/",
    "http://v4compat.example:{port}/",
    "http://mapped.example:{port}/",
    # --- private, link-local, metadata, CGNAT, IETF, benchmark, multicast, broadcast ---
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fec0::1]/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://192.0.0.8/",
    "http://198.18.0.1/",
    "http://198.19.255.254/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://[2001:db8::1]/",
    # ... and names that resolve there
    "http://intranet.example/",
    "http://corp.example/",
    "http://home.example/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.example/latest/meta-data/",
    "http://linklocal6.example/",
    "http://ula.example/",
    "http://cgnat.example/",
    "http://ietf.example/",
    "http://benchmark.example/",
    "http://multicast.example/",
    "http://broadcast.example/",
    "http://zero.example:{port}/",
    "http://documentation6.example/",
    "http://split.example:{port}/",
    "http://rebind3.example:{port}/",
    # --- userinfo and fragment tricks: the host is what follows the last @ ---
    "http://public.example@127.0.0.1:{port}/",
    "http://public.example:80@127.0.0.1:{port}/",
    "http://@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}#@public.example/",
    "http://127.0.0.1:{port}?@public.example/",
    "http://127.0.0.1:{port}\\@public.example/",
    "http://user:pass@public.example/photo.png",
    # --- international names, look-alikes, escapes ---
    "http://bücher-intern.example/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{port}/",
    "http://１２７.０.０.１:{port}/",
    "http://loc\u0430lhost:{port}/",
    "http://xn--localhost:{port}/",
    "http://%31%32%37.0.0.1:{port}/",
    "http://127.0.0.1%00.public.example:{port}/",
    # --- ports ---
    "http://127.0.0.1:6379/",
    "http://localhost:22/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:65536/",
    "http://[::1]:6379/",
    # --- schemes other than http and https ---
    "file:///etc/passwd",
    "file://127.0.0.1/etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
    "ftp://127.0.0.1:{port}/",
    "dict://127.0.0.1:{port}/info",
    "ldap://127.0.0.1:{port}/",
    "ws://127.0.0.1:{port}/",
    "data:text/plain;base64,aGVsbG8=",
    "javascript:alert(1)",
    "jar:http://127.0.0.1:{port}/x.jar!/",
    "//127.0.0.1:{port}/",
    "127.0.0.1:{port}",
    "http:127.0.0.1:{port}",
]

# Redirect targets from a public host: each status, each target.
REDIRECT_TARGETS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "//127.0.0.1:{port}/x",  # scheme-relative
    "file:///etc/passwd",  # scheme change
]
MORE_REDIRECT_TARGETS = [
    "http://[::1]:{port}/",
    "http://0x7f000001:{port}/",
    "http://2130706433:{port}/",
    "http://0:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/",
    "http://intranet.example/",
    "http://public.example@127.0.0.1:{port}/",
    "gopher://127.0.0.1:{port}/_x",
    "ftp://127.0.0.1:{port}/",
    "https://cdn.example:{port}@127.0.0.1:{port}/",
    # relative: a path on the public host that redirects on to loopback
    _redirect(302, "http://127.0.0.1:{port}/", via=""),
]

CORPUS: list[Case] = [
    *(Case(url) for url in DIRECT),
    *(
        Case(_redirect(status, target))
        for status in (301, 302, 303, 307, 308)
        for target in REDIRECT_TARGETS
    ),
    *(Case(_redirect(302, target)) for target in MORE_REDIRECT_TARGETS),
    # A chain: public → public (another name) → loopback.
    Case(_redirect(302, _redirect(307, "http://127.0.0.1:{port}/"), via="http://cdn.example")),
    # DNS rebinding: the name answers public for the first hop, loopback for the next one.
    Case(_redirect(302, "http://rebind.example:{port}/again", via="http://rebind.example:{port}")),
    Case(_redirect(302, "/again", via="http://rebind2.example:{port}")),
]


@pytest.fixture(scope="module")
def canary() -> Iterator[LoopbackCanary]:
    with LoopbackCanary() as c:
        yield c


@pytest.fixture
async def web() -> AsyncIterator[PublicWeb]:
    transport = PublicWeb()
    yield transport
    await transport.aclose()


def test_the_corpus_is_large() -> None:
    assert len(CORPUS) >= 60
    assert len({c.url for c in CORPUS}) == len(CORPUS)


async def test_the_canary_counts_a_fetch_that_is_allowed(
    canary: LoopbackCanary, web: PublicWeb
) -> None:
    """The control: with the address check off, the same stack does reach the canary, so
    the corpus's zero means refused, not unreachable."""
    canary.reset()
    urls = [
        f"http://127.1:{canary.port}/",
        _redirect(302, f"http://localhost:{canary.port}/"),
        f"http://0.0.0.0:{canary.port}/",
    ]
    if canary.has_ipv6:
        urls += [f"http://[::1]:{canary.port}/", f"http://[::]:{canary.port}/"]
    async with SafeFetcher(resolver=WorstCaseDns(DNS), transport=web, allow_private=True) as f:
        for url in urls:
            assert await f.fetch(url) == b"canary", url
    assert canary.connections == len(urls)
    assert len(web.reached_network) == len(urls)


async def test_rebinding_after_the_check_changes_nothing(
    canary: LoopbackCanary, web: PublicWeb
) -> None:
    """The connection goes to the address that was checked; a second answer is never used."""
    canary.reset()
    dns = WorstCaseDns(DNS)
    async with SafeFetcher(resolver=dns, transport=web) as fetcher:
        body = await fetcher.fetch(f"http://rebind.example:{canary.port}/photo.png")
    assert body == PublicWeb.PHOTO
    assert dns.asked == ["rebind.example"]
    assert canary.connections == 0
    assert web.reached_network == []


@pytest.mark.parametrize("case", CORPUS, ids=[c.url for c in CORPUS])
async def test_corpus_url_is_refused_and_never_connects(
    case: Case, canary: LoopbackCanary, web: PublicWeb
) -> None:
    canary.reset()
    url = case.at(canary.port)
    async with SafeFetcher(resolver=WorstCaseDns(DNS), transport=web, timeout_s=5.0) as fetcher:
        with pytest.raises((UrlRefused, UrlFetchFailed)) as caught:
            await fetcher.fetch(url)
    assert type(caught.value) is case.expect, caught.value.message
    assert web.reached_network == []
    assert canary.connections == 0


async def test_corpus_through_the_by_url_route(
    inprocess: InProcessStack, tmp_path: Path, canary: LoopbackCanary, web: PublicWeb
) -> None:
    canary.reset()
    app = inprocess.create_api(
        inprocess.api_settings(data_dir=tmp_path / "data"),
        url_transport=web,
        url_resolver=WorstCaseDns(DNS),
    )
    wrong: list[str] = []
    async with served(app) as client:
        for case in CORPUS:
            url = case.at(canary.port)
            r = await client.post("/api/search/by-url", json={"url": url})
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            if r.status_code != 400 or code != case.expect.code:
                wrong.append(f"{url}: {r.status_code} {r.text[:200]}")
    assert wrong == []
    assert web.reached_network == []
    assert canary.connections == 0
