"""Bad input gets a clear 4xx with the common error shape — never a 500."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.images import png_bomb
from tests.support.inprocess import API_INTERNAL_URL, TOKEN, InProcessStack


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client(timeout=60) as c:
        yield c


def _search(client: httpx.Client, data: bytes, name: str = "q.jpg", **form: str) -> httpx.Response:
    return client.post("/api/search/by-image", files={"file": (name, data)}, data=form)


def _error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def test_empty_upload(client: httpx.Client) -> None:
    _error(_search(client, b""), 400, "empty_input")


def test_not_an_image(client: httpx.Client) -> None:
    _error(_search(client, b"%PDF-1.4 definitely not a picture" * 10), 415, "unsupported_image")


def test_truncated_jpeg(client: httpx.Client, photos_dir: Path) -> None:
    data = (photos_dir / "astronaut.jpg").read_bytes()
    _error(_search(client, data[: len(data) // 3]), 422, "corrupt_image")


def test_format_outside_allow_list(client: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format="TGA")  # Pillow reads TGA; we don't
    _error(_search(client, buf.getvalue(), "q.tga"), 415, "unsupported_image")


def test_decompression_bomb(client: httpx.Client) -> None:
    _error(_search(client, png_bomb(30_000, 30_000), "bomb.png"), 413, "image_too_large")


def test_body_over_the_size_limit(client: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\x00" * (26 * 1024 * 1024)
    _error(_search(client, big), 413, "payload_too_large")


@pytest.mark.parametrize("limit", ["0", "101", "-3", "ten"])
def test_limit_out_of_range(client: httpx.Client, limit: str) -> None:
    _error(_search(client, _jpeg(), limit=limit), 422, "validation_error")


def test_limit_out_of_range_json(client: httpx.Client) -> None:
    r = client.post("/api/search/by-text", json={"text": "x", "limit": 1000})
    _error(r, 422, "validation_error")


def test_bad_collection_name(client: httpx.Client) -> None:
    _error(_search(client, _jpeg(), collection="../etc"), 400, "invalid_collection")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/status",
        "http://localhost/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.jpg",
        "http://10.0.0.8/x.jpg",
        "file:///etc/passwd",
        "ftp://example.com/x.jpg",
    ],
)
def test_by_url_refuses_private_and_odd_urls(client: httpx.Client, url: str) -> None:
    _error(client.post("/api/search/by-url", json={"url": url}), 400, "url_refused")


def test_index_url_refuses_loopback(client: httpx.Client) -> None:
    r = client.post("/api/index/url", json={"url": "http://127.0.0.1:1/x.png"})
    _error(r, 400, "url_refused")


def test_empty_text(client: httpx.Client) -> None:
    _error(client.post("/api/search/by-text", json={"text": "   "}), 400, "empty_input")
    _error(client.post("/api/search/by-text", json={"text": ""}), 422, "validation_error")


def test_malformed_json(client: httpx.Client) -> None:
    r = client.post(
        "/api/search/by-url", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(r, 422)


def test_image_serving_stays_inside_roots(client: httpx.Client) -> None:
    _error(client.get("/api/image/not-a-uuid"), 404)
    _error(client.get("/api/image/00000000-0000-0000-0000-000000000000"), 404)
    _error(client.get("/api/image/..%2F..%2Fetc%2Fpasswd"), 404)


def test_index_folder_errors(client: httpx.Client, tmp_path: Path) -> None:
    _error(client.post("/api/index/folder", json={"path": "relative/dir"}), 400)
    _error(client.post("/api/index/folder", json={"path": str(tmp_path / "missing")}), 404)
    (tmp_path / "readme.txt").write_text("no images here")
    _error(client.post("/api/index/folder", json={"path": str(tmp_path)}), 400)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"path": "/"}, 403, "forbidden"),
        ({"path": "~"}, 403, "forbidden"),
        ({"path": "~nosuchuser/photos"}, 400, "bad_request"),
        ({"path": "/tmp/\0"}, 400, "bad_request"),
        ({"path": "/", "extensions": [".pem", ".env"]}, 422, "validation_error"),
        ({"path": "/tmp", "extensions": [".key"]}, 422, "validation_error"),
    ],
)
def test_index_folder_hostile_paths_and_extensions(
    client: httpx.Client, body: dict[str, object], status: int, code: str
) -> None:
    _error(client.post("/api/index/folder", json=body), status, code)


def test_upload_of_non_image_is_refused_before_queueing(client: httpx.Client) -> None:
    before = client.get("/api/status").json()["queue"]["pending"]
    r = client.post("/api/index/upload", files=[("files", ("a.jpg", b"nope"))])
    _error(r, 415, "unsupported_image")
    assert "a.jpg" in r.json()["error"]["message"]
    assert client.get("/api/status").json()["queue"]["pending"] == before


def test_internal_endpoint_needs_the_token(client: httpx.Client) -> None:
    body = {"collection": "default", "full": [], "windows": []}
    url = f"{API_INTERNAL_URL}/internal/v1/upsert"
    _error(client.post(url, json=body), 401, "unauthorized")
    r = client.post(url, json=body, headers={"Authorization": "Bearer wrong-token"})
    _error(r, 401, "unauthorized")


def test_internal_endpoint_is_not_on_the_public_listener(client: httpx.Client) -> None:
    body = {"collection": "default", "full": [], "windows": []}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    _error(client.post("/internal/v1/upsert", json=body, headers=auth), 404)


def test_encoder_needs_the_token(inprocess: InProcessStack) -> None:
    with inprocess.encoder_client() as encoder:
        r = encoder.post("/v1/embed/texts", json={"texts": ["a"]})
    _error(r, 401)
