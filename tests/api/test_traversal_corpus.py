"""Traversal corpus: every way we know to make the search API serve a file it must not.

Canaries are files of unique content where no request may reach them: outside the roots
(``outside/``), in folders beside the roots whose names begin like theirs
(``allowed-evil/``, ``data/uploads.bak/``: a prefix check without a separator lets them
through), and inside the API's data folder, which is not served (``data/secret/``, beside
the Edge shards). The attacks:

- request targets on every route that serves files or pages — ``/api/image/{id}``,
  ``/images/{name}`` and ``/static/images/{name}`` (the original system's, by name), ``/``,
  ``/docs`` (and the rest of ``/static/``, which does not exist) — sent unnormalised
  (``tests/support/raw_asgi.py``: httpx would remove the ``..`` segments itself);
- collection names with traversal, wherever a name is given;
- payload paths forged through the internal hand-off with the token, links placed inside
  the upload folder and the roots that point out of them among them.

No answer may carry a canary's bytes (or ``/etc/passwd``'s), none may be a 5xx; the
controls (a file under the roots, one in the upload folder, a link that stays inside) are
served, so a 404 here means refused, not broken.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image, PngImagePlugin

from tests.support.handoff import forge, image_point
from tests.support.inprocess import InProcessStack, served
from tests.support.raw_asgi import RawResponse, raw_request

COLLECTION = "traversal"
#: Longest one request may take (none should come near it).
PROMPT_S = 30.0
OK_ID = "7a000000-0000-4000-8000-000000000001"
UPLOAD_ID = "7a000000-0000-4000-8000-000000000002"
INNER_LINK_ID = "7a000000-0000-4000-8000-000000000003"
#: What /etc/passwd starts with on every Linux: a served one would show it.
PASSWD = b"root:x:0:0:"

#: Request targets after a route's prefix. ``{out}``: the outside canary's absolute path
#: without its leading ``/``; ``{out_enc}``: the same, every ``/`` as ``%2f``; ``{ok}``:
#: the id of the control image.
TARGET_FORMS = [
    # plain, encoded and double-encoded ../
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "..%252f..%252f..%252f..%252fetc%252fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    ".%2e/.%2e/.%2e/.%2e/etc/passwd",
    "%2e./%2e./%2e./etc/passwd",
    "....//....//....//etc/passwd",
    "..././..././..././etc/passwd",
    # backslashes
    "..\\..\\..\\..\\etc\\passwd",
    "..%5c..%5c..%5c..%5cetc%5cpasswd",
    "..%255c..%255c..%255cetc%255cpasswd",
    "%5c%5cserver%5cshare%5cx.png",
    "C:%5cWindows%5cwin.ini",
    # absolute paths
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "%2f{out_enc}",
    "/{out}",
    "{out}",
    "file:%2f%2f%2f{out_enc}",
    "%2fproc%2fself%2fenviron",
    "~%2f.ssh%2fid_rsa",
    # NUL bytes
    "%00",
    "..%2f..%2f..%2fetc%2fpasswd%00.png",
    "{ok}%00..%2f..%2fetc%2fpasswd",
    # overlong UTF-8 for . / and \
    "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    "%e0%80%ae%e0%80%ae/%e0%80%ae%e0%80%ae/etc/passwd",
    "..%c0%af..%c0%af..%c0%afetc%c0%afpasswd",
    "..%c1%9c..%c1%9cetc%c1%9cpasswd",
    "%f0%80%80%ae%f0%80%80%ae%2fetc%2fpasswd",
    # unicode dots and slashes (one- and two-dot leaders, fullwidth, small full stop)
    "%e2%80%a4%e2%80%a4%2f%e2%80%a4%e2%80%a4%2fetc%2fpasswd",
    "%e2%80%a5%2f%e2%80%a5%2fetc%2fpasswd",
    "%ef%bc%8e%ef%bc%8e%ef%bc%8f%ef%bc%8e%ef%bc%8e%ef%bc%8fetc%ef%bc%8fpasswd",
    "%ef%b9%92%ef%b9%92%2fetc%2fpasswd",
    "%e2%88%95etc%e2%88%95passwd",
    # path parameters (Tomcat and friends)
    "..;/..;/..;/etc/passwd",
    "..%3b/..%3b/..%3b/etc/passwd",
    "{ok};..%2f..%2fetc%2fpasswd",
    # image ids that are paths, or ids with something after them
    "{ok}/../../../../etc/passwd",
    "{ok}%2f..%2f..%2f..%2fetc%2fpasswd",
    "{ok}.png",
    "{ok}%0a",
    "%7b{ok}%7d",
    "urn:uuid:{ok}",
    # long ones
    "..%2f" * 600 + "etc%2fpasswd",
    "a" * 8000,
    "%2e" * 3000,
]
#: Routes that serve files or pages, and one that does not exist.
PREFIXES = ["/api/image/", "/images/", "/static/images/", "/", "/docs/", "/static/", "/assets/",
            "/docs/assets/"]  # fmt: skip
#: The image routes, which get ``?collection=`` (the controls' collection).
IMAGE_PREFIXES = ("/api/image/", "/images/", "/static/images/")
#: Whole targets: queries of the page routes, segments after a route's full path.
WHOLE_TARGETS = [
    "/?file=..%2f..%2f..%2fetc%2fpasswd",
    "/docs?url=%2f{out_enc}",
    "/docs/../../../../etc/passwd",
    "/docs/..%2f..%2f..%2fetc%2fpasswd",
    "/docs%2f..%2f..%2f..%2fetc%2fpasswd",
    "/openapi.json/..%2f..%2fetc%2fpasswd",
    "/docs/oauth2-redirect/..%2f..%2f{out_enc}",
    "/api/image/{ok}/..%2f..%2f..%2f{out_enc}",
    "/api/image/{ok}?collection=traversal&collection=..%2f..%2fetc",
    "/api/image/{ok}?collection=traversal%2f..%2f..%2fsecret",
    "//{out}",
    "/./{out}",
]

#: Collection names with traversal, URL-encoded (as a query value or a form field).
COLLECTION_FORMS = [
    "..",
    ".",
    "..%2f..%2fetc",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "%2e%2e%2f%2e%2e",
    "..%5c..%5cwindows",
    "%2fetc",
    "%2fetc%2fpasswd",
    "traversal%2f..%2f..%2fsecret",
    "uploads%2f..%2fsecret",
    "traversal%00",
    "%00traversal",
    "traversal%0a",
    "traversal%0d%0a",
    "traversal%09",
    "%20traversal",
    "traversal%20",
    "~",
    "~root",
    "%e2%80%a4%e2%80%a4",
    "%ef%bc%8e%ef%bc%8e",
    "%c0%ae%c0%ae",
    "trav%c0%aersal",
    "_hidden",
    "-rf",
    "a" * 64,
    "a" * 5000,
]


def _canary_png(token: str) -> bytes:
    """A real PNG carrying ``token`` in a text chunk, uncompressed: served, it shows."""
    info = PngImagePlugin.PngInfo()
    info.add_text("canary", token)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (250, 0, 0)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class World:
    """The folders, the canaries and the controls of one test."""

    lib: Path
    tokens: list[bytes] = field(default_factory=list)
    #: Bytes a 200 may carry: the controls' files.
    served_ok: dict[str, bytes] = field(default_factory=dict)

    @property
    def allowed(self) -> Path:
        return self.lib / "allowed"

    @property
    def data(self) -> Path:
        return self.lib / "data"

    @property
    def uploads(self) -> Path:
        return self.data / "uploads"

    @property
    def outside(self) -> Path:
        return self.lib / "outside" / "canary.png"

    @property
    def secret(self) -> Path:
        return self.data / "secret" / "canary.png"

    def canary(self, path: Path) -> Path:
        token = f"CANARY-{secrets.token_hex(16)}"
        self.tokens.append(token.encode())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_canary_png(token))
        return path

    def leaks(self, body: bytes) -> list[str]:
        found = [t.decode() for t in self.tokens if t in body]
        return [*found, "/etc/passwd"] if PASSWD in body else found

    def expand(self, template: str) -> str:
        out = str(self.outside).lstrip("/")
        return (
            template.replace("{out_enc}", quote(out, safe=""))
            .replace("{out}", quote(out, safe="/"))
            .replace("{ok}", OK_ID)
        )


def _build(lib: Path) -> World:
    world = World(lib)
    for path in (
        world.outside,
        world.secret,
        world.data / "canary.txt",
        lib / "allowed-evil" / "canary.png",
        world.uploads.parent / "uploads.bak" / "canary.png",
        lib / "canary.png",
    ):
        world.canary(path)
    world.allowed.mkdir()
    (world.allowed / "sub").mkdir()
    ok = _png((10, 200, 30))
    (world.allowed / "ok.png").write_bytes(ok)
    upload = world.uploads / "ab" / "up.png"
    upload.parent.mkdir(parents=True)
    up = _png((1, 2, 3))
    upload.write_bytes(up)
    os.symlink(world.allowed / "ok.png", world.allowed / "inner-link.png")
    world.served_ok = {OK_ID: ok, UPLOAD_ID: up, INNER_LINK_ID: ok}
    # Links inside the upload folder and the roots that lead out of them.
    ab = world.uploads / "ab"
    os.symlink(world.outside, ab / "abs-link.png")
    os.symlink("../../secret/canary.png", ab / "rel-link.png")
    os.symlink(world.outside.parent, world.uploads / "dirlink")
    os.symlink(world.outside, ab / "l2.png")
    os.symlink(ab / "l2.png", ab / "l1.png")
    os.symlink(world.secret, world.allowed / "secret-link.png")
    os.symlink(world.outside.parent, world.allowed / "dirlink")
    os.symlink("../data/secret", world.allowed / "sub" / "up")
    os.symlink("/etc/passwd", world.allowed / "passwd.png")
    return world


def _forged_paths(w: World) -> dict[str, str]:
    """Payload paths the hand-off is given, each for an image that must not be served."""
    a, up, out = str(w.allowed), str(w.uploads), str(w.outside)
    return {
        "outside, absolute": out,
        "data folder, absolute": str(w.secret),
        "data folder, plain file": str(w.data / "canary.txt"),
        "sibling of the root": str(w.lib / "allowed-evil" / "canary.png"),
        "sibling of the upload folder": str(w.uploads.parent / "uploads.bak" / "canary.png"),
        "parent of the root": str(w.lib / "canary.png"),
        "upload folder, ../": f"{up}/../secret/canary.png",
        "upload folder, two levels of ../": f"{up}/ab/../../secret/canary.png",
        "root, ../": f"{a}/../outside/canary.png",
        "root, ./../": f"{a}/./../outside/canary.png",
        "root, ../ to the sibling": f"{a}/../allowed-evil/canary.png",
        "double slashes": "/" + out,
        "absolute link in the upload folder": f"{up}/ab/abs-link.png",
        "relative link in the upload folder": f"{up}/ab/rel-link.png",
        "link to a folder in the upload folder": f"{up}/dirlink/canary.png",
        "chain of links in the upload folder": f"{up}/ab/l1.png",
        "link in the root to the data folder": f"{a}/secret-link.png",
        "link to a folder in the root": f"{a}/dirlink/canary.png",
        "relative folder link in the root": f"{a}/sub/up/canary.png",
        "link in the root to /etc/passwd": f"{a}/passwd.png",
        "NUL byte": f"{a}/ok.png\0/../../outside/canary.png",
        "NUL byte at the end": f"{out}\0",
        "relative": "outside/canary.png",
        "relative ../": "../outside/canary.png",
        "file URL": f"file://{out}",
        "percent-encoded": quote(out, safe=""),
        "backslashes": f"{a}\\..\\outside\\canary.png",
        "unicode dots": f"{a}/\u2024\u2024/outside/canary.png",
        "fullwidth dots and slash": f"{a}/\uff0e\uff0e\uff0foutside\uff0fcanary.png",
        "overlong ../ as text": f"{a}/%c0%ae%c0%ae%c0%af../outside/canary.png",
        "very long": f"{a}/" + "sub/../" * 700 + "../outside/canary.png",
        "very long component": f"{a}/{'x' * 5000}/../../outside/canary.png",
        "home": "~/.ssh/id_rsa",
        "/proc/self/root": f"/proc/self/root{out}",
        "/proc/self/cwd": "/proc/self/cwd/" + os.path.relpath(out, os.getcwd()),
        "/proc/self/environ": "/proc/self/environ",
        "/dev/stdin": "/dev/stdin",
        "/etc/passwd": "/etc/passwd",
        "the root itself": a,
        "the upload folder itself": up,
        "the root, ..": f"{a}/..",
        "empty": "",
    }


@pytest.fixture
async def world(
    inprocess: InProcessStack, tmp_path: Path
) -> AsyncIterator[tuple[World, FastAPI, httpx.AsyncClient]]:
    """The API with ``allowed/`` as its only root, the canaries, and the control points
    (the file under the root, the file in the upload folder, the inner link)."""
    w = _build(tmp_path)
    settings = inprocess.api_settings(data_dir=w.data, index_roots=[w.allowed], rescore_top_k=0)
    app = inprocess.create_api(settings)
    async with served(app) as client:
        controls = [
            image_point(OK_ID, w.allowed / "ok.png", COLLECTION, seed=1),
            image_point(UPLOAD_ID, w.uploads / "ab" / "up.png", COLLECTION, seed=2),
            image_point(INNER_LINK_ID, w.allowed / "inner-link.png", COLLECTION, seed=3),
        ]
        r = await forge(client, COLLECTION, controls)
        assert r.status_code == 200, r.text
        yield w, app, client


def _wrong(w: World, what: str, status: int, body: bytes, *, ok_bodies: list[bytes]) -> str | None:
    """Why this answer is wrong (None: it is not): a leak, a 5xx, or a 200 with anything
    but the bytes the request may legitimately get."""
    leaks = w.leaks(body)
    if leaks:
        return f"{what}: LEAK of {leaks} (status {status})"
    if status >= 500:
        return f"{what}: {status} {body[:200]!r}"
    if status == 200 and body not in ok_bodies:
        return f"{what}: 200 with {body[:120]!r}"
    return None


def test_the_corpora_are_large(tmp_path: Path) -> None:
    targets = {p + f for p in PREFIXES for f in TARGET_FORMS} | set(WHOLE_TARGETS)
    assert len(TARGET_FORMS) >= 30 and len(targets) >= 200
    assert len(set(COLLECTION_FORMS)) == len(COLLECTION_FORMS) >= 25
    assert len(_forged_paths(World(tmp_path))) >= 40


async def test_the_controls_are_served(world: tuple[World, FastAPI, httpx.AsyncClient]) -> None:
    """What is under the root or in the upload folder is served, through the same raw
    requests as the corpus: the corpus's 404s mean refused."""
    w, app, _ = world
    for image_id, content in w.served_ok.items():
        target = f"/api/image/{image_id}?collection={COLLECTION}".encode()
        r = await asyncio.wait_for(raw_request(app, "GET", target), PROMPT_S)
        assert (r.status, r.body) == (200, content), (image_id, r.status, r.body[:200])
    for name, image_id in (("ok.png", OK_ID), ("up.png", UPLOAD_ID)):
        for prefix in ("/images/", "/static/images/"):
            target = f"{prefix}{name}?collection={COLLECTION}".encode()
            r = await asyncio.wait_for(raw_request(app, "GET", target), PROMPT_S)
            assert (r.status, r.body) == (200, w.served_ok[image_id]), (target, r.status)
    page = await raw_request(app, "GET", b"/")
    docs = await raw_request(app, "GET", b"/docs")
    assert page.status == docs.status == 200


