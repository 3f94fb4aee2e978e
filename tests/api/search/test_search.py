"""Through the queue and the workers: index real photos, search them back (the services
in this process, ``tests/support/inprocess.py``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgsearch_common.imaging import decode_image
from imgsearch_common.windows import box_iou, window_boxes
from imgsearch_devstack import wait_batch
from tests.support.images import jpeg_bytes, search_image
from tests.support.inprocess import InProcessStack

pytestmark = [pytest.mark.slow]
COLLECTION = "photos"


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


@pytest.fixture(scope="module")
def indexed(client: httpx.Client, photos_dir: Path) -> dict[str, Path]:
    r = client.post("/api/index/folder", json={"path": str(photos_dir), "collection": COLLECTION})
    assert r.status_code == 202, r.text
    body = r.json()
    files = sorted(photos_dir.iterdir())
    assert body["queued"] == len(files) >= 20
    status = wait_batch(client, body["batch_id"])
    assert (status.done, status.failed, status.pending) == (len(files), 0, 0), status
    return {p.stem: p for p in files}


def _decoded(path: Path) -> Image.Image:
    return decode_image(path.read_bytes())


def test_counts_are_exact(client: httpx.Client, indexed: dict[str, Path]) -> None:
    expected_windows = sum(len(window_boxes(*_decoded(p).size)) for p in indexed.values())
    status = client.get("/api/status").json()
    counts = status["collections"][COLLECTION]
    assert counts == {"full_images": len(indexed), "partial_images": expected_windows}
    assert status["queue"]["pending"] == 0


def test_recompressed_copy_comes_back_first(client: httpx.Client, indexed: dict[str, Path]) -> None:
    misses = []
    for name, path in indexed.items():
        img = _decoded(path)
        small = img.resize((max(1, img.width * 6 // 10), max(1, img.height * 6 // 10)))
        r = search_image(client, jpeg_bytes(small, 60), collection=COLLECTION, limit=5)
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]
        if top["metadata"]["filename"] != path.name:
            misses.append((name, top["metadata"]["filename"]))
    assert not misses, misses


def test_quarter_crop_finds_parent_and_region(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    rng = random.Random(7)
    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "china",
        "flower",
        "retina",
        "hubble_deep_field",
    ]
    failures = []
    for name in names:
        img = _decoded(indexed[name])
        w, h = img.size
        cw, ch = w // 2, h // 2  # about 25 % of the area
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop_box = (x0, y0, x0 + cw, y0 + ch)
        r = search_image(
            client,
            jpeg_bytes(img.crop(crop_box), 85),
            collection=COLLECTION,
            use_full_matching=True,
            use_partial_matching=True,
            limit=3,
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        ranked = [res["metadata"]["filename"] for res in results]
        if indexed[name].name not in ranked:
            failures.append((name, "parent not in top 3", ranked))
            continue
        hit = results[ranked.index(indexed[name].name)]
        assert hit["match_type"] in ("partial_to_full", "full_and_partial")
        boxes = [tuple(b["box"]) for b in hit["matched_boxes"]]
        assert boxes, hit
        # Re-scoring locates the crop: its box is the crop's, not a coarse window's.
        if box_iou(boxes[0], crop_box) < 0.5:
            failures.append((name, "matched box is not the crop's", boxes[0], crop_box))
    assert not failures, failures


def test_contains_mode_finds_a_picture_inside_the_query(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    """A screenshot-like query with an indexed photo pasted in it: match_mode=contains finds
    the photo and says where it is in the query."""
    failures = []
    for i, name in enumerate(["astronaut", "coffee", "china"]):
        img = _decoded(indexed[name])
        canvas = Image.new("RGB", (1200, 800), (236, 238, 242))
        pasted = img.resize((img.width * 420 // max(img.size), img.height * 420 // max(img.size)))
        at = (100 + 300 * i, 120 + 100 * i)
        canvas.paste(pasted, at)
        truth = (at[0], at[1], at[0] + pasted.width, at[1] + pasted.height)
        r = search_image(
            client, jpeg_bytes(canvas, 85), collection=COLLECTION, match_mode="contains", limit=3
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        top = results[0]
        if top["metadata"]["filename"] != indexed[name].name:
            failures.append((name, [x["metadata"]["filename"] for x in results]))
            continue
        assert top["match_type"] == "contains"
        assert top["query_box"] is not None
        if box_iou(tuple(top["query_box"]), truth) < 0.5:
            failures.append((name, "query box", top["query_box"], truth))
    assert not failures, failures


def test_query_box_is_in_the_querys_own_pixels_when_the_query_was_shrunk(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    """Text removal works on a copy shrunk to 1024 px; the query box must still be given
    in the uploaded picture's pixels."""
    img = _decoded(indexed["astronaut"])
    canvas = Image.new("RGB", (2400, 1600), (236, 238, 242))
    pasted = img.resize((840, 840))
    canvas.paste(pasted, (1200, 500))
    truth = (1200, 500, 2040, 1340)
    r = search_image(
        client,
        jpeg_bytes(canvas, 85),
        collection=COLLECTION,
        match_mode="contains",
        remove_text=True,
        limit=3,
    )
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["metadata"]["filename"] == indexed["astronaut"].name
    assert top["match_type"] == "contains"
    assert box_iou(tuple(top["query_box"]), truth) >= 0.5, (top["query_box"], truth)


