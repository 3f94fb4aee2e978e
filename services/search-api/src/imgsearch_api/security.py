"""Who may call what, from where, and how big a request may be.

- Internal endpoints (``/internal/*``) need the internal token, always; with no
  token configured they refuse every request. They are served only on the internal
  listener (``INTERNAL_PORT``), which serves nothing else but ``/health``
  (:class:`InternalListener`).
- Write endpoints (indexing) need ``API_KEY`` when it is set; listening on any address but
  a loopback one without it is refused at start-up (:func:`exposure_problem`).
- :class:`TrustedHosts` answers 400 to a ``Host`` the server does not answer to (DNS
  rebinding), :class:`SameOriginWrites` 403 to a browser's cross-site write; the rules are
  ``hosts.py``'s.
- :class:`BodySizeLimit` answers 413 for bodies over the limit before any
  parsing happens (multipart parsing would otherwise spool them to disk).

All four are pure ASGI middleware: a refused request's body is never read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgsearch_common.auth import bearer_or_key, check_secret

from .asgi_errors import refuse
from .hosts import HostRule, OriginRule, is_loopback
from .settings import ApiSettings

#: Methods that change something: their Origin is checked.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INTERNAL_PREFIX = "/internal"


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def require_api_key(
    settings: Annotated[ApiSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    expected = settings.api_key_value()
    if expected is None:
        return
    check_secret(bearer_or_key(authorization, x_api_key), expected)


async def require_internal_token(
    settings: Annotated[ApiSettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    check_secret(bearer_or_key(authorization), settings.internal_token_value())


class BodySizeLimit:
    """Pure ASGI middleware: refuse request bodies larger than ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is refused at once; a chunked
    body is read up to the limit and refused as soon as it crosses it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True
            if too_big:
                await self._refuse(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        payload = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"request body over {self.max_bytes} bytes"
        await refuse(send, 413, "payload_too_large", message)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first ``name`` header of the request (latin-1, as HTTP carries it), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class TrustedHosts:
    """Pure ASGI middleware: 400 for a request whose ``Host`` is not one the server answers
    to. A page whose name an attacker re-points at this server (DNS rebinding) can reach a
    loopback API from the victim's browser, but its requests carry the attacker's name."""

    def __init__(self, app: ASGIApp, rule: HostRule) -> None:
        self.app = app
        self.rule = rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.rule.allows(_header(scope, b"host") or ""):
            message = (
                "this server does not answer to that Host name; the server's ALLOWED_HOSTS "
                "lists the names it may be reached by"
            )
            await refuse(send, 400, "bad_request", message)
            return
        await self.app(scope, receive, send)


class SameOriginWrites:
    """Pure ASGI middleware: 403 for a write (POST, PUT, PATCH, DELETE) a browser sends
    from another site: an ``Origin`` the rule does not allow, or, without one,
    ``Sec-Fetch-Site: cross-site``. Requests without either (the CLI, curl, the workers)
    pass; the page at ``/`` sends its own origin."""

    def __init__(self, app: ASGIApp, rule: OriginRule) -> None:
        self.app = app
        self.rule = rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            origin = _header(scope, b"origin")
            if origin is not None:
                allowed = self.rule.allows(origin, _header(scope, b"host") or "")
            else:
                allowed = (_header(scope, b"sec-fetch-site") or "").lower() != "cross-site"
            if not allowed:
                message = (
                    "a page of another site may not send this request (cross-site); the "
                    "server's ALLOWED_ORIGINS lists the sites that may"
                )
                await refuse(send, 403, "forbidden", message)
                return
        await self.app(scope, receive, send)


class InternalListener:
    """Pure ASGI middleware: ``/internal/*`` only on the listener at ``internal_port``, which
    serves nothing else but ``/health`` (the workers' probe); 404 otherwise. The listener is
    the port the request came in on (``scope["server"]``); a request whose server is unknown
    counts as public."""

    def __init__(self, app: ASGIApp, internal_port: int) -> None:
        self.app = app
        self.internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server: tuple[str, int | None] | None = scope.get("server")
            on_internal = server is not None and server[1] == self.internal_port
            path: str = scope["path"]
            internal_path = path == INTERNAL_PREFIX or path.startswith(INTERNAL_PREFIX + "/")
            if internal_path != on_internal and not (on_internal and path == "/health"):
                # The answer of a path that does not exist (errors.install_error_handlers).
                await refuse(send, 404, "http_404", "Not Found")
                return
        await self.app(scope, receive, send)


def install_exposure_guards(app: FastAPI, settings: ApiSettings) -> None:
    """Add the three outermost checks: the Host first, then the Origin of writes, then the
    listener a path belongs to. Call it after every other middleware is added."""
    hosts = HostRule.of(settings.trusted_hosts())
    app.add_middleware(InternalListener, internal_port=settings.internal_port)
    app.add_middleware(SameOriginWrites, rule=OriginRule.of(hosts, settings.allowed_origins))
    app.add_middleware(TrustedHosts, rule=hosts)


def exposure_problem(settings: ApiSettings) -> str | None:
    """Why the API must not start with these settings (None: it may): it would listen on
    an address others can reach, with its write endpoints open to anyone."""
    if settings.api_key_value() is not None or is_loopback(settings.api_host):
        return None
    return (
        f"API_HOST={settings.api_host!r} listens beyond this machine, and API_KEY is not set: "
        "anyone who reaches it could queue folders, uploads and URLs for indexing. Set "
        "API_KEY (e.g. `openssl rand -hex 32`; clients send it as X-API-Key), or listen on "
        "the loopback (API_HOST=127.0.0.1) behind a reverse proxy that checks callers."
    )
