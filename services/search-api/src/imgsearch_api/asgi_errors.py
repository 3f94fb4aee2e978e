"""Our JSON error shape answered straight from ASGI middleware (the host, origin, body-size
and admission checks), before any route or FastAPI's error handlers see the request."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Send

from imgsearch_common.errors import error_body


async def refuse(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    close: bool = True,
) -> None:
    """Answer with our JSON error shape and ``headers``, closing the connection unless
    ``close`` is false (by default the request's body, if any, was not read to its end, so
    the connection cannot carry another request)."""
    body = json.dumps(error_body(code, message)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
