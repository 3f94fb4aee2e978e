"""The few HTTP calls the CLI makes. Transport errors and 4xx/5xx become :class:`CliError`,
one line the user can act on; a full queue's 429/503 is waited out (``Retry-After``)."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from imgsearch_common.backpressure import BUSY_STATUSES, retry_after_s
from imgsearch_common.schemas import (
    BatchQueued,
    BatchStatus,
    CollectionDropped,
    CollectionsResponse,
    FolderIndexRequest,
    ImageDeleted,
    RequeueRequest,
    RequeueResult,
)

from .format import printable

#: Attempts of one request while the server answers 429/503 with ``Retry-After``.
MAX_ATTEMPTS = 5

M = TypeVar("M", bound=BaseModel)


class CliError(Exception):
    """A failure the user can act on; printed as one line, never as a traceback."""

    def __init__(self, message: str, *, transient: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The server may answer differently soon (unreachable, 5xx): worth asking again.
        self.transient = transient
        #: The server's error code (``collection_not_found``...), when it answered one.
        self.code = code


#: Error codes whose message says all the user needs, without the request in front: a
#: mistyped collection is answered with the names of those that exist.
PLAIN_CODES = frozenset({"collection_not_found"})


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _error_message(response: httpx.Response) -> str:
    """The server's message alone (for :data:`PLAIN_CODES`), or the status line."""
    try:
        return printable(str(response.json()["error"]["message"]))
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": {"code", "message"}}`` as one line, or the status line."""
    try:
        error = response.json()["error"]
        text = f"{error['code']}: {error['message']}"
        details = [
            f"{'.'.join(str(part) for part in d.get('loc', []))}: {d.get('msg', '')}"
            for d in error.get("details") or []
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"
    if details:
        text += f" ({'; '.join(details)})"
    return printable(text)


def _retry_after(response: httpx.Response) -> float | None:
    """The advised back-off of a busy answer (429/503), or None: do not retry."""
    if response.status_code not in BUSY_STATUSES:
        return None
    return retry_after_s(response.headers)


class ApiClient:
    """The few calls the CLI makes. Transport errors and 4xx/5xx become :class:`CliError`.

    A 429/503 with ``Retry-After`` (a full queue) is retried after the advised delay, a
    bounded number of times: backpressure is part of the API.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.base_url = base_url
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                raise CliError(
                    f"the search API at {self.base_url} did not answer in time (--timeout)",
                    transient=True,
                ) from None
            except httpx.TransportError as exc:
                raise CliError(
                    f"cannot reach the search API at {self.base_url} ({exc.__class__.__name__}); "
                    "is it running? (--api / IMGSEARCH_API)",
                    transient=True,
                ) from None
            delay = _retry_after(response)
            if delay is not None and attempt < MAX_ATTEMPTS:
                self._sleep(delay)
                continue
            if response.status_code < 400:
                return response
            code = _error_code(response)
            if response.status_code == 401:
                raise CliError(
                    f"{_error_text(response)}; give the key with --api-key or API_KEY", code=code
                )
            if code in PLAIN_CODES:
                raise CliError(_error_message(response), code=code)
            raise CliError(
                f"{method} {path} failed: {_error_text(response)}",
                transient=response.status_code >= 500,
                code=code,
            )
        raise AssertionError("unreachable")  # the loop returns or raises

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{method} {path}: the server did not answer with JSON") from None

    def status(self) -> dict[str, Any]:
        data = self.json("GET", "/api/status")
        if not isinstance(data, dict):
            raise CliError("GET /api/status: unexpected answer")
        return data

    def index_folder(self, request: FolderIndexRequest) -> BatchQueued:
        data = self.json("POST", "/api/index/folder", json=request.model_dump())
        return _validate(BatchQueued, data, "POST /api/index/folder")

    def requeue(self, request: RequeueRequest) -> RequeueResult:
        body = request.model_dump(exclude_none=True)
        data = self.json("POST", "/api/index/dead-letters/requeue", json=body)
        return _validate(RequeueResult, data, "POST /api/index/dead-letters/requeue")

    def batch(self, batch_id: str) -> BatchStatus:
        # A path segment the user may type (imgsearch batch ID): quoted whole.
        data = self.json("GET", f"/api/index/batches/{quote(batch_id, safe='')}")
        return _validate(BatchStatus, data, "GET /api/index/batches")

    def collections(self) -> CollectionsResponse:
        data = self.json("GET", "/api/collections")
        return _validate(CollectionsResponse, data, "GET /api/collections")

    def delete_image(self, image_id: str, collection: str) -> ImageDeleted:
        # The id is a path segment: quoted whole, so it cannot name another route.
        path = f"/api/images/{quote(image_id, safe='')}"
        data = self.json("DELETE", path, params={"collection": collection})
        return _validate(ImageDeleted, data, "DELETE /api/images")

    def drop_collection(self, name: str) -> CollectionDropped:
        data = self.json("DELETE", f"/api/collections/{quote(name, safe='')}")
        return _validate(CollectionDropped, data, "DELETE /api/collections")

    def search_image(self, path: Path, fields: Mapping[str, str]) -> httpx.Response:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return self.request(
            "POST",
            "/api/search/by-image",
            data=dict(fields),
            files={"file": (path.name, content, mime)},
        )

    def search_json(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        return self.request("POST", path, json=dict(body))


def _validate(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError:
        raise CliError(f"{what}: the server's answer does not match the API schema") from None
