"""Deletion and collections (issue 11, item 4): ``DELETE /api/images/{image_id}``,
``DELETE /api/collections/{name}``, ``GET /api/collections``, and searches over several
collections at once (``collections``), whose results are merged by score and say their
``collection``.

The app is the real search API with its own Edge shard and ``API_KEY`` set, wired to the
in-process stack's encoder and Redis; its points are forged through the internal hand-off
(``tests/support/handoff``: random vectors, payloads naming real files where re-scoring
must read them), so no worker or model call is spent on indexing.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.handoff import AUTH, UPSERT_URL, forge, image_point, unit_vector
from tests.support.inprocess import InProcessStack, served

KEY = "library-api-key-9f3e"
WITH_KEY = {"X-API-Key": KEY}
A, B = "lib-a", "lib-b"


def _id(n: int) -> str:
    return f"44444444-0000-0000-0000-{n:012x}"


def _png(color: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(buf, format="PNG")
    return buf.getvalue()


def _windows(parent: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` window points of ``parent`` (random vectors, boxes of a 64 x 64 picture)."""
    return [
        {
            "id": f"55555555-{seed:04x}-0000-0000-{i:012x}",
            "vector": unit_vector(seed * 100 + i),
            "payload": {"parent_id": parent, "box": [0, 0, 32 + i, 32 + i]},
        }
        for i in range(n)
    ]


async def _forge(
    client: httpx.AsyncClient,
    collection: str,
    full: list[dict[str, Any]],
    windows: list[dict[str, Any]] | None = None,
) -> None:
    if windows:
        body = {"collection": collection, "full": [], "windows": windows}
        r = await client.post(UPSERT_URL, json=body, headers=AUTH)
        assert r.status_code == 200, r.text
    if full:
        r = await forge(client, collection, full)
        assert r.status_code == 200, r.text


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data",
        api_key=KEY,
        index_roots=[tmp_path / "photos"],
        rescore_top_k=8,
    )
    (tmp_path / "photos").mkdir()
    async with served(inprocess.create_api(settings)) as client:
        yield client


@pytest.fixture
async def two(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """Collections ``lib-a`` (images 1-3, two windows each) and ``lib-b`` (images 3-4: image
    3 is in both, with the same vector)."""
    await _forge(
        api,
        A,
        [image_point(_id(n), f"/nowhere/{n}.png", A, seed=n) for n in (1, 2, 3)],
        [w for n in (1, 2, 3) for w in _windows(_id(n), 2, n)],
    )
    await _forge(api, B, [image_point(_id(n), f"/nowhere/{n}.png", B, seed=n) for n in (3, 4)])
    return api


async def _text_search(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/search/by-text", json={"text": "a photo", "limit": 100, "min_score": -1, **body}
    )


def _ids(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [res["id"] for res in r.json()["results"]]


def _code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


# --- who may delete ---------------------------------------------------------------------------


async def test_deleting_needs_the_key(two: httpx.AsyncClient) -> None:
    """Without ``API_KEY`` (or with a wrong one) nothing is deleted or dropped: 401."""
    for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}):
        for method, url in (
            ("DELETE", f"/api/images/{_id(1)}?collection={A}"),
            ("DELETE", f"/api/collections/{A}"),
        ):
            r = await two.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, headers, r.text)
            assert _code(r) == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
    listed = (await two.get("/api/collections")).json()["collections"]
    assert [(c["name"], c["images"], c["windows"]) for c in listed] == [(A, 3, 6), (B, 2, 0)]


async def test_the_collections_list_is_open_to_read(two: httpx.AsyncClient) -> None:
    r = await two.get("/api/collections")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "collections": [
            {"name": A, "images": 3, "windows": 6, "model": None},
            {"name": B, "images": 2, "windows": 0, "model": None},
        ]
    }


#: Image ids no image has: each must be a clear 4xx, never a 500, and delete nothing.
HOSTILE_IDS = [
    "x",
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "' OR 1=1 --",
    "*",
    "null",
    _id(1) + "%0A",
    _id(1).upper() + "0",
    "a" * 5000,
    "%F0%9F%98%80",
    "{}",
]
#: Collection names that are not valid, or name no collection (the Qdrant server's own
#: records collection among them): 4xx, nothing dropped.
HOSTILE_NAMES = [
    "..",
    "..%2F" + A,
    A + ".r1",
    "default.r1",
    "a" * 64,
    "-x",
    "x%0A",
    A + "%0A",
    "%00",
    "%C3%A9",
    "x%20y",
    "imgsearch__records",
    "lib-c",
    "LIB-A",
]


