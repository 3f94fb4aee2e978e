"""Model versions (issue 11, item 6): a collection records the model that filled it, other
models' searches, queues and writes are refused with 409, and a reindex moves a collection
to a new physical one while searches keep answering, then switches with no failed search.

Through the in-process stack: the real encoder (random weights), search API, Edge index,
Redis and worker loops.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgsearch_common.catalog import ModelRecord
from imgsearch_devstack import wait_batch
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.images import search_image
from tests.support.inprocess import InProcessStack

pytestmark = [pytest.mark.slow]
OTHER_MODEL = ModelRecord(
    model="ViT-L-14", pretrained="openai", image_size=224, dim=512, fingerprint="f" * 32
)


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


def _store(inprocess: InProcessStack) -> Any:
    return inprocess.api_app.state.resources.store


def _index(client: httpx.Client, folder: Path, collection: str) -> None:
    r = client.post("/api/index/folder", json={"path": str(folder), "collection": collection})
    assert r.status_code == 202, r.text
    status = wait_batch(client, r.json()["batch_id"])
    assert (status.failed, status.pending) == (0, 0), status


@pytest.fixture(scope="module")
def four_photos(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reindex-photos")
    for path in sorted(photos_dir.iterdir())[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def test_the_first_write_records_the_model_and_health_names_it(
    client: httpx.Client, inprocess: InProcessStack, four_photos: Path
) -> None:
    _index(client, four_photos, "recorded")
    encoder = inprocess.encoder_client().get("/health").json()
    record = inprocess.run(_store(inprocess).get_record("recorded"))
    model = ModelRecord.of_record(record)
    assert model is not None and model.fingerprint == encoder["fingerprint"]
    assert (model.model, model.dim) == (encoder["model"], encoder["dim"])
    listed = {c["name"]: c for c in client.get("/api/collections").json()["collections"]}
    assert listed["recorded"]["model"]["fingerprint"] == encoder["fingerprint"]


def test_another_models_collection_is_refused_with_409(
    client: httpx.Client, inprocess: InProcessStack, four_photos: Path
) -> None:
    """Searches, queue requests and writes made with this encoder, into a collection that
    another model filled: 409 ``model_mismatch`` naming both models; nothing is written."""
    store = _store(inprocess)
    point = image_point("66666666-0000-0000-0000-000000000001", four_photos / "x.png", "foreign")
    r = client.post(UPSERT_URL, json={"collection": "foreign", "full": [point]}, headers=AUTH)
    assert r.status_code == 200, r.text  # a writer from before fingerprints: not checked
    inprocess.run(store.put_record("foreign", OTHER_MODEL.record()))

    answers = [
        client.post("/api/search/by-text", json={"text": "a cat", "collection": "foreign"}),
        client.post("/api/index/folder", json={"path": str(four_photos), "collection": "foreign"}),
    ]
    encoder = inprocess.encoder_client().get("/health").json()
    ours = {k: encoder[k] for k in ("model", "pretrained", "image_size", "dim", "fingerprint")}
    answers.append(
        client.post(
            UPSERT_URL,
            json={"collection": "foreign", "full": [point], "model": ours},
            headers=AUTH,
        )
    )
    for r in answers:
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "model_mismatch"
        assert "ViT-L-14" in error["message"] and encoder["model"] in error["message"]
        assert "reindex" in error["message"]
    assert inprocess.run(store.count("foreign", "full")) == 1

    # A job that reached the queue anyway (queued before the record, or by an older API):
    # the worker's write is refused, and the job is a dead letter, not retried for ever.
    photo = sorted(four_photos.iterdir())[1]
    queue = inprocess.api_app.state.resources.queue
    batch_id, _ = inprocess.run(queue.create_batch("foreign", [(str(photo), "folder", photo.name)]))
    status = wait_batch(client, batch_id)
    assert (status.done, status.failed) == (0, 1), status
    assert [e.reason for e in status.errors] == ["model_mismatch"]
    assert "ViT-L-14" in status.errors[0].message
    assert inprocess.run(store.count("foreign", "full")) == 1


def test_a_reindex_switches_with_no_failed_search(
    client: httpx.Client, inprocess: InProcessStack, four_photos: Path
) -> None:
    _index(client, four_photos, "moving")
    store = _store(inprocess)
    query = sorted(four_photos.iterdir())[0].read_bytes()
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def search_loop() -> None:
        with inprocess.client() as searcher:
            while not stop.is_set():
                r = search_image(searcher, query, collection="moving", use_partial_matching=False)
                answered[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                elif not r.json()["results"] or r.json()["results"][0]["score"] < 0.99:
                    failures.append(f"the photo did not come back first: {r.text[:300]}")

    thread = threading.Thread(target=search_loop, daemon=True)
    thread.start()
    try:
        r = client.post("/api/collections/moving/reindex")
        assert r.status_code == 202, r.text
        started = r.json()
        assert (started["source"], started["target"]) == ("moving.r0", "moving.r1")
        again = client.post("/api/collections/moving/reindex")
        assert again.status_code == 409 and again.json()["error"]["code"] == "reindex_running"
        deadline = time.monotonic() + 240
        while True:
            status = client.get("/api/collections/moving/reindex").json()
            if status["state"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # searches after the switch too
    finally:
        stop.set()
        thread.join(60)
    assert status["state"] == "done", status
    assert (status["queued"], status["done"], status["failed"]) == (4, 4, 0)
    # The page's batch list says what the batch is.
    batch = client.get(f"/api/index/batches/{status['batch_id']}").json()
    assert batch["label"] == "reindex of moving"
    assert failures == [] and answered[0] >= 3, (failures[:3], answered[0])
    assert inprocess.run(store.resolve("moving")) == "moving.r1"
    names = [c["name"] for c in client.get("/api/collections").json()["collections"]]
    assert "moving" in names and not [n for n in names if n.startswith("moving.")]
    assert inprocess.run(store.count("moving", "full")) == 4
    assert inprocess.run(store.get_record("moving.r1")) is not None

    # Once more: the next revision, and the previous one is dropped.
    r = client.post("/api/collections/moving/reindex")
    assert r.status_code == 202 and r.json()["target"] == "moving.r2"
    inprocess.run(inprocess.api_app.state.resources.reindexer.wait("moving"), timeout=240)
    assert client.get("/api/collections/moving/reindex").json()["state"] == "done"
    assert inprocess.run(store.resolve("moving")) == "moving.r2"
    assert inprocess.run(store.count("moving.r1", "full")) == 0
    assert inprocess.run(store.count("moving", "full")) == 4


def test_reindex_requests_are_checked(client: httpx.Client) -> None:
    assert client.post("/api/collections/no-such-one/reindex").status_code == 404
    assert client.post("/api/collections/bad.name/reindex").status_code in (400, 404)
    missing = client.get("/api/collections/never-reindexed/reindex")
    assert missing.status_code == 404
    # A name that is no collection is said to be none (the message names those there are).
    assert missing.json()["error"]["code"] == "collection_not_found"
    assert "never-reindexed" in missing.json()["error"]["message"]
    # A collection that exists but was never reindexed: no reindex to report.
    never = client.get("/api/collections/default/reindex")
    assert never.status_code == 404 and never.json()["error"]["code"] == "not_found"
