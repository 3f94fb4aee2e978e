"""Schemathesis against the search API's own OpenAPI document (``app.openapi()``), every
operation: no answer may be a server error, and every answer must match what the
document says of it: its status is one the operation declares (the error statuses too:
``routes/openapi.py``), its content type, its declared headers (``Retry-After`` on 429 and
503, ``WWW-Authenticate`` on 401) and its body's schema (errors: ``ErrorResponse``, our
one error shape, which the document's 422 is too).

The app is the real search API with its own Edge shard and its own Redis database (no
worker reads it: queued jobs stay queued and are flushed afterwards), the in-process
stack's encoder, and a fake web at the URL fetcher's boundary (every name resolves to one
public address, every fetch answers a small PNG): nothing reaches the network.
Schemathesis drives it in process through its ASGI transport (the app's lifespan runs on
schemathesis' own event loop).

``FUZZ_EXAMPLES`` examples per operation (20 in ``make test``; ``make fuzz`` runs 500),
derandomised: the same cases every run, so a failure reproduces by running it again.
"""

from __future__ import annotations

import io
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from PIL import Image
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imgsearch_api.app import create_app
from imgsearch_api.settings import ApiSettings
from tests.support.inprocess import InProcessStack
from tests.support.ssrf import PUBLIC_IP

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
#: The Redis database of the fuzzed app (flushed before and after).
REDIS_DB = "11"
#: The ``Host`` schemathesis' ASGI client sends.
HOST = asgi.HOST
#: What every answer is checked for.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (120, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


class _Web(httpx.AsyncBaseTransport):
    """The public web as the fuzzer's URLs find it: every fetch answers a small PNG."""

    PHOTO = _png()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "image/png"}, content=self.PHOTO)


async def _public_dns(host: str, port: int) -> list[str]:
    """Every name resolves to one public address (the fake web answers there)."""
    return [PUBLIC_IP]


def _document() -> dict[str, Any]:
    """The app's OpenAPI document (building an app touches neither disk nor network)."""
    return create_app(ApiSettings(data_dir=Path("/nonexistent/fuzz-document"))).openapi()


schema = schemathesis.openapi.from_dict(_document())
#: Answers of the fuzzed app by operation and status (the record ``make fuzz`` prints).
ANSWERS: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
#: The error codes of those answers, by operation and status.
CODES: defaultdict[tuple[str, str, int], Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module")
def fuzzed_app(
    inprocess: InProcessStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    redis_url = inprocess.redis_url[:-1] + REDIS_DB
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    settings_ = inprocess.api_settings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        redis_url=redis_url,
        allowed_hosts=[HOST],
        rescore_top_k=0,
    )
    app = inprocess.create_api(settings_, url_transport=_Web(), url_resolver=_public_dns)
    # The document fuzzed is this app's own.
    assert app.openapi() == schema.raw_schema
    try:
        yield app
    finally:
        # Schemathesis started the app's lifespan on its own loop: stop it (its shard, its
        # clients) there now, rather than at the interpreter's exit.
        asgi.shutdown_lifespans()
        redis.flushdb()
        redis.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_error_and_answers_as_documented(case: Any, fuzzed_app: Any) -> None:
    response = case.call(app=fuzzed_app)
    operation = (case.operation.method.upper(), case.operation.path)
    ANSWERS[operation][response.status_code] += 1
    if response.status_code >= 400:
        CODES[(*operation, response.status_code)][_error_code(response)] += 1
    case.validate_response(response, checks=CHECKS)


def _error_code(response: Any) -> str:
    """The ``error.code`` of an error answer, or what its body is instead."""
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return f"not our shape ({response.headers.get('content-type')})"


def _codes(codes: Counter[str]) -> str:
    return f" ({', '.join(f'{code} {n}' for code, n in codes.most_common())})" if codes else ""


def _operations() -> set[tuple[str, str]]:
    return {(op.method.upper(), op.path) for r in schema.get_all_operations() for op in [r.ok()]}


def test_every_operation_was_fuzzed() -> None:
    """Every operation of the document was called (the document lists the routes that
    matter: an empty one would pass), and the answers by status, for the record."""
    operations = _operations()
    assert {
        ("POST", "/api/search/by-image"),
        ("POST", "/api/search/by-text"),
        ("POST", "/api/search/by-url"),
        ("POST", "/api/index/folder"),
        ("POST", "/api/index/upload"),
        ("POST", "/api/index/url"),
        ("GET", "/api/status"),
    } <= operations
    if not ANSWERS:
        pytest.skip("the fuzz test did not run in this session (selected alone)")
    assert operations - set(ANSWERS) == set()
    total = sum(sum(by_status.values()) for by_status in ANSWERS.values())
    print(f"\n{total} requests, {EXAMPLES} examples per operation; answers by status:")
    for (method, path), by_status in sorted(ANSWERS.items()):
        statuses = ", ".join(
            f"{n} x {status}{_codes(CODES[(method, path, status)])}"
            for status, n in sorted(by_status.items())
        )
        print(f"  {method} {path}: {statuses}")