def test_a_large_jpeg_query_finds_its_picture_and_region(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    """A region-mode query is decoded at a reduced JPEG scale; results stay right."""
    img = _decoded(indexed["chelsea"])
    big = img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC)
    r = search_image(client, jpeg_bytes(big, 90), collection=COLLECTION, limit=3)
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["metadata"]["filename"] == indexed["chelsea"].name
    half = img.crop((0, 0, img.width // 2, img.height))
    big_half = half.resize((half.width * 4, half.height * 4), Image.Resampling.BICUBIC)
    r = search_image(client, jpeg_bytes(big_half, 90), collection=COLLECTION, limit=3)
    results = r.json()["results"]
    ranked = [x["metadata"]["filename"] for x in results]
    assert indexed["chelsea"].name in ranked, ranked
    hit = results[ranked.index(indexed["chelsea"].name)]
    box = tuple(hit["matched_boxes"][0]["box"])
    assert box_iou(box, (0, 0, img.width // 2, img.height)) >= 0.5, box


def test_match_mode_is_validated(client: httpx.Client, indexed: dict[str, Path]) -> None:
    data = indexed["coins"].read_bytes()
    r = search_image(client, data, collection=COLLECTION, match_mode="everywhere")
    assert r.status_code == 422
    r = client.post(
        "/api/search/by-url",
        json={"url": "http://example.com/x.jpg", "match_mode": "sideways"},
    )
    assert r.status_code == 422


def test_response_shape_and_image_serving(client: httpx.Client, indexed: dict[str, Path]) -> None:
    path = indexed["coffee"]
    r = search_image(client, path.read_bytes(), collection=COLLECTION, limit=2)
    body = r.json()
    assert body["processing_time_ms"] > 0
    assert {"decode", "encode", "vector_search", "aggregate"} <= set(body["timings_ms"])
    top = body["results"][0]
    assert top["score"] > 0.99
    meta = top["metadata"]
    assert meta["filename"] == "coffee.jpg"
    assert meta["original_path"] == str(path)
    assert meta["file_size"] == path.stat().st_size
    assert meta["indexed_at"] > 0
    assert (meta["width"], meta["height"]) == _decoded(path).size
    served = client.get(top["image_url"])
    assert served.status_code == 200
    assert served.content == path.read_bytes()


def test_full_only_and_partial_only(client: httpx.Client, indexed: dict[str, Path]) -> None:
    data = indexed["rocket"].read_bytes()
    full = search_image(client, data, collection=COLLECTION, use_partial_matching=False).json()
    assert {r["match_type"] for r in full["results"]} == {"full"}
    assert all(r["matched_boxes"] == [] for r in full["results"])
    part = search_image(client, data, collection=COLLECTION, use_full_matching=False).json()
    assert {r["match_type"] for r in part["results"]} == {"partial_to_full"}
    assert part["results"][0]["metadata"]["filename"] == "rocket.jpg"


def test_by_text_and_min_score(client: httpx.Client, indexed: dict[str, Path]) -> None:
    r = client.post(
        "/api/search/by-text", json={"text": "a cat", "collection": COLLECTION, "limit": 4}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    none = client.post(
        "/api/search/by-text",
        json={"text": "a cat", "collection": COLLECTION, "min_score": 1.5},
    )
    assert none.json()["results"] == []


def test_remove_text_and_enhance_options(client: httpx.Client, indexed: dict[str, Path]) -> None:
    data = indexed["chelsea"].read_bytes()
    r = search_image(
        client, data, collection=COLLECTION, remove_text=True, enhance_image=True, limit=3
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "remove_text" in body["timings_ms"]
    assert body["results"][0]["metadata"]["filename"] == "chelsea.jpg"


def test_unknown_collection_is_404(client: httpx.Client, indexed: dict[str, Path]) -> None:
    """Issue 11: a collection that does not exist is named as such, with those that do."""
    r = search_image(client, indexed["coins"].read_bytes(), collection="nothing-here")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "collection_not_found"
    assert "'nothing-here'" in error["message"] and f"'{COLLECTION}'" in error["message"]
