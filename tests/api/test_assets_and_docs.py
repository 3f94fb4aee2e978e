"""The page's own files (``/assets/{name}``, ``/favicon.ico``) and the API's documentation
(``/docs``, ``/redoc``), all from this server (issue 12, items 5 and 6): the machines here
are offline, and so may a user's be.

The real app on the test's loop (``httpx.ASGITransport``); the package's own files are what
is compared against (``importlib.resources``), and a wheel is really built to see that they
ship.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from PIL import Image

from tests.support.inprocess import API_INTERNAL_URL, InProcessStack, served

STATIC = resources.files("imgsearch_api").joinpath("static")
#: Content types by extension, as the contract names them.
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
}
#: A URL that leaves this server (``https://``, ``//host``, ``data:`` is fine).
EXTERNAL = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
SEARCH_API = Path(__file__).resolve().parents[2] / "services" / "search-api"


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(data_dir=tmp_path / "data", rescore_top_k=0)
    async with served(inprocess.create_api(settings)) as client:
        yield client


def _served_files() -> list[str]:
    return sorted(
        entry.name
        for entry in STATIC.iterdir()
        if entry.is_file() and Path(entry.name).suffix in TYPES
    )


def _cached_the_contract_way(r: httpx.Response, media_type: str) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r'"[0-9a-f]{32}"', r.headers["etag"]), r.headers["etag"]


# --- /assets ------------------------------------------------------------------------------------


async def test_every_file_of_the_page_is_served_with_its_type(api: httpx.AsyncClient) -> None:
    names = _served_files()
    assert {"favicon.svg", "favicon.ico"} <= set(names)
    for name in names:
        r = await api.get(f"/assets/{name}")
        _cached_the_contract_way(r, TYPES[Path(name).suffix])
        assert r.content == STATIC.joinpath(name).read_bytes(), name


async def test_an_unchanged_file_is_a_304(api: httpx.AsyncClient) -> None:
    first = await api.get("/assets/favicon.svg")
    tag = first.headers["etag"]
    for sent in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
        r = await api.get("/assets/favicon.svg", headers={"If-None-Match": sent})
        assert (r.status_code, r.content) == (304, b""), sent
        assert r.headers["etag"] == tag and r.headers["cache-control"] == "no-cache"
    r = await api.get("/assets/favicon.svg", headers={"If-None-Match": '"0123"'})
    assert (r.status_code, r.content) == (200, first.content)
    # The tag follows the bytes: another file, another tag.
    assert (await api.get("/assets/favicon.ico")).headers["etag"] != tag


@pytest.mark.parametrize(
    "target",
    [
        "/assets/index.html",  # the page is served at / only
        "/assets/nope.js",
        "/assets/",
        "/assets/..%2f__init__.py",
        "/assets/%2e%2e%2fapp.py",
        "/assets/..%2f..%2fimgsearch_api%2fsettings.py",
        "/assets/favicon.svg%00.js",
        "/assets/FAVICON.SVG",
        "/assets/.",
        "/docs/assets/..%2fcore.py",
        "/docs/assets/favicon.png",  # fastapi-offline's own: not one we serve
    ],
)
async def test_anything_else_is_a_404(api: httpx.AsyncClient, target: str) -> None:
    r = await api.get(target)
    assert r.status_code == 404, (target, r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"}


async def test_the_favicon_is_a_real_icon(api: httpx.AsyncClient) -> None:
    r = await api.get("/favicon.ico")
    _cached_the_contract_way(r, "image/x-icon")
    icon = Image.open(io.BytesIO(r.content))
    assert icon.format == "ICO"
    assert {(16, 16), (32, 32)} <= set(icon.info["sizes"])
    icon.load()
    assert icon.getchannel("A").getextrema() == (0, 255)  # a glyph on transparency
    svg = ElementTree.fromstring((await api.get("/assets/favicon.svg")).content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("viewBox") == "0 0 32 32"
    # Only shapes: nothing it could load or run.
    assert not [e.tag for e in svg.iter() if e.tag.split("}")[1] in ("script", "image", "use")]


async def test_the_page_is_not_sniffed_either(api: httpx.AsyncClient) -> None:
    r = await api.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"


# --- /docs --------------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "spec-url")]


def _links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}),
        ("/redoc", {"redoc.standalone.js": "text/javascript"}),
    ],
)
async def test_the_docs_load_nothing_from_elsewhere(
    api: httpx.AsyncClient, page: str, assets: dict[str, str]
) -> None:
    r = await api.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    links = _links(html)
    for name, media_type in assets.items():
        assert f"/docs/assets/{name}" in links
        got = await api.get(f"/docs/assets/{name}")
        _cached_the_contract_way(got, f"{media_type}; charset=utf-8")
        assert len(got.content) > 100_000  # the real bundle, not a stub
    assert "/favicon.ico" in links
    for link in links:
        assert (await api.get(link)).status_code == 200, link
    assert (await api.get("/openapi.json")).status_code == 200


async def test_swagger_ui_does_not_send_the_document_to_a_validator(
    api: httpx.AsyncClient,
) -> None:
    """Swagger UI's default ``validatorUrl`` is validator.swagger.io."""
    html = (await api.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_the_new_paths_are_on_the_public_listener_only(api: httpx.AsyncClient) -> None:
    paths = ["/docs", "/redoc", "/docs/assets/swagger-ui.css", "/assets/favicon.svg"]
    paths += ["/favicon.ico", "/api/image/00000000-0000-0000-0000-000000000000/thumbnail"]
    for path in paths:
        r = await api.get(f"{API_INTERNAL_URL}{path}")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "http_404"), path
        r = await api.get(path, headers={"Host": "rebound.example"})
        assert r.status_code == 400, path


async def test_only_the_thumbnails_are_in_the_api_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "/api/image/{image_id}/thumbnail" in paths
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/assets", "/favicon"))]


# --- packaging ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_built_wheel_ships_every_static_file(tmp_path: Path) -> None:
    """What a Docker image installs (``pip install services/search-api``): a wheel, whose
    package data must hold the page, its scripts and the icons."""
    source = tmp_path / "search-api"
    shutil.copytree(SEARCH_API, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("imgsearch_api-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("imgsearch_api/static/")}
    wanted = {f"imgsearch_api/static/{e.name}" for e in STATIC.iterdir() if e.is_file()}
    assert wanted <= shipped, sorted(wanted - shipped)
    assert "imgsearch_api/static/favicon.ico" in shipped
