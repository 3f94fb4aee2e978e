"""Credential checks shared by the services (constant-time comparisons)."""

from __future__ import annotations

import hmac

import httpx

from .errors import Unauthorized


def bearer_or_key(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The credential a request carries: ``X-API-Key`` or ``Authorization: Bearer``."""
    if api_key_header:
        return api_key_header
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def check_secret(presented: str | None, expected: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``presented`` equals ``expected``.

    ``expected`` None means the endpoint has no credential configured, and
    callers decide what that means *before* calling: internal endpoints refuse
    everything (pass ``expected=None`` and it always fails), public write
    endpoints skip the check.
    """
    if not expected or not presented:
        raise Unauthorized()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized()


def internal_client(
    base_url: str,
    token: str | None,
    *,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for another service's internal API, carrying the internal token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        transport=transport,
    )
