"""The index follows the library (issue 11, items 1-3), through the whole in-process stack
(real encoder with random weights, real Redis, workers, the Edge index): a re-queued
folder encodes only what changed (counted at the encoder), ``sync`` takes out what is gone
and follows what moved, one content at several paths is one image."""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgsearch_cli.args import parse_args
from imgsearch_cli.client import ApiClient
from imgsearch_cli.commands import COMMANDS
from imgsearch_common.ids import content_hash, image_id
from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import BatchStatus
from imgsearch_common.vectorstore import VectorStore, iter_points
from imgsearch_devstack import wait_batch
from tests.support.images import search_image
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

pytestmark = [pytest.mark.slow]

COUNTS = ("new", "changed", "unchanged", "moved", "removed")


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


@pytest.fixture
def collection() -> str:
    """A collection of this test's own (the in-process index lives for the session)."""
    return f"sync-{uuid.uuid4().hex[:10]}"


def encoded(inprocess: InProcessStack) -> float:
    """Images crops the encoder has encoded so far (its own metric)."""
    with inprocess.encoder_client() as encoder:
        text = encoder.get("/metrics").text
    match = re.search(r'^imgsearch_encoder_items_encoded_total\{kind="image"\} (\S+)$', text, re.M)
    assert match, text[:500]
    return float(match.group(1))


def queue(
    client: httpx.Client, folder: Path, collection: str, **body: Any
) -> tuple[dict[str, Any], BatchStatus]:
    """Queue ``folder``; the answer and the batch's status once it is finished."""
    r = client.post(
        "/api/index/folder", json={"path": str(folder), "collection": collection, **body}
    )
    assert r.status_code == 202, r.text
    answer = r.json()
    status = wait_batch(client, answer["batch_id"], timeout=300)
    assert status.failed == 0, status.errors
    assert {k: getattr(status, k) for k in COUNTS} == {k: answer[k] for k in COUNTS}
    return answer, status


def counts(answer: dict[str, Any]) -> dict[str, int]:
    return {k: answer[k] for k in (*COUNTS, "queued")}


def points(inprocess: InProcessStack, collection: str) -> dict[str, dict[str, Any]]:
    """Every image of ``collection``: its stored paths, sha256, window count and windows."""
    store: VectorStore = inprocess.api_app.state.resources.store

    async def read() -> dict[str, dict[str, Any]]:
        out = {}
        async for hit in iter_points(store, collection, "full"):
            payload = ImagePayload.read(hit.payload)
            assert payload is not None
            windows = await store.find(collection, "window", "parent_id", hit.id, 10_000)
            out[hit.id] = {
                "paths": payload.paths,
                "sha256": payload.sha256,
                "windows": payload.windows,
                "window_points": len(windows),
                "mtimes": [r.mtime_ns for r in payload.file_records()],
            }
        return out

    return inprocess.run(read())


def copy_photos(photos_dir: Path, folder: Path, names: dict[str, str]) -> dict[str, Path]:
    """``names``: file name in ``folder`` → photo stem in ``photos_dir``."""
    out = {}
    for name, stem in names.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photos_dir / f"{stem}.jpg", target)
        out[name] = target
    return out


