"""Transient failures are retried with backoff, a bounded number of times, then
dead-lettered with the reason; once the encoder is back, the same image indexes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from imgsearch_devstack import LocalStack, wait_batch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_encoder_outage_is_retried_then_dead_lettered_then_recovered(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "outage"
    folder.mkdir()
    (folder / "clock.jpg").write_bytes((photos_dir / "clock.jpg").read_bytes())
    assert stack.encoder is not None
    stack.encoder.stop()
    try:
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            started = time.monotonic()
            r = client.post("/api/index/folder", json={"path": str(folder), "collection": "outage"})
            assert r.status_code == 202, r.text
            status = wait_batch(client, r.json()["batch_id"], timeout=120)
            elapsed = time.monotonic() - started
            assert (status.done, status.failed) == (0, 1)
            (error,) = status.errors
            assert error.reason == "retries_exhausted"
            assert "upstream_unavailable" in error.message
            # MAX_ATTEMPTS=6 with RETRY_BASE_S=0.2: waits of 0.2+0.4+0.8+1.6+3.2 s at least.
            assert elapsed >= 6.0
    finally:
        stack.start_encoder()
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": "outage"})
        status = wait_batch(client, r.json()["batch_id"], timeout=120)
        assert (status.done, status.failed) == (1, 0)
        counts = client.get("/api/status").json()["collections"]["outage"]
        assert counts["full_images"] == 1
