"""What a browser loads besides the API's JSON: thumbnails of indexed images, the page's own
files (``/assets/{name}``, ``/favicon.ico``) and the API's documentation (``/docs``,
``/redoc``), all served by this server: nothing comes from the network at run time.

The page's files and the documentation's scripts are read once, when the app is made
(:class:`Assets`), from fixed folders of installed packages: a request picks one of the
names read then, and no path is ever built from it. They are sent with an ETag and
``Cache-Control: no-cache`` (a browser asks again each time and gets a 304 while the file is
unchanged: a new release's page is never mixed with an old script). Thumbnails are made
once and never change (``imgsearch_api.thumbnails``): ``private, max-age=86400``.

Every answer here carries ``X-Content-Type-Options: nosniff``: a browser takes the type it
is given, so a file is never run as a script or a page it was not sent as.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from imgsearch_common.errors import NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION

from ..state import AppState, get_state
from ..thumbnails import MAX_BYTES, Thumbnails, ThumbnailSize, etag
from . import openapi
from .pages import NOSNIFF, indexed_file

router = APIRouter()
State = Annotated[AppState, Depends(get_state)]

#: Thumbnails never change under their URL (content-derived ids, versioned format).
THUMBNAIL_CACHE_CONTROL = "private, max-age=86400"
#: The page's files and the docs' scripts: revalidated each time (ETag, then 304).
ASSET_CACHE_CONTROL = "no-cache"
#: The kinds of file ``/assets/`` serves, by extension, and their content types; a file of
#: any other kind in ``static/`` is not served.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".webp": "image/webp",
}
#: Served at ``/``, not under ``/assets/`` (``routes/pages.py``).
PAGE = "index.html"
#: Swagger UI's and ReDoc's files, from the ``fastapi-offline`` package.
DOCS_PACKAGE = "fastapi_offline"
DOCS_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    #: Strong: from the bytes.
    etag: str


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :].lower()
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Asset(body, CONTENT_TYPES[suffix], f'"{digest}"')


def _served_kind(entry: Traversable) -> bool:
    name = entry.name
    kind = name[name.rfind(".") :].lower() if "." in name else ""
    return entry.is_file() and not name.startswith(".") and kind in CONTENT_TYPES


@dataclass(frozen=True)
class Assets:
    """The files this server sends to browsers from installed packages, read once."""

    #: ``/assets/{name}``: the files of ``imgsearch_api/static/`` (one level), but the page.
    page: dict[str, Asset]
    #: ``/docs/assets/{name}``: Swagger UI's and ReDoc's scripts and style sheet.
    docs: dict[str, Asset]

    @classmethod
    def load(cls) -> Assets:
        static = resources.files("imgsearch_api").joinpath("static")
        page = {
            entry.name: _asset(entry.name, entry.read_bytes())
            for entry in static.iterdir()
            if _served_kind(entry) and entry.name != PAGE
        }
        return cls(page, _docs_assets())


@functools.cache
def _docs_assets() -> dict[str, Asset]:
    """Read once per process (2.8 MB; the tests make hundreds of apps)."""
    folder = resources.files(DOCS_PACKAGE).joinpath("static")
    return {name: _asset(name, folder.joinpath(name).read_bytes()) for name in DOCS_FILES}


def get_assets(request: Request) -> Assets:
    assets: Assets = request.app.state.assets
    return assets


def get_thumbnails(request: Request) -> Thumbnails:
    thumbnails: Thumbnails = request.app.state.thumbnails
    return thumbnails


AssetsDep = Annotated[Assets, Depends(get_assets)]
ThumbnailsDep = Annotated[Thumbnails, Depends(get_thumbnails)]
IfNoneMatch = Annotated[
    str | None,
    Header(description="an ETag of an earlier answer: 304 (no body) while it is current"),
]


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """Whether ``If-None-Match`` names ``tag`` (RFC 9110 13.1.2: weak comparison, ``*``
    matches any current one)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = tag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == wanted for t in if_none_match.split(","))


