"""Bad files in a folder are dead-lettered with the reason; the rest is indexed. Dead
letters can be requeued (the API's route, the CLI's ``requeue``) and then index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from imgsearch_cli.__main__ import main as cli_main
from imgsearch_common.imaging import decode_image
from imgsearch_common.jobs import JobQueue
from imgsearch_common.schemas import RequeueResult
from imgsearch_devstack import LocalStack, wait_batch
from tests.support.images import png_bomb

pytestmark = [pytest.mark.e2e]


def test_bad_files_are_dead_lettered_with_reason(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = (photos_dir / "coins.jpg").read_bytes()
    (folder / "good.jpg").write_bytes(good)
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.png").write_bytes(b"this is not an image at all")
    (folder / "empty.webp").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bomb(30_000, 30_000))
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": "mixed"})
        assert r.status_code == 202, r.text
        status = wait_batch(client, r.json()["batch_id"], timeout=120)
        assert (status.total, status.done, status.failed) == (5, 1, 4)
        reasons = {e.path: e.reason for e in status.errors}
        assert reasons == {
            "truncated.jpg": "corrupt_image",
            "notes.png": "unsupported_image",
            "empty.webp": "empty_input",
            "bomb.png": "image_too_large",
        }
        dead = client.get("/api/index/dead-letters").json()["dead_letters"]
        reasons_dead = {d["reason"] for d in dead}
        assert reasons_dead >= {"corrupt_image", "unsupported_image", "image_too_large"}


def _dead_letter_one(stack: LocalStack, path: Path, collection: str) -> None:
    """A real dead letter of a transient failure, made by the queue's own calls on a
    stream of its own that no worker reads; and a malformed entry's dead letter."""

    async def run() -> None:
        redis = Redis.from_url(stack.redis_url)
        queue = JobQueue(redis, stream="imgsearch:test-requeue")
        try:
            await queue.create_batch(collection, [(str(path), "folder", path.name)])
            (delivery,) = await queue.read("test", count=1, block_ms=1000)
            message = "upstream_unavailable: encoder unreachable (ConnectError)"
            await queue.fail(delivery, "retries_exhausted", message)
            await redis.xadd(queue.stream, {"job_id": f"malformed-{collection}"})
            assert await queue.read("test", count=1, block_ms=1000) == []
        finally:
            await redis.aclose()

    asyncio.run(run())


def test_dead_letters_are_requeued_and_indexed(
    stack: LocalStack, photos_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "requeue"
    folder.mkdir()
    image = decode_image((photos_dir / "coffee.jpg").read_bytes())
    image.save(folder / "api.jpg", quality=81)  # content of its own
    image.save(folder / "cli.jpg", quality=83)
    _dead_letter_one(stack, folder / "api.jpg", "requeue-api")
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        for bad in ({"limit": 0}, {"reasons": []}, {"reasons": "retries_exhausted"}):
            r = client.post("/api/index/dead-letters/requeue", json=bad)
            assert r.status_code == 422, (bad, r.text)
        r = client.post("/api/index/dead-letters/requeue", json={"reasons": ["retries_exhausted"]})
        assert r.status_code == 200, r.text
        body = RequeueResult.model_validate(r.json())
        assert body.requeued >= 1
        (ours,) = [b for b in body.batches if b.collection == "requeue-api"]
        status = wait_batch(client, ours.batch_id, timeout=120)
        assert (status.total, status.done, status.failed) == (1, 1, 0)

        _dead_letter_one(stack, folder / "cli.jpg", "requeue-cli")
        assert cli_main(["--api", stack.api_url, "requeue", "--reason", "retries_exhausted"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("requeued ")
        (line,) = [x for x in out.splitlines() if x.endswith("in collection requeue-cli")]
        status = wait_batch(client, line.split()[1].rstrip(":"), timeout=120)
        assert (status.total, status.done, status.failed) == (1, 1, 0)

        counts = client.get("/api/status").json()["collections"]
        assert counts["requeue-api"]["full_images"] == counts["requeue-cli"]["full_images"] == 1
        # Malformed entries are not jobs: their dead letters stay where they are.
        dead = client.get("/api/index/dead-letters", params={"count": 1000}).json()
        left = {d["job"].get("job_id") for d in dead["dead_letters"]}
        assert {"malformed-requeue-api", "malformed-requeue-cli"} <= left