async def test_hostile_ids_and_names_are_refused_and_delete_nothing(
    two: httpx.AsyncClient,
) -> None:
    wrong: list[str] = []

    def check(what: str, r: httpx.Response, allowed: set[int]) -> None:
        if r.status_code not in allowed:
            wrong.append(f"{what}: {r.status_code} {r.text[:200]}")
        elif "error" not in r.json():
            wrong.append(f"{what}: {r.text[:200]}")

    for image_id in HOSTILE_IDS:
        for collection in (A, "lib-c", "..", "a.b"):
            url = f"/api/images/{image_id}?collection={collection}"
            r = await two.delete(url, headers=WITH_KEY)
            check(f"DELETE image {image_id!r} in {collection!r}", r, {400, 404, 405})
        r = await two.get(f"/api/image/{image_id}?collection={A}")
        check(f"GET image {image_id!r}", r, {404})
    for name in HOSTILE_NAMES:
        r = await two.delete(f"/api/collections/{name}", headers=WITH_KEY)
        check(f"DROP {name!r}", r, {400, 404, 405})
        r = await two.delete(f"/api/images/{_id(1)}?collection={name}", headers=WITH_KEY)
        check(f"DELETE image 1 in {name!r}", r, {400, 404})
    assert wrong == [], "\n".join(wrong)
    listed = (await two.get("/api/collections")).json()["collections"]
    assert [(c["name"], c["images"], c["windows"]) for c in listed] == [(A, 3, 6), (B, 2, 0)]


