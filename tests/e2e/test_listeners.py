"""The search API as a process: the public port has no ``/internal`` paths, the internal port
(``INTERNAL_PORT``, where the workers hand their vectors) has nothing else; both refuse a
``Host`` they do not answer to, and the public one a cross-site write."""

from __future__ import annotations

import httpx
import pytest

from imgsearch_devstack import LocalStack

pytestmark = [pytest.mark.e2e]

BODY = {"collection": "e2e-listeners", "full": [], "windows": []}


def test_the_public_port_refuses_internal_paths(stack: LocalStack) -> None:
    auth = {"Authorization": f"Bearer {stack.config.internal_token}"}
    with httpx.Client(base_url=stack.api_url, timeout=30) as public:
        unknown = public.post("/no/such/path", json=BODY, headers=auth)
        for path in ("/internal/v1/upsert", "/%69nternal/v1/upsert"):
            r = public.post(path, json=BODY, headers=auth)
            # Answered as a path that does not exist.
            assert (r.status_code, r.json()) == (404, unknown.json()), r.text
        assert public.get("/api/status").status_code == 200


def test_the_internal_port_serves_the_hand_off_and_health_only(stack: LocalStack) -> None:
    assert stack.api_internal_url != stack.api_url
    auth = {"Authorization": f"Bearer {stack.config.internal_token}"}
    with httpx.Client(base_url=stack.api_internal_url, timeout=30) as internal:
        assert internal.post("/internal/v1/upsert", json=BODY).status_code == 401
        r = internal.post("/internal/v1/upsert", json=BODY, headers=auth)
        assert r.status_code == 200 and r.json() == {"full": 0, "windows": 0}, r.text
        assert internal.get("/health").status_code == 200
        for path in ("/", "/api/status", "/docs"):
            assert internal.get(path).status_code == 404, path


def test_hosts_and_origins_the_server_does_not_answer_to(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=30) as public:
        r = public.get("/api/status", headers={"Host": "rebound.example"})
        assert r.status_code == 400 and "ALLOWED_HOSTS" in r.text, r.text
        r = public.post(
            "/api/search/by-text",
            json={"text": "x"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403, r.text
        # The page's own fetches carry its origin.
        port = stack.config.api_port
        ok = public.post(
            "/api/search/by-text",
            json={"text": "x"},
            headers={"Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin"},
        )
        assert ok.status_code == 200, ok.text
    with httpx.Client(base_url=stack.api_internal_url, timeout=30) as internal:
        assert internal.get("/health", headers={"Host": "rebound.example"}).status_code == 400
