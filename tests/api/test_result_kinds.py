"""Each result says what it is to its query (``kind``) and carries the one box a page draws
(``best_box``): through the in-process stack (the real encoder app with random weights,
the search API's Edge shard, the workers), on real photos. The rule and its measurements:
``imgsearch_api.search.kinds``."""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skimage.data
from PIL import Image

from imgsearch_api.search.aggregation import ContainsMatch, RankedImage, WindowMatch
from imgsearch_api.search.kinds import TEXT_REGION_GAIN, result_kind
from imgsearch_common.imaging import decode_image
from imgsearch_common.windows import box_iou
from imgsearch_devstack import wait_batch
from tests.support.images import jpeg_bytes, search_image
from tests.support.inprocess import InProcessStack

COLLECTION = "kinds"
INDEXED = ("astronaut", "chelsea", "coffee", "rocket", "china", "hubble_deep_field", "coins")


# --- the rule, on exact numbers -------------------------------------------------------------


def _windows(score: float, box: tuple[int, int, int, int], verified: bool) -> WindowMatch:
    return WindowMatch("a", score, score, score, 1, [(box, score)], verified)


def test_same_draws_the_whole_image_with_the_full_score() -> None:
    r = RankedImage("a", 1.0, 1.0, _windows(0.9944, (0, 0, 300, 300), False))
    kind, box = result_kind(r, (512, 400), same=True, text_query=False)
    assert kind == "same"
    assert box is not None and (box.box, box.score) == ([0, 0, 512, 400], 1.0)
    # Not the same picture: the full score won, no region did: nothing to outline.
    assert result_kind(r, (512, 400), same=False, text_query=False) == ("similar", None)


def test_a_region_counts_when_it_beat_the_image_and_the_pixels_agree() -> None:
    verified = RankedImage("a", 0.97, 0.80, _windows(0.97, (10, 20, 110, 90), True))
    kind, box = result_kind(verified, (512, 400), same=False, text_query=False)
    assert kind == "contains_query" and box is not None and box.box == [10, 20, 110, 90]
    unverified = RankedImage("a", 0.97, 0.80, _windows(0.97, (10, 20, 110, 90), False))
    assert result_kind(unverified, (512, 400), same=False, text_query=False) == ("similar", None)
    # A text query has no pixels: the region must reach TEXT_REGION_MIN and beat the image
    # by TEXT_REGION_GAIN.
    assert result_kind(unverified, (512, 400), same=False, text_query=True)[0] == "contains_query"
    noise = RankedImage("a", 0.027, -0.03, _windows(0.027, (10, 20, 110, 90), False))
    assert result_kind(noise, (512, 400), same=False, text_query=True) == ("similar", None)
    small_gain = RankedImage("a", 0.31, 0.30, _windows(0.31, (10, 20, 110, 90), False))
    assert result_kind(small_gain, (512, 400), same=False, text_query=True) == ("similar", None)
    edge = 0.30 + TEXT_REGION_GAIN + 0.001
    barely = RankedImage("a", edge, 0.30, _windows(edge, (10, 20, 110, 90), False))
    assert result_kind(barely, (512, 400), same=False, text_query=True)[0] == "contains_query"
    # The whole image is no region.
    whole = RankedImage("a", 0.97, 0.80, _windows(0.97, (0, 0, 512, 400), True))
    assert result_kind(whole, (512, 400), same=False, text_query=True) == ("similar", None)


def test_a_contains_match_is_in_the_query_only_when_found_in_its_pixels() -> None:
    found = ContainsMatch("a", 0.95, (0, 0, 50, 50), (100, 80, 400, 320), (0, 0, 512, 400), True)
    r = RankedImage("a", 0.95, 0.7, None, found)
    kind, box = result_kind(r, (512, 400), same=False, text_query=False)
    assert kind == "in_query" and box is not None and box.box == [0, 0, 512, 400]
    unfound = RankedImage("a", 0.95, 0.7, None, dataclasses.replace(found, verified=False))
    assert result_kind(unfound, (512, 400), same=False, text_query=False) == ("similar", None)


# --- through the stack ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


