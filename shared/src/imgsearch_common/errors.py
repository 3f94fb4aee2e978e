"""Typed error hierarchy, mapped once to HTTP responses.

Every error the services raise on purpose derives from :class:`ImgSearchError`.
Its ``status_code`` and ``code`` decide the HTTP answer, its message is safe to
show to a client. ``permanent`` tells the indexer whether a retry can help:
a corrupt file stays corrupt, an unreachable encoder may come back.

Anything that is *not* an ``ImgSearchError`` becomes a 500 whose body never
echoes the exception text (it is logged instead); see :func:`install_error_handlers`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class ImgSearchError(Exception):
    """Base class. Subclasses set ``status_code``, ``code`` and ``permanent``."""

    status_code: int = 500
    code: str = "internal_error"
    permanent: bool = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# --- client errors (4xx) -------------------------------------------------------------


class BadRequest(ImgSearchError):
    status_code = 400
    code = "bad_request"
    permanent = True


class EmptyInput(BadRequest):
    code = "empty_input"


class InvalidCollection(BadRequest):
    code = "invalid_collection"


class UnsupportedImage(ImgSearchError):
    """Not an image, or a format outside the allow-list."""

    status_code = 415
    code = "unsupported_image"
    permanent = True


class CorruptImage(ImgSearchError):
    """Recognised format, but the data is truncated or broken."""

    status_code = 422
    code = "corrupt_image"
    permanent = True


class ImageTooLarge(ImgSearchError):
    """Too many pixels (decompression-bomb guard)."""

    status_code = 413
    code = "image_too_large"
    permanent = True


class PayloadTooLarge(ImgSearchError):
    """Too many bytes in a body, an upload or a fetched URL."""

    status_code = 413
    code = "payload_too_large"
    permanent = True


class UrlRefused(BadRequest):
    """A URL we will not fetch: bad scheme, private/loopback address, ..."""

    code = "url_refused"


class UrlFetchFailed(BadRequest):
    """The remote answered badly or too slowly."""

    code = "url_fetch_failed"


class Unauthorized(ImgSearchError):
    status_code = 401
    code = "unauthorized"
    permanent = True

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ImgSearchError):
    status_code = 403
    code = "forbidden"
    permanent = True


class NotFound(ImgSearchError):
    status_code = 404
    code = "not_found"
    permanent = True


class CollectionNotFound(NotFound):
    """A request named a collection that does not exist; the message names those that do."""

    code = "collection_not_found"


# --- overload and upstream trouble (retryable) ----------------------------------------


class Overloaded(ImgSearchError):
    """A bounded queue is full. Callers back off and retry after ``retry_after`` s."""

    status_code = 429
    code = "overloaded"

    def __init__(self, message: str = "server busy, retry later", retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UpstreamUnavailable(ImgSearchError):
    """A service we depend on (encoder, vector store, queue) did not answer."""

    status_code = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one JSON error shape of every service."""
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors, request-validation errors and stray exceptions to one JSON shape."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def on_ours(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImgSearchError)
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        body = error_body("validation_error", "request parameters are invalid")
        body["error"]["details"] = details
        return JSONResponse(body, status_code=422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            error_body(f"http_{exc.status_code}", str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never echo the exception's text: it may carry paths, tokens or internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(ImgSearchError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def install_unavailable_handler(
    app: FastAPI,
    exc_types: tuple[type[Exception], ...],
    message: str,
    retry_after: int = 2,
) -> None:
    """Answer a lower layer's "cannot reach it" errors (e.g. redis-py's ``ConnectionError``
    and ``TimeoutError``) as :class:`UpstreamUnavailable`: 503 + ``Retry-After``, our JSON
    shape, ``message`` as the text. Mapped once, at the boundary, instead of a ``try`` in
    every route; the exception's own text (it names hosts and ports) is only logged."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: %s (%s)", request.method, request.url.path, message, exc)
        err = UpstreamUnavailable(message, retry_after=retry_after)
        return JSONResponse(err.to_dict(), status_code=err.status_code, headers=err.headers)

    for exc_type in exc_types:
        app.add_exception_handler(exc_type, on_unavailable)
