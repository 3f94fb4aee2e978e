"""At-least-once delivery: a worker killed with SIGKILL mid-job loses nothing,
and the replay writes nothing twice."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis

from imgsearch_common.imaging import decode_image
from imgsearch_common.jobs import GROUP, STREAM
from imgsearch_common.windows import window_boxes
from imgsearch_devstack import LocalStack, wait_batch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _pending_of(r: redis.Redis, consumer: str) -> int:
    summary = r.xpending(STREAM, GROUP)
    for c in summary.get("consumers", []):
        name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
        if name == consumer:
            return int(c["pending"])
    return 0


def test_sigkill_mid_job_loses_nothing_and_duplicates_nothing(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "crash"
    folder.mkdir()
    # Distinct content from the other tests' photos: re-encode at another quality.
    for p in sorted(photos_dir.glob("*.jpg"))[:10]:
        img = decode_image(p.read_bytes())
        img.save(folder / p.name, quality=77)
    files = sorted(folder.iterdir())
    expected_windows = sum(len(window_boxes(*decode_image(p.read_bytes()).size)) for p in files)
    victim = stack.workers[0]
    r = redis.Redis.from_url(stack.redis_url)
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        batch = client.post("/api/index/folder", json={"path": str(folder), "collection": "crash"})
        assert batch.status_code == 202, batch.text
        batch_id = batch.json()["batch_id"]

        deadline = time.monotonic() + 120
        while _pending_of(r, "worker-0") == 0:
            assert time.monotonic() < deadline, "worker-0 never took a job"
            time.sleep(0.01)
        in_flight = _pending_of(r, "worker-0")
        victim.kill()  # SIGKILL: no cleanup, no acknowledgement
        assert in_flight > 0
        assert _pending_of(r, "worker-0") > 0, "the killed worker's jobs must stay pending"

        stack.workers.remove(victim)
        stack.start_worker(0)  # same consumer name, as after a restart

        status = wait_batch(client, batch_id, timeout=300)
        assert (status.done, status.failed) == (len(files), 0), status
        counts = client.get("/api/status").json()["collections"]["crash"]
    assert counts == {"full_images": len(files), "partial_images": expected_windows}
    assert _pending_of(r, "worker-0") == 0
    r.close()
    shutil.rmtree(folder)
