"""Fetch a user-supplied URL without letting it reach inside our network (SSRF).

A URL given to ``/search/by-url`` or to index-by-URL is fetched by *our* server, so a
careless fetcher lets anyone read the cloud metadata service (``169.254.169.254``),
an internal admin page or a loopback-only Redis. :class:`SafeFetcher` closes the
usual holes:

- only ``http`` and ``https``; no credentials in the URL;
- the host is resolved by us and **every** address it resolves to must be public
  (:func:`is_public_address`); one private answer refuses the whole host;
- the connection goes to the address we checked: the request URL carries the IP
  literal, the original name travels in the ``Host`` header and, for HTTPS, as the
  TLS server name (SNI and certificate check). A DNS answer that changes between
  check and connect (DNS rebinding) therefore changes nothing;
- a host that does not resolve, resolves to nothing usable or to any non-public address
  gets one and the same answer, so that the answers do not map which internal names exist;
- redirects are followed by hand, and every hop is checked again like the first;
- the body is taken as sent: a ``Content-Encoding`` other than ``identity`` is refused,
  never decoded (httpx would decode it whatever ``Accept-Encoding`` asked for, a whole
  network chunk at a time: a few hundred bytes of stacked gzip become 100+ MB). The
  bytes on the wire are streamed and cut off past ``max_bytes``; one deadline covers all
  hops;
- DNS lookups run on the fetcher's own few threads, never the loop's default executor
  (image serving and status use it), at most that many at a time, each with its own
  timeout inside the deadline.

Every failure is an :class:`~imgsearch_common.errors.UrlRefused` (we will not fetch
this), :class:`~imgsearch_common.errors.UrlFetchFailed` (the remote answered badly or
not at all) or :class:`~imgsearch_common.errors.PayloadTooLarge`. Messages never carry
the resolved addresses or a lower layer's exception text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType

import httpx

from imgsearch_common.errors import PayloadTooLarge, UrlFetchFailed, UrlRefused

log = logging.getLogger(__name__)

#: ``async (host, port) -> ["ip", ...]``. The default asks the system resolver.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: Lookups in flight at once (and threads for the system resolver).
DEFAULT_RESOLVER_THREADS = 4
DEFAULT_RESOLVE_TIMEOUT_S = 5.0
# One answer for "no such name", "not an address" and "not public": a caller must not
# learn from the difference which internal names exist.
_HOST_REFUSED = "the URL's host cannot be fetched (unknown, or not a public address)"
_ENCODED_BODY = (
    "the remote server sent an encoded (compressed) body; only unencoded bodies are fetched"
)
_ALLOWED_SCHEMES = ("http", "https")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Blocks that Python's ``is_global`` (3.11) does not treat as non-public, or not in every
# patch release: shared address space (CGNAT) and the deprecated IPv4-compatible IPv6 range.
_NOT_PUBLIC = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("::/96"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: IPAddress) -> bool:
    """True when ``address`` is a public unicast address that we may connect to.

    IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4
    ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by the IPv4 address inside,
    so ``::ffff:127.0.0.1`` is loopback here, as it is to the kernel.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if any(address.version == net.version and address in net for net in _NOT_PUBLIC):
        return False
    return address.is_global


def _getaddrinfo(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (both families). Blocks."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _release_from_thread(
    loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore, _: Future[list[str]]
) -> None:
    # Runs in the resolver thread when its lookup ends, however late.
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for a slot
        loop.call_soon_threadsafe(slots.release)