@pytest.fixture(scope="module")
def indexed(
    client: httpx.Client, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kinds")
    for name in INDEXED:
        (folder / f"{name}.jpg").write_bytes((photos_dir / f"{name}.jpg").read_bytes())
    r = client.post("/api/index/folder", json={"path": str(folder), "collection": COLLECTION})
    assert r.status_code == 202, r.text
    status = wait_batch(client, r.json()["batch_id"])
    assert (status.done, status.failed) == (len(INDEXED), 0), status
    return {name: folder / f"{name}.jpg" for name in INDEXED}


def _search(client: httpx.Client, data: bytes, **form: object) -> list[dict[str, object]]:
    r = search_image(client, data, collection=COLLECTION, limit=len(INDEXED), **form)
    assert r.status_code == 200, r.text
    results: list[dict[str, object]] = r.json()["results"]
    return results


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_the_same_photo_comes_first_as_same_with_the_whole_image_outlined(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    for name in ("astronaut", "coffee", "hubble_deep_field"):
        img = decode_image(indexed[name].read_bytes())
        half = img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)
        copies = {
            "the file": indexed[name].read_bytes(),
            "jpeg q85": jpeg_bytes(img, 85),
            "half size": jpeg_bytes(half, 90),
            "png": _png(img),
        }
        for how, data in copies.items():
            results = _search(client, data)
            top = results[0]
            assert top["metadata"]["filename"] == indexed[name].name, (name, how)  # type: ignore[index]
            assert top["kind"] == "same", (name, how, top)
            assert top["best_box"] == {"box": [0, 0, *img.size], "score": top["full_score"]}
            others = [x["kind"] for x in results[1:]]
            assert "same" not in others, (name, how, others)
            assert top["thumbnail_url"] == (
                f"/api/image/{top['id']}/thumbnail?size=256&collection={COLLECTION}"
            )


@pytest.mark.slow
def test_a_crop_finds_its_parent_which_contains_the_query_where_it_was_cut(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    rng = random.Random(12)
    failures = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "china"):
        img = decode_image(indexed[name].read_bytes())
        w, h = img.size
        cw, ch = round(w * 0.387), round(h * 0.387)  # 15 % of the area
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        cut = (x0, y0, x0 + cw, y0 + ch)
        results = _search(client, jpeg_bytes(img.crop(cut), 90))
        top = results[0]
        if top["metadata"]["filename"] != indexed[name].name:  # type: ignore[index]
            failures.append((name, "parent not first"))
            continue
        if top["kind"] != "contains_query" or top["best_box"] is None:
            failures.append((name, top["kind"], top["best_box"]))
            continue
        box = tuple(top["best_box"]["box"])  # type: ignore[index]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        inside = cut[0] <= cx <= cut[2] and cut[1] <= cy <= cut[3]
        if not (box_iou(box, cut) > 0.3 or inside):
            failures.append((name, "box", box, cut))
        assert top["best_box"] == top["matched_boxes"][0]  # type: ignore[index]
        assert all(x["kind"] != "same" for x in results), name
    assert not failures, failures


@pytest.mark.slow
def test_a_photo_pasted_in_a_collage_is_in_the_query(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    failures = []
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        img = decode_image(indexed[name].read_bytes())
        canvas = Image.new("RGB", (1200, 800), (236, 238, 242))
        scale = 420 / max(img.size)
        pasted = img.resize((round(img.width * scale), round(img.height * scale)))
        canvas.paste(pasted, (100 + 300 * i, 120 + 100 * i))
        results = _search(client, jpeg_bytes(canvas, 85), match_mode="contains")
        top = results[0]
        if top["metadata"]["filename"] != indexed[name].name:  # type: ignore[index]
            failures.append((name, "not first"))
            continue
        if (top["match_type"], top["kind"]) != ("contains", "in_query"):
            failures.append((name, top["match_type"], top["kind"]))
            continue
        assert top["best_box"] == top["matched_boxes"][0]  # type: ignore[index]
        assert top["query_box"] is not None
    assert not failures, failures


@pytest.mark.slow
def test_an_unrelated_photo_gets_similar_results_with_nothing_outlined(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    unrelated = {
        "motorcycle": Image.fromarray(np.asarray(skimage.data.stereo_motorcycle()[0])),
        "immunohistochemistry": Image.fromarray(skimage.data.immunohistochemistry()),
    }
    for name, img in unrelated.items():
        for mode in ("region", "auto"):
            results = _search(client, jpeg_bytes(img, 90), match_mode=mode)
            assert results, name
            kinds = [(x["kind"], x["best_box"]) for x in results]
            assert kinds == [("similar", None)] * len(results), (name, mode, kinds)
            # What matched is still listed (the detail view shows it).
            assert any(x["matched_boxes"] for x in results)


@pytest.mark.slow
def test_text_results_are_never_the_same_image(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    r = client.post(
        "/api/search/by-text", json={"text": "an astronaut", "collection": COLLECTION, "limit": 7}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results
    for x in results:
        # Random weights: text scores are noise near 0, and no region wins by a real margin,
        # so nothing is outlined (every result used to be "contains your query").
        assert x["kind"] == "similar", (x["full_score"], x["partial_score"], x["best_box"])
        if x["kind"] == "contains_query":
            assert x["best_box"] == x["matched_boxes"][0]
        else:
            assert x["best_box"] is None