async def test_request_targets_never_reach_a_file(
    world: tuple[World, FastAPI, httpx.AsyncClient],
) -> None:
    w, app, _ = world
    page = (await raw_request(app, "GET", b"/")).body
    docs = (await raw_request(app, "GET", b"/docs")).body
    ok_bodies = [*w.served_ok.values(), page, docs]
    targets = [p + f for p in PREFIXES for f in TARGET_FORMS] + WHOLE_TARGETS
    wrong: list[str] = []
    for template in targets:
        target = w.expand(template)
        if template.startswith(IMAGE_PREFIXES) and "collection" not in template:
            target += f"?collection={COLLECTION}"
        r: RawResponse = await asyncio.wait_for(raw_request(app, "GET", target.encode()), PROMPT_S)
        problem = _wrong(w, target[:160], r.status, r.body, ok_bodies=ok_bodies)
        if problem:
            wrong.append(problem)
    assert wrong == [], f"{len(wrong)} of {len(targets)} targets got through:\n" + "\n".join(wrong)


async def _answers_to_name(
    w: World, app: FastAPI, client: httpx.AsyncClient, form: str
) -> dict[str, tuple[int, bytes]]:
    """The answers of every route that takes a collection name to ``form`` (URL-encoded)."""
    name = unquote(form)
    png = _png((5, 5, 5))
    image = await raw_request(app, "GET", f"/api/image/{OK_ID}?collection={form}".encode())
    by_name = await raw_request(app, "GET", f"/images/ok.png?collection={form}".encode())
    by_text = await client.post("/api/search/by-text", json={"text": "cat", "collection": name})
    upload = await client.post(
        "/api/index/upload",
        files=[("files", ("a.png", png, "image/png"))],
        data={"collection": name},
    )
    folder = await client.post(
        "/api/index/folder", json={"path": str(w.allowed), "collection": name}
    )
    handoff = await forge(client, name, [image_point(OK_ID, w.outside, name)])
    return {
        "image": (image.status, image.body),
        "by name": (by_name.status, by_name.body),
        **{
            label: (r.status_code, r.content)
            for label, r in (
                ("by-text", by_text),
                ("upload", upload),
                ("folder", folder),
                ("hand-off", handoff),
            )
        },
    }


