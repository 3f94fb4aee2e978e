"""The internal ``POST /internal/v1/attach`` (a worker's file whose content is indexed
already), through the real app on the test's loop with its own Edge shard: what it writes,
and a clear 4xx for what is not a valid request, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.handoff import AUTH, forge, image_point
from tests.support.inprocess import API_INTERNAL_URL, InProcessStack, served

ATTACH_URL = f"{API_INTERNAL_URL}/internal/v1/attach"
IMAGE = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(data_dir=tmp_path / "data", index_roots=[tmp_path])
    async with served(inprocess.create_api(settings)) as client:
        yield client


def record(path: str) -> dict[str, Any]:
    return {"stored_path": path, "original_path": path, "name": "b.jpg", "size": 1, "mtime_ns": 5}


async def test_a_file_is_attached_to_an_indexed_image_only(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = {"collection": "att", "image_id": IMAGE, "file": record(str(tmp_path / "b.jpg"))}
    r = await api.post(ATTACH_URL, json=body, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"attached": False})  # nothing indexed yet
    assert (await forge(api, "att", [image_point(IMAGE, tmp_path / "a.jpg", "att")])).is_success
    r = await api.post(ATTACH_URL, json=body, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"attached": True})
    r = await api.post(
        "/api/search/by-text", json={"text": "anything", "collection": "att", "limit": 1}
    )
    [top] = r.json()["results"]
    assert top["metadata"]["paths"] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]


@pytest.mark.parametrize(
    "change",
    [
        {"image_id": "not-an-id"},
        {"image_id": "../../etc"},
        {"image_id": ""},
        {"image_id": IMAGE + "0"},
        {"file": {"stored_path": "", "original_path": "x", "name": "x", "size": 1}},
        {"file": {"stored_path": "/x", "original_path": "x", "name": "x", "size": -1}},
        {"file": None},
    ],
)
async def test_what_is_not_an_attach_request_is_422(
    api: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    body = {"collection": "att", "image_id": IMAGE, "file": record("/p/b.jpg"), **change}
    r = await api.post(ATTACH_URL, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"


async def test_a_bad_collection_is_400_and_no_token_401(api: httpx.AsyncClient) -> None:
    body = {"collection": "../x", "image_id": IMAGE, "file": record("/p/b.jpg")}
    r = await api.post(ATTACH_URL, json=body, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_collection")
    r = await api.post(ATTACH_URL, json={**body, "collection": "att"})
    assert r.status_code == 401
