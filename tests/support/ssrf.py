"""A loopback canary, a worst-case fake DNS and a fake public web, for SSRF tests.

The fetcher under test connects through the *real* network transport to every address
that is not one of the fake public web's: there is no internet here, so the public hosts
that launch redirects are answered in process, while anything aimed at loopback really
dials it and is counted by :class:`LoopbackCanary`.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qs

import httpx

#: Public addresses the fake web answers for (outside every reserved block).
PUBLIC_IP = "93.184.216.34"
PUBLIC_IP_2 = "93.184.216.35"

_CANARY_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ncanary"


class LoopbackCanary:
    """A TCP server on 127.0.0.1 (and ``::1`` on the same port where the host has IPv6)
    that counts every connection it accepts.

    It answers ``200 canary`` so that a leak is visible twice: as a connection here and
    as a fetch that succeeded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted = 0
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="loopback-canary", daemon=True)
        self.port = 0
        self.has_ipv6 = False

    @property
    def connections(self) -> int:
        with self._lock:
            return self._accepted

    def reset(self) -> None:
        with self._lock:
            self._accepted = 0

    def __enter__(self) -> LoopbackCanary:
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        with contextlib.suppress(OSError):  # no IPv6 in this container, or the port is taken
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                v6.bind(("::1", self.port))
            except OSError:
                v6.close()
                raise
            self._sockets.append(v6)
            self.has_ipv6 = True
        for sock in self._sockets:
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._selector.close()
        for sock in self._sockets:
            sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                listener = key.fileobj
                assert isinstance(listener, socket.socket)
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, OSError):
                    continue
                with self._lock:
                    self._accepted += 1
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(1.0)
                    conn.recv(65536)
                    conn.sendall(_CANARY_ANSWER)


@dataclass(frozen=True)
class Rebinding:
    """A DNS-rebinding name: ``first`` at the first lookup, ``then`` at every later one."""

    first: Sequence[str]
    then: Sequence[str]


class WorstCaseDns:
    """``async (host, port) -> [ip, ...]`` for the corpus: the answers a hostile or sloppy
    resolver could give, never fewer.

    ``table`` maps a name to its answers, or to a :class:`Rebinding`. Names are matched
    without case and without a trailing dot, as DNS does. A name not in the table is parsed
    like the C library parses a numeric host (``127.1``, ``0x7f000001``, ``0177.0.0.1``,
    ``2130706433`` all mean 127.0.0.1), trailing dot or not; anything else does not resolve.
    """

    def __init__(self, table: Mapping[str, Sequence[str] | Rebinding]) -> None:
        self._table = {_dns_key(name): answers for name, answers in table.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        key = _dns_key(host)
        seen_before = any(_dns_key(h) == key for h in self.asked)
        self.asked.append(host)
        answers = self._table.get(key)
        if isinstance(answers, Rebinding):
            return list(answers.then if seen_before else answers.first)
        if answers is not None:
            return list(answers)
        try:
            infos = socket.getaddrinfo(
                key, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except (OSError, UnicodeError) as exc:
            raise socket.gaierror(socket.EAI_NONAME, f"no such host {host!r}") from exc
        return [str(info[4][0]) for info in infos]


def _dns_key(name: str) -> str:
    return name.lower().rstrip(".")


class PublicWeb(httpx.AsyncBaseTransport):
    """A transport: requests to :data:`PUBLIC_IP` / :data:`PUBLIC_IP_2` are answered here
    (the public web that launches redirects), every other request goes to the real network
    transport and is recorded in :attr:`reached_network`.

    Paths of the fake public web:

    - ``/redirect/<status>?to=<location>`` answers ``<status>`` with ``Location: <location>``;
    - ``/photo.png`` answers a small body (``PHOTO``);
    - anything else 404.
    """

    PHOTO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self.public_requests: list[httpx.Request] = []
        self.reached_network: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in (PUBLIC_IP, PUBLIC_IP_2):
            self.public_requests.append(request)
            return self._answer(request)
        self.reached_network.append(str(request.url))
        return await self._real.handle_async_request(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "redirect" and len(parts) == 2 and parts[1].isdigit():
            [location] = parse_qs(request.url.query.decode("ascii"))["to"]
            return httpx.Response(int(parts[1]), headers={"Location": location})
        if parts == ["photo.png"]:
            return httpx.Response(200, content=self.PHOTO)
        return httpx.Response(404)

    async def aclose(self) -> None:
        await self._real.aclose()