async def test_collection_names_with_traversal_are_refused(
    world: tuple[World, FastAPI, httpx.AsyncClient],
) -> None:
    """Each name is refused as a name (400 ``invalid_collection``) wherever one is given:
    the image routes, a search, an upload, a folder, the hand-off; no folder appears."""
    w, app, client = world
    before = sorted(p.name for p in w.lib.iterdir())
    wrong: list[str] = []
    for form in COLLECTION_FORMS:
        answers = await asyncio.wait_for(_answers_to_name(w, app, client, form), PROMPT_S)
        for label, (status, body) in answers.items():
            what = f"{label} {form[:60]}"
            problem = _wrong(w, what, status, body, ok_bodies=[])
            if problem is None and (status, _error_code(body)) != (400, "invalid_collection"):
                problem = f"{what}: {status} {body[:160]!r}"
            if problem:
                wrong.append(problem)
    assert wrong == [], (
        f"{len(wrong)} of {len(COLLECTION_FORMS) * 6} requests got through:\n" + "\n".join(wrong)
    )
    assert sorted(p.name for p in w.lib.iterdir()) == before


def _error_code(body: bytes) -> str | None:
    try:
        return str(httpx.Response(400, content=body).json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


async def test_forged_payload_paths_are_never_served(
    world: tuple[World, FastAPI, httpx.AsyncClient],
) -> None:
    w, app, client = world
    cases = _forged_paths(w)
    ids = {label: f"7b000000-0000-4000-8000-{i:012d}" for i, label in enumerate(cases)}
    points = [
        image_point(ids[label], path, COLLECTION, seed=10 + i)
        for i, (label, path) in enumerate(cases.items())
    ]
    r = await forge(client, COLLECTION, points)
    assert r.status_code == 200, r.text
    wrong: list[str] = []
    for label, image_id in ids.items():
        target = f"/api/image/{image_id}?collection={COLLECTION}".encode()
        got = await asyncio.wait_for(raw_request(app, "GET", target), PROMPT_S)
        problem = _wrong(w, label, got.status, got.body, ok_bodies=[])
        if problem or got.status != 404 or _error_code(got.body) != "not_found":
            wrong.append(problem or f"{label}: {got.status} {got.body[:160]!r}")
    # By name: every forged point's file name (``canary.png`` is many of them), on both
    # routes of the original system.
    names = {os.path.basename(path) or "x" for path in cases.values()}
    for name in sorted(names):
        for prefix in ("/images/", "/static/images/"):
            target = f"{prefix}{quote(name, safe='')}?collection={COLLECTION}"
            got = await asyncio.wait_for(raw_request(app, "GET", target.encode()), PROMPT_S)
            problem = _wrong(w, target[:160], got.status, got.body, ok_bodies=[])
            if problem or got.status != 404:
                wrong.append(problem or f"{target[:160]}: {got.status} {got.body[:160]!r}")
    assert wrong == [], f"{len(wrong)} of {len(cases)} forged paths got through:\n" + "\n".join(
        wrong
    )


@pytest.mark.parametrize(
    "image_id",
    [
        "../../../../etc/passwd",
        "urn:uuid:7a000000-0000-4000-8000-000000000009",
        "{7a000000-0000-4000-8000-000000000009}",
        "7A000000-0000-4000-8000-00000000000A",
        "7a00000000004000800000000000000b",
        "",
        "x" * 5000,
    ],
)
async def test_hand_off_ids_that_are_paths_are_not_a_way_in(
    world: tuple[World, FastAPI, httpx.AsyncClient], image_id: str
) -> None:
    """A point id is the store's business: an id like a path, or a UUID in another
    spelling, is refused or stored as an id; it never names a file, never a 5xx."""
    w, app, client = world
    r = await forge(client, COLLECTION, [image_point(image_id, w.outside, COLLECTION)])
    assert r.status_code < 500, r.text
    got = await raw_request(
        app, "GET", f"/api/image/{quote(image_id, safe='')}?collection={COLLECTION}".encode()
    )
    assert _wrong(w, image_id, got.status, got.body, ok_bodies=[]) is None
    assert got.status in (400, 404), got.body[:200]
