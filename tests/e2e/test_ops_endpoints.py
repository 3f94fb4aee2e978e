"""Every service exposes /health and Prometheus /metrics; workers stop cleanly."""

from __future__ import annotations

import signal

import httpx
import pytest

from imgsearch_devstack import LocalStack, free_port, start_service

pytestmark = [pytest.mark.e2e]


def test_api_and_encoder_health_and_metrics(stack: LocalStack) -> None:
    health = httpx.get(f"{stack.api_url}/health").json()
    # The original system's fields (its word for it: healthy), and our checks.
    assert health["status"] == "healthy"
    assert health["qdrant_connected"] is True
    # From the encoder's own answer (true where its model runs on CUDA).
    gpu = httpx.get(f"{stack.encoder_url}/health").json()["device"].startswith("cuda")
    assert health["gpu_available"] is gpu
    assert set(health["collections"]) == {"full_images", "partial_images"}
    assert health["checks"]["redis"] == "ok"
    assert health["checks"]["encoder"].startswith("ok (ViT-B-32/random")
    assert health["checks"]["vector_store"] == "ok (EdgeVectorStore)"
    metrics = httpx.get(f"{stack.api_url}/metrics").text
    assert "imgsearch_api_requests_total" in metrics
    enc = httpx.get(f"{stack.encoder_url}/health").json()
    assert (enc["model"], enc["pretrained"], enc["dim"], enc["image_size"]) == (
        "ViT-B-32",
        "random",
        512,
        224,
    )
    assert enc["gpu_available"] is (enc["device"].startswith("cuda"))
    assert "# TYPE" in httpx.get(f"{stack.encoder_url}/metrics").text


def test_worker_health_metrics_and_clean_stop(stack: LocalStack) -> None:
    port = free_port()
    env = stack.env(WORKER_NAME="probe-worker", WORKER_PORT=str(port))
    proc = start_service(
        "probe-worker",
        "imgsearch_worker",
        env,
        f"http://127.0.0.1:{port}/health",
        log_dir=stack.log_dir,
        timeout=120,
    )
    try:
        health = httpx.get(proc.url).json()
        assert health["status"] == "ok" and health["worker"] == "probe-worker"
        assert health["breaker"] == "closed"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "imgsearch_worker_jobs_total" in metrics
        assert httpx.get(f"http://127.0.0.1:{port}/nope").status_code == 404
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(30) == 0
    finally:
        proc.stop()