def test_an_unchanged_folder_is_queued_again_without_encoding_anything(
    inprocess: InProcessStack,
    client: httpx.Client,
    photos_dir: Path,
    tmp_path: Path,
    collection: str,
) -> None:
    folder = tmp_path / "library"
    files = copy_photos(photos_dir, folder, {"a.jpg": "coffee", "b.jpg": "rocket", "c.jpg": "moon"})
    first, _ = queue(client, folder, collection)
    assert counts(first) == {**dict.fromkeys(COUNTS, 0), "new": 3, "queued": 3}
    before = points(inprocess, collection)
    assert len(before) == 3

    crops = encoded(inprocess)
    again, status = queue(client, folder, collection)
    assert counts(again) == {**dict.fromkeys(COUNTS, 0), "unchanged": 3, "queued": 0}
    assert (status.total, status.done, status.finished) == (0, 0, True)  # finished at once
    assert encoded(inprocess) == crops  # nothing decoded, nothing encoded
    assert points(inprocess, collection) == before

    # Touched (same bytes, another time): changed, queued, and only its record is updated.
    os.utime(files["b.jpg"], ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    touched, _ = queue(client, folder, collection)
    assert counts(touched) == {**dict.fromkeys(COUNTS, 0), "changed": 1, "unchanged": 2,
                               "queued": 1}  # fmt: skip
    assert encoded(inprocess) == crops
    after = points(inprocess, collection)
    b = image_id(content_hash(files["b.jpg"].read_bytes()))
    assert after[b]["mtimes"] == [1_600_000_000_000_000_000]
    assert {k: v for k, v in after.items() if k != b} == {k: v for k, v in before.items() if k != b}
    # And unchanged again.
    last, _ = queue(client, folder, collection)
    assert last["unchanged"] == 3 and last["queued"] == 0


def test_sync_after_delete_move_change_and_add(
    inprocess: InProcessStack,
    client: httpx.Client,
    photos_dir: Path,
    tmp_path: Path,
    collection: str,
) -> None:
    folder = tmp_path / "library"
    names = {"a.jpg": "coffee", "b.jpg": "rocket", "c.jpg": "moon", "d.jpg": "camera"}
    files = copy_photos(photos_dir, folder, names)
    ids = {n: image_id(content_hash(p.read_bytes())) for n, p in files.items()}
    queue(client, folder, collection, sync=True)
    indexed = points(inprocess, collection)
    assert set(indexed) == set(ids.values())
    assert all(p["window_points"] == p["windows"] > 0 for p in indexed.values())

    files["a.jpg"].unlink()  # deleted
    (folder / "sub").mkdir()
    files["b.jpg"].rename(folder / "sub" / "b2.jpg")  # moved
    shutil.copyfile(photos_dir / "chelsea.jpg", files["c.jpg"])  # changed
    shutil.copyfile(photos_dir / "astronaut.jpg", folder / "f.jpg")  # added
    new_c = image_id(content_hash(files["c.jpg"].read_bytes()))
    f = image_id(content_hash((folder / "f.jpg").read_bytes()))

    crops = encoded(inprocess)
    answer, _ = queue(client, folder, collection, sync=True)
    assert counts(answer) == {"new": 1, "changed": 1, "unchanged": 1, "moved": 1, "removed": 1,
                              "queued": 2}  # fmt: skip
    after = points(inprocess, collection)
    assert set(after) == {ids["b.jpg"], new_c, ids["d.jpg"], f}
    assert after[ids["b.jpg"]]["paths"] == [str(folder / "sub" / "b2.jpg")]
    assert after[new_c]["paths"] == [str(files["c.jpg"])]
    assert after[f]["paths"] == [str(folder / "f.jpg")]
    assert after[ids["d.jpg"]] == indexed[ids["d.jpg"]]
    assert after[ids["b.jpg"]]["window_points"] == indexed[ids["b.jpg"]]["window_points"]
    assert all(p["window_points"] == p["windows"] for p in after.values())
    # The moved file was not encoded again: only the changed and the added ones were.
    assert encoded(inprocess) - crops == (1 + after[new_c]["windows"]) + (1 + after[f]["windows"])
    # The deleted and the changed file's old images are gone, windows and all.
    store: VectorStore = inprocess.api_app.state.resources.store
    for gone in (ids["a.jpg"], ids["c.jpg"]):
        left = inprocess.run(store.find(collection, "window", "parent_id", gone, 10))
        assert left == []
        r = client.get(f"/api/image/{gone}", params={"collection": collection})
        assert r.status_code == 404
    status = client.get("/api/status").json()["collections"][collection]
    assert status == {
        "full_images": 4,
        "partial_images": sum(p["window_points"] for p in after.values()),
    }
    # Results never show a removed file: not even its own picture finds it.
    query = (photos_dir / "coffee.jpg").read_bytes()
    results = search_image(client, query, collection=collection, limit=10).json()["results"]
    assert results and ids["a.jpg"] not in {r["id"] for r in results}
    assert all(str(files["a.jpg"]) not in r["metadata"]["paths"] for r in results)
    # A second sync finds nothing to do.
    again, _ = queue(client, folder, collection, sync=True)
    assert counts(again) == {**dict.fromkeys(COUNTS, 0), "unchanged": 4, "queued": 0}


def test_one_content_at_two_paths_is_one_image_until_both_are_gone(
    inprocess: InProcessStack,
    client: httpx.Client,
    photos_dir: Path,
    tmp_path: Path,
    collection: str,
) -> None:
    folder = tmp_path / "library"
    files = copy_photos(
        photos_dir, folder, {"x.jpg": "coffee", "copies/x.jpg": "coffee", "y.jpg": "rocket"}
    )
    x = image_id(content_hash(files["x.jpg"].read_bytes()))
    answer, _ = queue(client, folder, collection)
    assert (answer["new"], answer["queued"]) == (3, 3)
    indexed = points(inprocess, collection)
    assert len(indexed) == 2
    both = sorted(str(files[name]) for name in ("x.jpg", "copies/x.jpg"))
    assert sorted(indexed[x]["paths"]) == both
    query = files["x.jpg"].read_bytes()
    [top, *_] = search_image(client, query, collection=collection, limit=2).json()["results"]
    assert top["id"] == x
    meta = top["metadata"]
    assert sorted(meta["paths"]) == sorted(indexed[x]["paths"])
    assert meta["original_path"] == meta["paths"][0]

    files["copies/x.jpg"].unlink()
    answer, _ = queue(client, folder, collection, sync=True)
    assert counts(answer) == {**dict.fromkeys(COUNTS, 0), "unchanged": 2, "removed": 1,
                              "queued": 0}  # fmt: skip
    kept = points(inprocess, collection)
    assert kept[x]["paths"] == [str(files["x.jpg"])]
    assert kept[x]["window_points"] == indexed[x]["window_points"]
    [top, *_] = search_image(client, query, collection=collection, limit=2).json()["results"]
    assert top["id"] == x and top["metadata"]["paths"] == [str(files["x.jpg"])]
    assert top["metadata"]["original_path"] == str(files["x.jpg"])
    assert client.get(top["image_url"]).content == query  # still served, from the other path

    files["x.jpg"].unlink()
    answer, _ = queue(client, folder, collection, sync=True)
    assert (answer["removed"], answer["unchanged"]) == (1, 1)
    y = image_id(content_hash(files["y.jpg"].read_bytes()))
    assert set(points(inprocess, collection)) == {y}
    assert client.get(f"/api/image/{x}", params={"collection": collection}).status_code == 404


def test_sync_of_an_emptied_folder_removes_everything_without_sync_it_is_400(
    inprocess: InProcessStack,
    client: httpx.Client,
    photos_dir: Path,
    tmp_path: Path,
    collection: str,
) -> None:
    folder = tmp_path / "library"
    files = copy_photos(photos_dir, folder, {"a.jpg": "moon", "keep.png.txt": "moon"})
    r = client.post("/api/index/folder", json={"path": str(folder), "collection": collection})
    assert r.status_code == 202 and r.json()["queued"] == 1
    wait_batch(client, r.json()["batch_id"], timeout=300)
    files["a.jpg"].unlink()
    r = client.post("/api/index/folder", json={"path": str(folder), "collection": collection})
    assert r.status_code == 400 and "no files" in r.json()["error"]["message"]
    answer, status = queue(client, folder, collection, sync=True)
    assert counts(answer) == {**dict.fromkeys(COUNTS, 0), "removed": 1, "queued": 0}
    assert status.finished and status.total == 0
    assert points(inprocess, collection) == {}


def test_points_from_before_file_records_are_adopted_by_their_folder(
    inprocess: InProcessStack,
    client: httpx.Client,
    photos_dir: Path,
    tmp_path: Path,
    collection: str,
) -> None:
    """A point written by an older worker (no ``files``, no ``paths``, no time): re-queued
    once (changed; the worker finds its content indexed and only records the file), it is
    then unchanged, and a sync can remove it."""
    folder = tmp_path / "library"
    files = copy_photos(photos_dir, folder, {"old.jpg": "moon"})
    queue(client, folder, collection)
    store: VectorStore = inprocess.api_app.state.resources.store
    old = image_id(content_hash(files["old.jpg"].read_bytes()))
    [hit] = inprocess.run(store.retrieve(collection, "full", [old]))
    legacy = {k: v for k, v in hit.payload.items() if k not in ("files", "paths")}
    assert inprocess.run(store.set_payload(collection, "full", old, legacy))

    crops = encoded(inprocess)
    answer, _ = queue(client, folder, collection)
    assert (answer["changed"], answer["queued"]) == (1, 1)
    assert encoded(inprocess) == crops
    assert points(inprocess, collection)[old]["paths"] == [str(files["old.jpg"])]
    assert queue(client, folder, collection)[0]["unchanged"] == 1
    # Legacy again, then the file deleted: the sync still finds and removes it.
    assert inprocess.run(store.set_payload(collection, "full", old, legacy))
    files["old.jpg"].unlink()
    answer, _ = queue(client, folder, collection, sync=True)
    assert answer["removed"] == 1
    assert points(inprocess, collection) == {}


def test_imgsearch_index_sync_prints_the_counts(
    inprocess: InProcessStack, photos_dir: Path, tmp_path: Path, collection: str
) -> None:
    folder = tmp_path / "library"
    files = copy_photos(photos_dir, folder, {"a.jpg": "moon", "b.jpg": "coffee"})
    transport = LoopTransport(inprocess.api_app, inprocess.loop)

    def run(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        args = parse_args(["index", *argv, "--collection", collection])
        with ApiClient(API_URL, transport=transport) as api:
            code = COMMANDS["index"](api, args, out, err)
        return code, out.getvalue()

    code, text = run(str(folder))
    assert code == 0 and "2 new, 0 changed, 0 unchanged" in text, text
    files["a.jpg"].unlink()
    code, text = run(str(folder), "--sync")
    assert code == 0, text
    assert "0 files queued" in text
    assert "0 new, 0 changed, 1 unchanged, 0 moved, 1 removed" in text
