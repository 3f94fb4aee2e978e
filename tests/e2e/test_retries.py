"""An encoder outage is waited out: a job is not dead-lettered inside the retry window
(``RETRY_WINDOW_S``), and once the encoder is back the same image indexes, once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from imgsearch_common.schemas import BatchStatus
from imgsearch_devstack import LocalStack, wait_batch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Longer than the old budget: MAX_ATTEMPTS=6 with the stack's RETRY_BASE_S=0.2 waited
#: 0.2+0.4+0.8+1.6+3.2 s (plus up to a maintenance round each), then dead-lettered.
OUTAGE_S = 10.0


def test_encoder_outage_longer_than_the_old_budget_is_waited_out(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "outage"
    folder.mkdir()
    (folder / "clock.jpg").write_bytes((photos_dir / "clock.jpg").read_bytes())
    assert stack.encoder is not None
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        full_before = _full_points_upserted(client)
    stack.encoder.stop()
    try:
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            r = client.post("/api/index/folder", json={"path": str(folder), "collection": "outage"})
            assert r.status_code == 202, r.text
            batch_id = r.json()["batch_id"]
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:
                status = BatchStatus.model_validate(
                    client.get(f"/api/index/batches/{batch_id}").json()
                )
                assert (status.failed, status.finished) == (0, False), status.errors
                time.sleep(0.5)
            dead = client.get("/api/index/dead-letters").json()["dead_letters"]
            assert all(d["job"].get("batch_id") != batch_id for d in dead)
    finally:
        stack.start_encoder()
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        status = wait_batch(client, batch_id, timeout=120)
        assert (status.done, status.failed) == (1, 0)
        counts = client.get("/api/status").json()["collections"]["outage"]
        assert counts["full_images"] == 1
        # Indexed once: one full-image point went through the hand-off, not several.
        assert _full_points_upserted(client) == full_before + 1


def _full_points_upserted(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('imgsearch_api_points_upserted_total{kind="full"}'):
            return float(line.split()[-1])
    return 0.0