async def test_hostile_collections_in_a_search_are_4xx(two: httpx.AsyncClient) -> None:
    wrong: list[str] = []
    cases: list[tuple[Any, int]] = [
        (["../x"], 400),
        ([A, "a.b"], 400),
        ([""], 400),
        (["a" * 100_000], 400),
        ([A] * 17, 422),
        ("lib-a", 422),
        ([1, 2], 422),
        ([[A]], 422),
        ({"name": A}, 422),
        (["imgsearch__records"], 404),
        ([A, "lib-c"], 404),
    ]
    for collections, status in cases:
        for path, extra in (
            ("/api/search/by-text", {"text": "a photo"}),
            ("/api/search/by-url", {"url": "http://127.0.0.1/a.png"}),
        ):
            r = await two.post(path, json={**extra, "collections": collections})
            # by-url: a collection is checked before the URL is fetched.
            if r.status_code != status or "error" not in r.json():
                wrong.append(f"{path} {str(collections)[:80]}: {r.status_code} {r.text[:200]}")
    for fields, status in [
        ({"collections": "../x"}, 400),
        ({"collections": f"{A},a.b"}, 400),
        ({"collections": [A] * 17}, 422),
        ({"collections": ",".join([A] * 17)}, 422),
        ({"collections": "lib-c"}, 404),
    ]:
        r = await two.post(
            "/api/search/by-image", files={"file": ("q.png", _png(), "image/png")}, data=fields
        )
        if r.status_code != status or "error" not in r.json():
            wrong.append(f"by-image {str(fields)[:80]}: {r.status_code} {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)


# --- deleting an image ------------------------------------------------------------------------


async def test_a_deleted_image_and_its_windows_are_gone(two: httpx.AsyncClient) -> None:
    r = await two.delete(f"/api/images/{_id(2)}?collection={A}", headers=WITH_KEY)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": _id(2), "collection": A}
    listed = (await two.get("/api/collections")).json()["collections"]
    assert [(c["name"], c["images"], c["windows"]) for c in listed] == [(A, 2, 4), (B, 2, 0)]
    assert _id(2) not in _ids(await _text_search(two, collection=A))
    assert _id(2) not in _ids(await _text_search(two, collection=A, use_full_matching=False))
    r = await two.get(f"/api/image/{_id(2)}?collection={A}")
    assert (r.status_code, _code(r)) == (404, "not_found")
    status = (await two.get("/api/status")).json()
    assert status["collections"][A] == {"full_images": 2, "partial_images": 4}
    # Once: the second time there is no such image.
    r = await two.delete(f"/api/images/{_id(2)}?collection={A}", headers=WITH_KEY)
    assert (r.status_code, _code(r)) == (404, "not_found")
    # The same content in another collection is another image: untouched.
    assert _id(3) in _ids(await _text_search(two, collection=B))
    r = await two.delete(f"/api/images/{_id(3)}?collection={B}", headers=WITH_KEY)
    assert r.status_code == 200
    assert _id(3) in _ids(await _text_search(two, collection=A))


async def test_deleting_in_a_collection_that_does_not_exist_is_404(
    two: httpx.AsyncClient,
) -> None:
    r = await two.delete(f"/api/images/{_id(1)}?collection=lib-c", headers=WITH_KEY)
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    assert A in r.json()["error"]["message"] and B in r.json()["error"]["message"]
    r = await two.delete(f"/api/images/{_id(1)}", headers=WITH_KEY)  # the default collection
    assert r.status_code == 404


async def test_windows_without_their_image_never_come_back(two: httpx.AsyncClient) -> None:
    """Windows whose image point is gone (a delete that raced a write, a stale write) are
    not a result: there is nothing to show or serve for them."""
    await _forge(two, A, [], _windows(_id(9), 3, 9))
    by_windows = await _text_search(two, collection=A, use_full_matching=False)
    assert set(_ids(by_windows)) == {_id(1), _id(2), _id(3)}
    for result in by_windows.json()["results"]:
        assert result["metadata"] is not None


async def test_a_deleted_image_is_not_re_scored_back(
    api: httpx.AsyncClient, tmp_path: Path, photos_dir: Path
) -> None:
    """Two points with random vectors name the same photo under the roots; re-scoring
    (stage two) cuts the query's box from it and lifts both. Deleted, one never comes
    back, first stage or second; its file is no longer served under its id or name."""
    photo = tmp_path / "photos" / "coffee.jpg"
    shutil.copy(photos_dir / "coffee.jpg", photo)
    with Image.open(photo) as im:
        size = im.size
        w, h = size
        query = im.convert("RGB").crop((w // 5, h // 5, w * 4 // 5, h * 4 // 5))
    buf = io.BytesIO()
    query.save(buf, format="JPEG", quality=90)
    kept, gone = _id(21), _id(22)
    points = [image_point(kept, photo, A, seed=21, size=size)]
    points.append(image_point(gone, photo, A, seed=22, size=size))
    await _forge(api, A, points, _windows(gone, 2, 22))

    async def search() -> dict[str, float]:
        r = await api.post(
            "/api/search/by-image",
            files={"file": ("q.jpg", buf.getvalue(), "image/jpeg")},
            data={"collection": A, "limit": "10"},
        )
        assert r.status_code == 200, r.text
        assert "rescore" in r.json()["timings_ms"]
        return {res["id"]: res["score"] for res in r.json()["results"]}

    before = await search()
    assert before[kept] > 0.5 and before[gone] > 0.5, before  # the control: re-scored
    assert (await api.get(f"/api/image/{gone}?collection={A}")).status_code == 200
    r = await api.delete(f"/api/images/{gone}?collection={A}", headers=WITH_KEY)
    assert r.status_code == 200, r.text
    after = await search()
    assert gone not in after and after[kept] > 0.5, after
    assert (await api.get(f"/api/image/{gone}?collection={A}")).status_code == 404
    # The name still serves the other image holding the file; with both gone, nothing.
    assert (await api.get(f"/images/coffee.jpg?collection={A}")).status_code == 200
    r = await api.delete(f"/api/images/{kept}?collection={A}", headers=WITH_KEY)
    assert r.status_code == 200, r.text
    assert await search() == {}
    for url in (f"/images/coffee.jpg?collection={A}", f"/api/image/{kept}?collection={A}"):
        assert (await api.get(url)).status_code == 404, url


# --- dropping a collection --------------------------------------------------------------------


async def test_a_dropped_collection_is_gone_everywhere(two: httpx.AsyncClient) -> None:
    r = await two.delete(f"/api/collections/{A}", headers=WITH_KEY)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": A, "images": 3, "windows": 6}
    listed = (await two.get("/api/collections")).json()["collections"]
    assert [c["name"] for c in listed] == [B]
    status = (await two.get("/api/status")).json()
    assert set(status["collections"]) == {B}
    assert status["indexed_images"] == {"full_images": 2, "partial_images": 0}
    health = (await two.get("/health")).json()
    assert health["collections"] == {"full_images": 2, "partial_images": 0}
    r = await _text_search(two, collection=A)
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    r = await two.get(f"/api/image/{_id(1)}?collection={A}")
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    r = await two.delete(f"/api/collections/{A}", headers=WITH_KEY)
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    # Indexing into the name again starts a new, empty collection.
    await _forge(two, A, [image_point(_id(7), "/nowhere/7.png", A, seed=7)])
    assert _ids(await _text_search(two, collection=A)) == [_id(7)]


# --- searching several collections ------------------------------------------------------------


async def test_several_collections_are_merged_by_score_and_labelled(
    two: httpx.AsyncClient,
) -> None:
    alone = {name: (await _text_search(two, collection=name)).json()["results"] for name in (A, B)}
    for name, results in alone.items():
        assert {r["collection"] for r in results} == {name}
    r = await _text_search(two, collections=[A, B])
    assert r.status_code == 200, r.text
    merged = r.json()["results"]
    expected = sorted(
        (res for results in alone.values() for res in results),
        key=lambda res: (-res["score"], res["id"], res["collection"]),
    )
    assert [(m["id"], m["collection"], m["score"]) for m in merged] == [
        (e["id"], e["collection"], e["score"]) for e in expected
    ]
    # Image 3 is in both: once per collection, each with its own link.
    threes = [m for m in merged if m["id"] == _id(3)]
    assert {m["collection"] for m in threes} == {A, B}
    for m in merged:
        assert m["image_url"] == f"/api/image/{m['id']}?collection={m['collection']}"
    # The limit applies to the merged list; names given twice count once.
    r = await _text_search(two, collections=[B, A, B], limit=2)
    assert [(m["id"], m["collection"]) for m in r.json()["results"]] == [
        (e["id"], e["collection"]) for e in expected[:2]
    ]
    # ``collections`` is searched instead of ``collection``; empty: ``collection``.
    r = await _text_search(two, collection=A, collections=[B])
    assert {m["collection"] for m in r.json()["results"]} == {B}
    r = await _text_search(two, collection=B, collections=[])
    assert {m["collection"] for m in r.json()["results"]} == {B}


async def test_the_image_form_takes_repeated_and_comma_separated_collections(
    two: httpx.AsyncClient,
) -> None:
    async def by_image(fields: dict[str, str | list[str]]) -> set[tuple[str, str]]:
        r = await two.post(
            "/api/search/by-image",
            files={"file": ("q.png", _png(), "image/png")},
            data={"limit": "100", **fields},
        )
        assert r.status_code == 200, r.text
        return {(m["id"], m["collection"]) for m in r.json()["results"]}

    both = {(_id(n), A) for n in (1, 2, 3)} | {(_id(n), B) for n in (3, 4)}
    assert await by_image({"collections": [A, B]}) == both
    assert await by_image({"collections": f"{A}, {B}"}) == both
    assert await by_image({"collections": f"{B},"}) == {(_id(n), B) for n in (3, 4)}
    assert await by_image({"collection": A}) == {(_id(n), A) for n in (1, 2, 3)}
    assert await by_image({"collection": A, "collections": ","}) == {(_id(n), A) for n in (1, 2, 3)}


async def test_an_unknown_collection_is_404_naming_the_existing_ones(
    two: httpx.AsyncClient,
) -> None:
    for body in ({"collection": "lib-c"}, {"collections": [A, "lib-c"]}):
        r = await _text_search(two, **body)
        assert (r.status_code, _code(r)) == (404, "collection_not_found"), r.text
        message = r.json()["error"]["message"]
        assert "lib-c" in message and A in message and B in message, message
    r = await two.get("/images/1.png?collection=lib-c")
    assert (r.status_code, _code(r)) == (404, "collection_not_found")


async def test_the_default_collection_answers_empty_before_anything_is_indexed(
    api: httpx.AsyncClient,
) -> None:
    """A fresh install: the seed's clients search without naming a collection, and get no
    results (not a 404) until something is indexed; other names are 404."""
    r = await _text_search(api)
    assert (r.status_code, r.json()["results"]) == (200, [])
    r = await _text_search(api, collection="photos")
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    assert "no collections" in r.json()["error"]["message"]
    assert (await api.get("/api/collections")).json() == {"collections": []}
