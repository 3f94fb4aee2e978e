"""The page in a real browser: Playwright's sync API driving Debian's ``chromium`` (no
browser download: ``make test``'s preflight installs the package) against the session's
running ``stack`` on random weights.

- ``corpus``: eight real photos (and one planted near-copy) indexed once into the
  collection ``browser``, through the API (the page's own indexing is a test of its own).
- ``open_page``: a fresh browser context per page (no cache or storage carried between
  tests) that records every response (url, status, body size), refuses and reports any
  request to a host other than this machine, and reports the page's uncaught errors: each
  fails the test.
- ``shot``: a full-page screenshot of a tested state, under ``$BROWSER_SHOTS_DIR``
  (default ``data/browser-shots/``, ignored by git).

Playwright's sync API keeps its own event loop marked as running in this thread between
its calls (``playwright/_impl/_greenlets.py``, ``wait_for_future``), so the async tests
that follow in the session would find a running loop: the driver lives for this package
only (``scope="package"``) and is stopped after its last test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Response,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from imgsearch_common.ids import content_hash, image_id
from imgsearch_devstack import LocalStack, wait_batch
from imgsearch_devstack.preflight import chromium_path

CHROMIUM = chromium_path()
SHOTS_DIR = Path(
    os.environ.get("BROWSER_SHOTS_DIR")
    or Path(__file__).resolve().parents[2] / "data" / "browser-shots"
)
#: Searches run on a CPU encoder (seconds each on 2 cores), indexing longer still.
SEARCH_TIMEOUT_MS = 90_000
INDEX_TIMEOUT_MS = 240_000
COLLECTION = "browser"
#: Hosts the page may reach: its own server only (no CDN, no font service, nothing).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: The photos of the corpus (each encoded once per session: about 5 s apiece on 2 busy
#: cores). ``coffee-copy`` is the planted near-copy (``coffee`` upscaled and re-compressed:
#: an original well over 100 KB, like hubble and retina, so a thumbnail that was the
#: original would show); ``immunohistochemistry`` is the one the deletion test removes; the
#: rest stand between each query and its answer.
CORPUS = (
    "astronaut", "chelsea", "coffee", "china", "flower", "retina", "hubble_deep_field",
    "immunohistochemistry",
)  # fmt: skip
NEAR_COPY = "coffee-copy"
TO_DELETE = "immunohistochemistry"

#: Every picture the page shows has loaded (or failed: a placeholder then).
IMAGES_LOADED = "() => [...document.images].filter(i => i.checkVisibility()).every(i => i.complete)"

expect.set_options(timeout=SEARCH_TIMEOUT_MS)


@dataclass
class Corpus:
    collection: str
    folder: Path
    #: name (file stem) -> path of the indexed file
    paths: dict[str, Path]
    batch_id: str

    def id_of(self, name: str) -> str:
        return image_id(content_hash(self.paths[name].read_bytes()))

    def size_of(self, name: str) -> tuple[int, int]:
        with Image.open(self.paths[name]) as img:
            return img.size


def _write_corpus(folder: Path) -> dict[str, Path]:
    from imgsearch_devstack.photos import load_photos

    photos = load_photos()
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in CORPUS:
        paths[name] = folder / f"{name}.jpg"
        photos[name].convert("RGB").save(paths[name], quality=92)
    coffee = photos["coffee"].convert("RGB")
    copy = coffee.resize((coffee.width * 3, coffee.height * 3), Image.Resampling.LANCZOS)
    paths[NEAR_COPY] = folder / f"{NEAR_COPY}.jpg"
    copy.save(paths[NEAR_COPY], quality=85)
    return paths


@pytest.fixture(scope="session")
def corpus(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The corpus indexed into ``browser`` (a folder under the session's base temporary
    folder, which the stack's ``INDEX_ROOTS`` allows)."""
    folder = tmp_path_factory.mktemp("browser-corpus")
    paths = _write_corpus(folder)
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": COLLECTION})
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        status = wait_batch(client, batch_id, timeout=INDEX_TIMEOUT_MS / 1000)
    assert (status.done, status.failed) == (len(paths), 0), status
    return Corpus(COLLECTION, folder, paths, batch_id)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: `make test` as root installs Debian's chromium (preflight)")
    with sync_playwright() as p:
        yield p
    # The sync API left the loop it ran marked as running until it stopped: the async tests
    # after this package need none.
    assert asyncio._get_running_loop() is None


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # launch() gives the browser a fresh profile in a temporary folder of its own.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--headless",
            "--no-sandbox",  # root in CI, and containers without user namespaces
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers' /dev/shm is often 64 MB: use /tmp
            "--disable-quic",
            "--no-first-run",
            # Nothing but the page's own requests: no updaters, no sync, no field trials.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    yield browser
    browser.close()


@dataclass
class PageLog:
    """What one browser context did: every response, refused requests, uncaught errors."""

    responses: list[Response] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def matching(self, path_part: str) -> list[Response]:
        return [r for r in self.responses if path_part in urlsplit(r.url).path]

    def body_sizes(self, path_part: str) -> dict[str, int]:
        """url -> bytes of the body, for the responses whose path contains ``path_part``."""
        return {r.url: len(r.body()) for r in self.matching(path_part) if r.status == 200}


@dataclass
class OpenedPage:
    page: Page
    log: PageLog


def _guard(log: PageLog) -> Callable[[Route, Request], None]:
    """A route handler that lets through what goes to this machine and refuses the rest."""

    def handle(route: Route, request: Request) -> None:
        host = urlsplit(request.url).hostname or ""
        if host in LOCAL_HOSTS:
            route.continue_()
        else:
            log.refused.append(request.url)
            route.abort("blockedbyclient")

    return handle


@pytest.fixture
def open_page(browser: Browser, stack: LocalStack) -> Iterator[Callable[..., OpenedPage]]:
    """``open_page(path="/", **context_options)``: a new context and page at ``path`` of the
    API (``viewport=`` for a phone...). At the test's end each context is closed, and any
    request to another host or any uncaught error on the page fails the test."""
    opened: list[tuple[BrowserContext, PageLog]] = []

    def open_(path: str = "/", **options: Any) -> OpenedPage:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(base_url=stack.api_url, **options)
        log = PageLog()
        opened.append((context, log))
        context.route("**/*", _guard(log))
        page = context.new_page()
        page.on("response", lambda response: log.responses.append(response))
        page.on("pageerror", lambda exc: log.errors.append(str(exc)))
        page.goto(path)
        return OpenedPage(page, log)

    yield open_
    problems: list[str] = []
    for context, log in opened:
        context.close()
        problems += [f"request to another host: {url}" for url in log.refused]
        problems += [f"uncaught error on the page: {e}" for e in log.errors]
    assert not problems, "\n".join(problems)


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``shot(page, "state")``: the whole page as ``SHOTS_DIR/<state>.png``."""

    def take(page: Page, state: str) -> Path:
        SHOTS_DIR.mkdir(parents=True, exist_ok=True)
        # The pictures shown, loaded (best effort: the state is what the test asserted).
        with contextlib.suppress(PlaywrightTimeoutError):
            page.wait_for_function(IMAGES_LOADED, timeout=10_000)
        path = SHOTS_DIR / f"{state}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
