"""``GET /api/duplicates`` through the real stack (encoder, API, workers in this process):
generated copies of real photos are indexed, and each tier finds what it should — and a
distinct photo is in no group."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageEnhance

from imgsearch_common.windows import box_iou
from imgsearch_devstack import wait_batch
from imgsearch_devstack.photos import load_photos
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.inprocess import API_INTERNAL_URL, InProcessStack, LoopTransport, served

pytestmark = [pytest.mark.slow]
COLLECTION = "dups"
#: Where the crop of the rocket photo lies in it.
CROP = (130, 60, 130 + 300, 60 + 220)


def _jpeg(img: Image.Image, path: Path, quality: int) -> Path:
    img.convert("RGB").save(path, format="JPEG", quality=quality)
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of real photos, by what they are."""
    folder = tmp_path_factory.mktemp("duplicates")
    photos = load_photos()
    files: dict[str, Path] = {}
    files["astronaut"] = _jpeg(photos["astronaut"], folder / "astronaut.jpg", 90)
    files["astronaut_copy"] = folder / "copies" / "astronaut.jpg"
    files["astronaut_copy"].parent.mkdir()
    shutil.copyfile(files["astronaut"], files["astronaut_copy"])
    coffee = photos["coffee"].convert("RGB")
    files["coffee"] = folder / "coffee.png"
    coffee.save(files["coffee"], compress_level=9)
    files["coffee_resaved"] = folder / "coffee-resaved.png"
    coffee.save(files["coffee_resaved"], compress_level=1)
    chelsea = photos["chelsea"]
    files["chelsea"] = _jpeg(chelsea, folder / "chelsea.jpg", 92)
    files["chelsea_q40"] = _jpeg(chelsea, folder / "chelsea-q40.jpg", 40)
    half = chelsea.resize((chelsea.width // 2, chelsea.height // 2), Image.Resampling.LANCZOS)
    files["chelsea_small"] = _jpeg(ImageEnhance.Brightness(half).enhance(1.1), folder / "c.jpg", 80)
    rocket = photos["rocket"]
    files["rocket"] = _jpeg(rocket, folder / "rocket.jpg", 92)
    files["rocket_crop"] = _jpeg(rocket.crop(CROP), folder / "rocket-crop.jpg", 85)
    files["distinct"] = _jpeg(photos["china"], folder / "china.jpg", 90)
    return files


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


@pytest.fixture(scope="module")
def indexed(client: httpx.Client, library: dict[str, Path]) -> dict[str, Path]:
    folder = library["astronaut"].parent
    r = client.post("/api/index/folder", json={"path": str(folder), "collection": COLLECTION})
    assert r.status_code == 202, r.text
    status = wait_batch(client, r.json()["batch_id"])
    assert (status.failed, status.pending) == (0, 0), status
    return library


def _duplicates(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get("/api/duplicates", params={"collection": COLLECTION, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _paths(group: dict[str, Any]) -> set[str]:
    return {item["path"] for item in group["items"]}


def _group_with(groups: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    found = [g for g in groups if str(path) in _paths(g)]
    assert len(found) == 1, (path, groups)
    return found[0]


def test_exact_tier_finds_one_content_at_two_paths_and_identical_pixels(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    body = _duplicates(client, tier="exact")
    assert body["tiers"] == ["exact"]
    assert {g["tier"] for g in body["groups"]} == {"exact"}
    same_bytes = _group_with(body["groups"], indexed["astronaut"])
    assert _paths(same_bytes) == {str(indexed["astronaut"]), str(indexed["astronaut_copy"])}
    assert len({item["id"] for item in same_bytes["items"]}) == 1  # one image, two files
    assert [p["evidence"]["check"] for p in same_bytes["pairs"]] == ["content"]
    same_pixels = _group_with(body["groups"], indexed["coffee"])
    assert _paths(same_pixels) == {str(indexed["coffee"]), str(indexed["coffee_resaved"])}
    assert [p["evidence"]["check"] for p in same_pixels["pairs"]] == ["pixels"]
    assert len(body["groups"]) == 2


def test_near_tier_groups_recompressed_and_resized_copies(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    body = _duplicates(client, tier="near")
    group = _group_with(body["groups"], indexed["chelsea"])
    assert _paths(group) == {str(indexed[k]) for k in ("chelsea", "chelsea_q40", "chelsea_small")}
    for pair in group["pairs"]:
        evidence = pair["evidence"]
        assert evidence["check"] == "thumbnail"
        assert evidence["source"] == "signature"
        assert evidence["correlation"] >= 0.9 and evidence["detail"] >= 0.6, pair
        assert pair["score"] == evidence["correlation"]
    # The crop is not a near copy of its parent.
    assert all(str(indexed["rocket_crop"]) not in _paths(g) for g in body["groups"])


def test_contained_tier_finds_the_crop_and_its_box(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    body = _duplicates(client, tier="contained")
    group = _group_with(body["groups"], indexed["rocket_crop"])
    assert group["items"][0]["path"] == str(indexed["rocket"])  # the parent first
    (pair,) = [p for p in group["pairs"] if group["items"][p["b"]]["path"].endswith("crop.jpg")]
    assert pair["a"] == 0
    evidence = pair["evidence"]
    assert evidence["check"] == "located" and evidence["source"] == "file"
    assert box_iou(tuple(evidence["box"]), CROP) >= 0.9, evidence
    assert 0.1 < evidence["area"] < 0.5
    assert len(evidence["window"]) == 4 and evidence["clip_score"] is not None


def test_every_tier_at_once_and_a_distinct_photo_is_in_no_group(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    body = _duplicates(client)
    assert body["tiers"] == ["exact", "near", "contained"]
    assert body["images"] == len(indexed) - 1  # two files of one content: one image
    assert {g["tier"] for g in body["groups"]} == {"exact", "near", "contained"}
    for group in body["groups"]:
        assert str(indexed["distinct"]) not in _paths(group), group
    assert set(body["timings_ms"]) >= {"load", "exact", "near", "contained"}


def test_limit_cuts_the_groups_and_says_so(client: httpx.Client, indexed: dict[str, Path]) -> None:
    body = _duplicates(client, tier="exact", limit=1)
    assert len(body["groups"]) == 1 and body["truncated"] is True
    assert _duplicates(client, tier="exact", limit=5)["truncated"] is False


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"tier": "similar"}, 422, "validation_error"),
        ({"limit": "0"}, 422, "validation_error"),
        ({"limit": "100000"}, 422, "validation_error"),
        ({"limit": "many"}, 422, "validation_error"),
        ({"collection": "not a name!"}, 400, "invalid_collection"),
        ({"collection": "no-such-collection"}, 404, "collection_not_found"),
    ],
)
def test_bad_parameters_are_4xx(
    client: httpx.Client, params: dict[str, str], status: int, code: str
) -> None:
    r = client.get("/api/duplicates", params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_points_without_a_signature_are_verified_from_their_files(
    inprocess: InProcessStack, client: httpx.Client, library: dict[str, Path]
) -> None:
    """Points written before signatures existed (forged here through the hand-off, no
    signature): near copies are still found, from the files."""
    collection = "dups-legacy"
    chosen = ("chelsea", "chelsea_q40", "distinct")
    points = []
    for n, key in enumerate(chosen):
        with Image.open(library[key]) as img:
            size = img.size
        # The copies share a vector (the model proposes them), the distinct photo not.
        seed = 1 if key.startswith("chelsea") else 2
        point_id = f"00000000-0000-4000-8000-00000000000{n}"
        points.append(image_point(point_id, library[key], collection, seed=seed, size=size))
    internal = httpx.Client(
        transport=LoopTransport(inprocess.api_app, inprocess.loop), base_url=API_INTERNAL_URL
    )
    with internal:
        body = {"collection": collection, "full": points, "windows": []}
        assert internal.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
    r = client.get("/api/duplicates", params={"collection": collection, "tier": "near"})
    assert r.status_code == 200, r.text
    (group,) = r.json()["groups"]
    assert _paths(group) == {str(library["chelsea"]), str(library["chelsea_q40"])}
    (pair,) = group["pairs"]
    assert pair["evidence"]["source"] == "file"
    assert pair["evidence"]["clip_score"] == pytest.approx(1.0, abs=1e-4)


async def test_a_scan_beyond_the_admission_is_refused_with_retry_after(
    inprocess: InProcessStack, tmp_path: Path
) -> None:
    """One scan at a time and DUPLICATES_QUEUE waiting: beyond, 503 + Retry-After, and
    the next request after the running scan is answered."""
    settings = inprocess.api_settings(
        data_dir=tmp_path / "data", duplicates_queue=0, search_queue_wait_s=0.0
    )
    app = inprocess.create_api(settings)
    async with served(app) as api:
        gate = app.state.resources.duplicates.admission
        await gate.acquire()  # a scan in progress
        try:
            r = await api.get("/api/duplicates")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "upstream_unavailable"
            assert int(r.headers["Retry-After"]) >= 1
        finally:
            gate.release(0.5)
        r = await api.get("/api/duplicates")
        assert r.status_code == 200, r.text
        assert r.json()["groups"] == [] and r.json()["images"] == 0


@pytest.mark.parametrize(
    "box",
    [
        [300, 200, 100, 50],
        [300, 50, 100, 200],
        [100, 50, 100, 50],
        [0, 0, 10**9, 10**9],
        [-50, -50, 20, 20],
    ],
)
def test_a_forged_window_box_is_no_server_error(
    inprocess: InProcessStack, client: httpx.Client, library: dict[str, Path], box: list[int]
) -> None:
    """A window point whose box is reversed, empty or outside its image (a stale point, a
    token holder's): the contained tier answers 200, and finds no crop on it."""
    collection = "dups-forged-" + "-".join(str(abs(v)) for v in box)[:40]
    child_id, parent_id = (f"00000000-0000-4000-8000-0000000001{n:02d}" for n in (1, 2))
    points = []
    for point_id, key, seed in ((child_id, "chelsea", 1), (parent_id, "rocket", 2)):
        with Image.open(library[key]) as img:
            size = img.size
        points.append(image_point(point_id, library[key], collection, seed=seed, size=size))
    window = {
        "id": "00000000-0000-4000-8000-000000000199",
        "vector": points[0]["vector"],  # the child's view finds this window first
        "payload": {"parent_id": parent_id, "box": box},
    }
    internal = httpx.Client(
        transport=LoopTransport(inprocess.api_app, inprocess.loop), base_url=API_INTERNAL_URL
    )
    with internal:
        body = {"collection": collection, "full": points, "windows": [window]}
        assert internal.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
    r = client.get("/api/duplicates", params={"collection": collection, "tier": "contained"})
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == []
