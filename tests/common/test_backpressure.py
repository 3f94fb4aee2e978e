"""Retry-After as every client of ours reads it: exact numbers."""

from __future__ import annotations

import httpx
import pytest

from imgsearch_common.backpressure import MAX_RETRY_AFTER_S, MIN_RETRY_AFTER_S, retry_after_s


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("0", MIN_RETRY_AFTER_S),  # never a busy loop against an overloaded server
        ("-3", MIN_RETRY_AFTER_S),
        ("3600", MAX_RETRY_AFTER_S),
        ("inf", MAX_RETRY_AFTER_S),
    ],
)
def test_seconds_are_clamped(value: str, expected: float) -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": value})) == expected


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"Retry-After": "nan"}])
def test_absent_or_unreadable_gives_the_default(headers: dict[str, str]) -> None:
    assert retry_after_s(httpx.Headers(headers)) is None
    assert retry_after_s(httpx.Headers(headers), 1.0) == 1.0


def test_the_header_name_is_case_insensitive() -> None:
    assert retry_after_s(httpx.Headers({"retry-after": "4"})) == 4.0