def _conditional(
    body: bytes, media_type: str, tag: str, cache_control: str, if_none_match: str | None
) -> Response:
    headers = {"ETag": tag, "Cache-Control": cache_control, **NOSNIFF}
    if etag_matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _send_asset(table: dict[str, Asset], name: str, if_none_match: str | None) -> Response:
    asset = table.get(name)
    if asset is None:
        raise NotFound("no such file")
    return _conditional(
        asset.body, asset.media_type, asset.etag, ASSET_CACHE_CONTROL, if_none_match
    )


# --- thumbnails ------------------------------------------------------------------------------

_CACHING_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "strong: the image, the size and the thumbnails' format",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": f"`{THUMBNAIL_CACHE_CONTROL}`",
        "required": True,
        "schema": {"type": "string"},
    },
}
THUMBNAIL: openapi.Responses = {
    200: {
        "content": {"image/webp": {}},
        "description": f"the thumbnail: WebP, at most {MAX_BYTES} bytes",
        "headers": _CACHING_HEADERS,
    },
    304: {"description": "`If-None-Match` names the thumbnail's ETag: no body"},
    **openapi.declare(
        openapi.HOST,
        openapi.COLLECTION,
        openapi.COLLECTION_MISSING,
        openapi.VALIDATION,
        openapi.Answer(
            404,
            "`not_found`: no such image, its file is not served, it changed since it was "
            "indexed, or it cannot be decoded within the server's bounds",
        ),
        openapi.Answer(
            503,
            "`upstream_unavailable`: too many thumbnails are being made",
            ("Retry-After",),
        ),
        openapi.CPU_POOL_FULL,
    ),
}
SizeQuery = Annotated[
    ThumbnailSize, Query(description="the thumbnail's long side, px (never enlarged)")
]


@router.get(
    "/api/image/{image_id}/thumbnail", tags=["search"], response_class=Response, responses=THUMBNAIL
)
async def thumbnail(
    state: State,
    thumbnails: ThumbnailsDep,
    image_id: str,
    size: SizeQuery = ThumbnailSize.small,
    collection: str = DEFAULT_COLLECTION,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """A small WebP of an indexed image, made once and cached; served under the same rule
    as ``/api/image/{image_id}`` (404 when its file is not)."""
    try:
        canonical = str(uuid.UUID(image_id))  # the cache's file names are made of it
    except ValueError:
        canonical = ""  # answered as any id no image has, after the collection's check
    source = await indexed_file(state, canonical, collection)
    tag = etag(canonical, size)
    if etag_matches(if_none_match, tag):
        source.file.close()
        return _conditional(b"", "image/webp", tag, THUMBNAIL_CACHE_CONTROL, if_none_match)
    body = await thumbnails.get(canonical, size, source, state.pool)
    return _conditional(body, "image/webp", tag, THUMBNAIL_CACHE_CONTROL, None)


# --- the page's files ------------------------------------------------------------------------


@router.get("/assets/{name}", include_in_schema=False)
async def asset(assets: AssetsDep, name: str, if_none_match: IfNoneMatch = None) -> Response:
    return _send_asset(assets.page, name, if_none_match)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon(assets: AssetsDep, if_none_match: IfNoneMatch = None) -> Response:
    return _send_asset(assets.page, "favicon.ico", if_none_match)


# --- the documentation -----------------------------------------------------------------------


@router.get("/docs/assets/{name}", include_in_schema=False)
async def docs_asset(assets: AssetsDep, name: str, if_none_match: IfNoneMatch = None) -> Response:
    return _send_asset(assets.docs, name, if_none_match)


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title}: API",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
        # Swagger UI would otherwise send the document to validator.swagger.io.
        swagger_ui_parameters={**(request.app.swagger_ui_parameters or {}), "validatorUrl": None},
    )
    page.headers.update(NOSNIFF)
    return page


@router.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title}: API",
        redoc_js_url=f"{root}/docs/assets/redoc.standalone.js",
        redoc_favicon_url=f"{root}/favicon.ico",
        with_google_fonts=False,
    )
    page.headers.update(NOSNIFF)
    return page