class SafeFetcher:
    """Download the body behind a user-supplied URL, refusing non-public destinations.

    ``max_bytes``: largest body accepted (bytes on the wire; encoded bodies are refused,
    so that is also the body's size). ``timeout_s``: one deadline for the whole fetch,
    every hop and the body included. ``max_redirects``: hops followed after the first
    request. ``resolver``: ``async (host, port) -> [ip, ...]``; by default the system
    resolver, run on ``resolver_threads`` threads of the fetcher's own.
    ``resolver_threads``: lookups in flight at once; a fetch that finds them all busy
    waits for one within its deadline. ``resolve_timeout_s``: the most one lookup may take
    (the deadline still applies); a host whose lookup times out is refused like an
    unknown one. ``transport``: an httpx transport (tests pass ``httpx.MockTransport``).
    ``allow_private``: skip the public-address check; only for trusted deployments that
    fetch from their own network on purpose — the other rules (scheme, credentials,
    pinning the checked address) still apply.

    Create it once (in the lifespan) and close it with :meth:`aclose`, or use it as an
    async context manager.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = 10.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_private: bool = False,
        user_agent: str = "imgsearch-fetcher/0.1",
        resolver_threads: int = DEFAULT_RESOLVER_THREADS,
        resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S,
    ) -> None:
        if max_bytes <= 0 or timeout_s <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout_s must be positive, max_redirects >= 0")
        if resolver_threads < 1 or resolve_timeout_s <= 0:
            raise ValueError("resolver_threads must be >= 1 and resolve_timeout_s positive")
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self.resolve_timeout_s = resolve_timeout_s
        self._resolve = resolver
        # getaddrinfo cannot be cancelled: a hanging lookup holds its thread until the
        # system resolver gives up. These threads are ours alone, so that holds nothing
        # else up, and the semaphore keeps lookups from queueing behind hung ones.
        self._dns_pool = ThreadPoolExecutor(resolver_threads, thread_name_prefix="url-dns")
        self._dns_slots = asyncio.Semaphore(resolver_threads)
        self._client = httpx.AsyncClient(
            transport=transport,
            # Redirects are followed by hand so that every hop is checked.
            follow_redirects=False,
            # No proxies or .netrc from the environment: a proxy would connect to the
            # name itself and defeat the address pinning.
            trust_env=False,
            timeout=httpx.Timeout(timeout_s),
            # No keep-alive: the pool is keyed by (scheme, IP, port), so a kept TLS
            # connection opened for one name could be reused for another name on the
            # same IP without checking that name's certificate.
            limits=httpx.Limits(max_keepalive_connections=0),
            # Never store cookies: remote sites must not leave state in a shared client.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": user_agent,
                "Accept": "image/*",
                # Ask for the body as stored: a small compressed body can expand far
                # past max_bytes in one decoded chunk.
                "Accept-Encoding": "identity",
            },
        )

    async def __aenter__(self) -> SafeFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        # Lookups still hanging finish on their own; nobody waits for them.
        self._dns_pool.shutdown(wait=False, cancel_futures=True)

    async def fetch(self, url: str) -> bytes:
        """The body behind ``url`` after at most ``max_redirects`` checked redirects.

        Raises :class:`UrlRefused`, :class:`UrlFetchFailed` or :class:`PayloadTooLarge`.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url)
        except TimeoutError as exc:
            raise UrlFetchFailed("the remote server timed out") from exc

    async def _fetch(self, url: str) -> bytes:
        current = _parse(url)
        redirects = 0
        while True:
            address = await self._check(current)
            request = self._client.build_request(
                "GET",
                _pin(current, address),
                headers={"Host": current.netloc.decode("ascii")},
                extensions=(
                    {"sni_hostname": _ascii_host(current)} if current.scheme == "https" else None
                ),
            )
            response = await self._send(request)
            try:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    if redirects == self.max_redirects:
                        raise UrlFetchFailed(
                            f"too many redirects (the limit is {self.max_redirects})"
                        )
                    redirects += 1
                    current = _join(current, location)
                    continue
                if not response.is_success:
                    raise UrlFetchFailed(f"the remote server answered HTTP {response.status_code}")
                return await self._read_body(response)
            finally:
                await response.aclose()

    async def _check(self, url: httpx.URL) -> IPAddress:
        """Refuse ``url`` unless its scheme is allowed and all its addresses are public;
        return the address to connect to."""
        if url.scheme not in _ALLOWED_SCHEMES:
            raise UrlRefused("only http and https URLs can be fetched")
        if url.userinfo:
            raise UrlRefused("URLs with credentials are not fetched")
        host = _ascii_host(url)
        if not host:
            raise UrlRefused("the URL has no host")
        port = url.port or _DEFAULT_PORTS[url.scheme]
        addresses = await self._addresses(host, port)
        if not self.allow_private and not all(is_public_address(a) for a in addresses):
            log.info("refused %r: it resolves to a non-public address", host)
            raise UrlRefused(_HOST_REFUSED)
        return addresses[0]

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass  # a name, not an IP literal
        try:
            addresses = [ipaddress.ip_address(a) for a in await self._lookup(host, port)]
        except (OSError, ValueError) as exc:  # gaierror, the lookup's timeout, not an IP
            log.info("could not resolve %r: %r", host, exc)
            raise UrlRefused(_HOST_REFUSED) from exc
        if not addresses:
            log.info("could not resolve %r: no addresses", host)
            raise UrlRefused(_HOST_REFUSED)
        return addresses

    async def _lookup(self, host: str, port: int) -> Sequence[str]:
        """The resolver's answer for ``host``, one of ``resolver_threads`` lookups at a time,
        within ``resolve_timeout_s``. Waiting for a free slot counts against the fetch's
        deadline only. Raises ``TimeoutError`` (an ``OSError``) when the lookup is too slow."""
        await self._dns_slots.acquire()
        if self._resolve is not None:
            try:
                async with asyncio.timeout(self.resolve_timeout_s):
                    return await self._resolve(host, port)
            finally:
                self._dns_slots.release()
        try:
            lookup = self._dns_pool.submit(_getaddrinfo, host, port)
        except BaseException:
            self._dns_slots.release()
            raise
        # The slot is freed when the thread is, not when we stop waiting: a lookup that
        # outlives its timeout still holds a thread, and a new one would queue behind it.
        loop = asyncio.get_running_loop()
        lookup.add_done_callback(functools.partial(_release_from_thread, loop, self._dns_slots))
        async with asyncio.timeout(self.resolve_timeout_s):
            return await asyncio.wrap_future(lookup)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UrlFetchFailed("the remote server timed out") from exc
        except httpx.HTTPError as exc:
            # The exception text can name internal addresses or library details.
            log.info("fetching %s failed: %r", request.url, exc)
            raise UrlFetchFailed("the remote server could not be reached") from exc

    async def _read_body(self, response: httpx.Response) -> bytes:
        # Refused rather than decoded under a bound: we asked for identity, images are
        # compressed already, and a decoder run on hostile input is work and attack
        # surface that nothing here needs.
        if _content_codings(response.headers):
            raise UrlFetchFailed(_ENCODED_BODY)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise PayloadTooLarge(f"the remote body is larger than {self.max_bytes} bytes")
        body = bytearray()
        try:
            async for chunk in _raw_chunks(response):
                body += chunk
                if len(body) > self.max_bytes:
                    raise PayloadTooLarge(f"the remote body is larger than {self.max_bytes} bytes")
        except httpx.TimeoutException as exc:
            raise UrlFetchFailed("the remote server timed out") from exc
        except httpx.HTTPError as exc:
            log.info("reading %s failed: %r", response.request.url, exc)
            raise UrlFetchFailed("the remote server broke off the response") from exc
        return bytes(body)


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they came off the wire: ``aiter_bytes()`` would run httpx's
    decoders."""
    if response.is_stream_consumed:
        # Built in memory and read at once (``httpx.Response(content=...)``, as in-memory
        # transports answer): nothing is left on the wire. Without a content coding, which
        # the caller made sure of, the content is the raw bytes.
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _content_codings(headers: httpx.Headers) -> list[str]:
    """The content codings of a response other than ``identity`` (every header line and
    every comma-separated item, as httpx reads them)."""
    codings = (c.strip().lower() for c in headers.get_list("Content-Encoding", split_commas=True))
    return [c for c in codings if c not in ("", "identity")]


def _parse(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlRefused("the URL is not valid") from exc


def _pin(url: httpx.URL, address: IPAddress) -> httpx.URL:
    """``url`` with its host replaced by the checked IP literal."""
    # Drop a zone index ("fe80::1%eth0"): a URL host cannot carry it portably, and
    # link-local addresses are only ever reached with allow_private anyway.
    return url.copy_with(host=str(address).split("%", 1)[0])


def _ascii_host(url: httpx.URL) -> str:
    """The host as it goes on the wire: international names in their IDNA (xn--) form."""
    return url.raw_host.decode("ascii")


def _join(base: httpx.URL, location: str) -> httpx.URL:
    """Resolve a ``Location`` header (absolute or relative) against the current URL."""
    try:
        return base.join(location)
    except httpx.InvalidURL as exc:
        raise UrlFetchFailed("the remote server redirected to an invalid URL") from exc
