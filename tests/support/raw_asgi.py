"""One HTTP request to an ASGI app with its target exactly as written.

httpx normalises what it sends (it removes ``..`` segments and re-quotes the URL); an
attacker's client sends any bytes. :func:`raw_request` hands the app the request a server
would: the target split at ``?``, the path percent-decoded as uvicorn decodes it
(``urllib.parse.unquote``, UTF-8 with replacement characters), ``raw_path`` the bytes as
sent. Targets must be ASCII: uvicorn's parsers refuse anything else before the app sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.headers if k.lower() == key), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    app: ASGIApp,
    method: str,
    target: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    server: tuple[str, int] = ("api", 80),
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> RawResponse:
    """Send ``method target`` to ``app`` (its lifespan already running) and collect the
    answer. ``server`` is the listener the request came in on (``scope["server"]``); a
    ``Host`` header naming it is added unless ``headers`` has one."""
    raw_path, _, query = target.partition(b"?")
    sent_headers = [(k.lower(), v) for k, v in headers]
    if not any(k == b"host" for k, _ in sent_headers):
        host, port = server
        sent_headers.insert(0, (b"host", (host if port == 80 else f"{host}:{port}").encode()))
    if body and not any(k == b"content-length" for k, _ in sent_headers):
        sent_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": sent_headers,
        "server": server,
        "client": client,
    }
    received = False
    done = asyncio.Event()
    status = 0
    response_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal received
        if received:
            # The client stays until the whole answer is in (a streamed body that saw a
            # disconnect at once would stop short).
            await done.wait()
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return RawResponse(status, response_headers, b"".join(chunks))
