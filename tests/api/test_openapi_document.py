"""The search API's OpenAPI document (``app.openapi()``) tells the truth about error
answers: each operation lists the error statuses its code can give, each in our one error
shape (``imgsearch_common.errors``: ``{"error": {"code", "message", "details"?}}``), with
``Retry-After`` on 429 and 503 and ``WWW-Authenticate`` on 401; FastAPI's default 422
(``HTTPValidationError``, every field optional) is nowhere in it.

The schema is checked against what the errors module emits (every error class, the
validation handler's body) and against real answers of the real app (``tests/support/
openapi`` validates them: ``jsonschema`` is not installed here); damaged bodies must fail
it, so the check is not vacuous.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgsearch_api.app import create_app
from imgsearch_api.indexing import ExtensionRefused
from imgsearch_api.settings import ApiSettings
from imgsearch_common.errors import ImgSearchError, error_body
from tests.support.inprocess import InProcessStack, served
from tests.support.openapi import check_response, validate

SPEC: dict[str, Any] = create_app(ApiSettings(data_dir=Path("/nonexistent/openapi"))).openapi()
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
#: Every operation of the document and the statuses it may answer (the success first).
#: 400 (a Host the server does not answer to) is every operation's; 403 (cross-site
#: Origin) and 413 (body over MAX_UPLOAD_BYTES) every write's; 401 every indexing route's.
STATUSES: dict[tuple[str, str], set[int]] = {
    ("POST", "/api/search/by-image"): {200, 400, 403, 404, 409, 413, 415, 422, 429, 503},
    ("POST", "/api/search/by-url"): {200, 400, 403, 404, 409, 413, 415, 422, 429, 503},
    ("POST", "/api/search/by-text"): {200, 400, 403, 404, 409, 413, 422, 429, 503},
    ("POST", "/api/index/folder"): {202, 400, 401, 403, 404, 409, 413, 422, 503},
    ("POST", "/api/index/upload"): {202, 400, 401, 403, 409, 413, 415, 422, 503},
    ("POST", "/api/index/url"): {202, 400, 401, 403, 409, 413, 415, 422, 503},
    ("GET", "/api/index/batches/{batch_id}"): {200, 400, 401, 404, 422, 503},
    ("GET", "/api/image/{image_id}/thumbnail"): {200, 304, 400, 404, 422, 503},
    ("GET", "/api/index/batches"): {200, 400, 401, 422, 503},
    ("GET", "/api/index/dead-letters"): {200, 400, 401, 422, 503},
    ("POST", "/api/index/dead-letters/requeue"): {200, 400, 401, 403, 413, 422, 503},
    ("GET", "/health"): {200, 400},
    ("GET", "/api/status"): {200, 400, 503},
    ("GET", "/api/image/{image_id}"): {200, 400, 404, 422},
    ("GET", "/images/{filename}"): {200, 400, 404, 422},
    ("GET", "/static/images/{filename}"): {200, 400, 404, 422},
    ("GET", "/api/collections"): {200, 400},
    ("DELETE", "/api/images/{image_id}"): {200, 400, 401, 403, 404, 413, 422},
    ("DELETE", "/api/collections/{name}"): {200, 400, 401, 403, 404, 413, 422},
    ("GET", "/api/duplicates"): {200, 400, 404, 422, 503},
    ("POST", "/api/collections/{name}/reindex"): {202, 400, 401, 403, 404, 409, 413, 422, 503},
    ("GET", "/api/collections/{name}/reindex"): {200, 400, 404, 422, 503},
}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _errors() -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    for method, path, operation in _operations():
        for status, answer in operation["responses"].items():
            if int(status) >= 400:
                yield method, path, int(status), answer


def test_each_operation_declares_the_statuses_it_answers() -> None:
    declared = {
        (method, path): {int(s) for s in operation["responses"]}
        for method, path, operation in _operations()
    }
    assert declared == STATUSES


def test_every_error_answer_is_our_error_shape_with_a_description() -> None:
    for method, path, status, answer in _errors():
        where = f"{method} {path} {status}"
        assert answer["content"] == {"application/json": {"schema": ERROR_SCHEMA}}, where
        # Says which codes and why, not only the status's name.
        assert "`" in answer["description"], where


def test_every_write_declares_the_body_parse_error() -> None:
    """FastAPI answers 400 ``http_400`` ("There was an error parsing the body") to a body it
    cannot parse (a malformed multipart, JSON that is not UTF-8): every write says so."""
    for method, path, status, answer in _errors():
        if method == "POST" and status == 400:
            assert "`http_400`" in answer["description"], path


def test_the_name_routes_declare_the_404_of_no_route() -> None:
    """A name with a line feed matches no route (``{filename:path}`` is ``.*``): Starlette's
    404, ``http_404``, which the fuzz met."""
    for path in ("/images/{filename}", "/static/images/{filename}"):
        assert "`http_404`" in SPEC["paths"][path]["get"]["responses"]["404"]["description"]


def test_the_422_is_ours_not_fastapis() -> None:
    """FastAPI adds its own 422 (``HTTPValidationError``) to any operation that does not
    declare one: every operation with parameters declares ours."""
    schemas = SPEC["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    with_422 = [(m, p) for m, p, s, _ in _errors() if s == 422]
    assert len(with_422) == 19
    for method, path, status, answer in _errors():
        if status == 422:
            schema = answer["content"]["application/json"]["schema"]
            assert schema == ERROR_SCHEMA, (method, path)
            assert "validation_error" in answer["description"], (method, path)


def test_retry_after_and_www_authenticate_are_declared() -> None:
    for method, path, status, answer in _errors():
        headers = answer.get("headers", {})
        if status in (429, 503):
            assert headers["Retry-After"]["required"] is True, (method, path, status)
            assert headers["Retry-After"]["schema"] == {"type": "integer"}
        elif status == 401:
            assert headers["WWW-Authenticate"]["required"] is True, (method, path)
        else:
            assert headers == {}, (method, path, status)


def _error_classes(cls: type[ImgSearchError] = ImgSearchError) -> Iterator[type[ImgSearchError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _error_classes(sub)


def _instance(cls: type[ImgSearchError]) -> ImgSearchError:
    try:
        return cls("a message")
    except TypeError:
        return cls()  # type: ignore[call-arg]  # Unauthorized takes no message


def test_the_error_schema_is_what_the_errors_module_emits() -> None:
    classes = set(_error_classes())
    assert ExtensionRefused in classes and len(classes) >= 15
    for cls in classes:
        body = _instance(cls).to_dict()
        assert validate(body, ERROR_SCHEMA, SPEC) == [], cls
    assert validate(error_body("http_404", "Not Found"), ERROR_SCHEMA, SPEC) == []
    with_details = error_body("validation_error", "request parameters are invalid")
    with_details["error"]["details"] = [{"loc": ["body", "limit", 0], "msg": "too big"}]
    assert validate(with_details, ERROR_SCHEMA, SPEC) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"detail": [{"loc": ["body"], "msg": "x", "type": "missing"}]},  # FastAPI's shape
        {"error": {"message": "no code"}},
        {"error": {"code": "x"}},
        {"error": {"code": 400, "message": "x"}},
        {"error": {"code": "x", "message": None}},
        {"error": {"code": "x", "message": "m", "details": None}},
        {"error": {"code": "x", "message": "m", "details": [{"loc": "body", "msg": "m"}]}},
        {"error": {"code": "x", "message": "m", "details": [{"msg": "m"}]}},
        {"error": {"code": "x", "message": "m", "extra": 1}},
        {"error": {"code": "x", "message": "m"}, "detail": "extra"},
        {"error": "x"},
    ],
)
def test_damaged_error_bodies_fail_the_schema(body: dict[str, Any]) -> None:
    assert validate(body, ERROR_SCHEMA, SPEC) != []


# --- real answers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_body() -> bytes:
    return b"x" * 2048


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data", rescore_top_k=0, api_key="k" * 32, max_upload_bytes=1024
    )
    async with served(inprocess.create_api(settings)) as client:
        yield client


#: ``(method, route template, target, request keywords, status, error code)``: real error
#: answers of the real app, each from another path through the code.
ANSWERS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("GET", "/health", "/health", {"headers": {"Host": "evil.example"}}, 400, "bad_request"),
    (
        "POST",
        "/api/search/by-text",
        "/api/search/by-text",
        {"json": {"text": "cat"}, "headers": {"Origin": "https://evil.example"}},
        403,
        "forbidden",
    ),
    ("POST", "/api/search/by-text", "/api/search/by-text", {"json": {}}, 422, "validation_error"),
    (
        "POST",
        "/api/search/by-text",
        "/api/search/by-text",
        {"content": b'{"text": "\xff"}', "headers": {"Content-Type": "application/json"}},
        400,
        "http_400",
    ),
    (
        "POST",
        "/api/search/by-image",
        "/api/search/by-image",
        {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "http_400",
    ),
    (
        "POST",
        "/api/search/by-text",
        "/api/search/by-text",
        {"json": {"text": "cat", "collection": "../etc"}},
        400,
        "invalid_collection",
    ),
    (
        "POST",
        "/api/search/by-image",
        "/api/search/by-image",
        {"files": {"file": ("a.png", b"not an image", "image/png")}},
        415,
        "unsupported_image",
    ),
    (
        "POST",
        "/api/search/by-url",
        "/api/search/by-url",
        {"json": {"url": "http://127.0.0.1/a.png"}},
        400,
        "url_refused",
    ),
    ("POST", "/api/index/url", "/api/index/url", {"json": {"url": "x"}}, 401, "unauthorized"),
    (
        "GET",
        "/api/image/{image_id}",
        "/api/image/not-a-uuid",
        {},
        404,
        "not_found",
    ),
    ("GET", "/images/{filename}", "/images/a%0Ab.jpg", {}, 404, "http_404"),
    (
        "GET",
        "/api/index/dead-letters",
        "/api/index/dead-letters?count=many",
        {"headers": {"X-API-Key": "k" * 32}},
        422,
        "validation_error",
    ),
]


@pytest.mark.parametrize(
    ("method", "template", "target", "kwargs", "status", "code"),
    ANSWERS,
    ids=[f"{a[4]}-{a[5]}-{a[2]}" for a in ANSWERS],
)
async def test_real_error_answers_validate_against_the_document(
    api: httpx.AsyncClient,
    method: str,
    template: str,
    target: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    r = await api.request(method, target, **kwargs)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert check_response(SPEC, method, template, r) == []


async def test_an_oversized_body_answer_validates(api: httpx.AsyncClient, big_body: bytes) -> None:
    r = await api.post(
        "/api/search/by-text", content=big_body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert check_response(SPEC, "POST", "/api/search/by-text", r) == []


async def test_a_validation_answer_carries_details_the_schema_checks(
    api: httpx.AsyncClient,
) -> None:
    r = await api.post("/api/search/by-text", json={"text": "cat", "limit": 0})
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["details"], body
    assert check_response(SPEC, "POST", "/api/search/by-text", r) == []
    body["error"]["details"][0]["loc"] = "body.limit"
    assert validate(body, ERROR_SCHEMA, SPEC) != []
