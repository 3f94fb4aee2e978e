"""Session fixtures: a real redis-server, the real services as processes.

Nothing of ours is mocked. The encoder runs with ``CLIP_PRETRAINED=random``
(seeded random weights: the machines here cannot download weights), which keeps
near-duplicate and crop retrieval meaningful but not semantic.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearch_devstack import LocalStack, Proc, StackConfig, free_port, start_redis

TEST_ENV = {
    "CLIP_MODEL": "ViT-B-32",
    "CLIP_PRETRAINED": "random",
    "LOG_LEVEL": "INFO",
    "TORCH_THREADS": "2",
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required for the tests (apt-get install redis-server)")
    proc = start_redis(tmp_path_factory.mktemp("redis"), free_port())
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack: redis, encoder, search API, two workers (no API key)."""
    data_dir = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        data_dir=data_dir,
        api_port=free_port(),
        encoder_port=free_port(),
        redis_port=free_port(),
        workers=2,
        worker_base_port=0,
        extra_env={
            **TEST_ENV,
            # A killed worker's jobs are taken over after 3 s instead of minutes.
            "CLAIM_IDLE_MS": "3000",
            "MAINTENANCE_INTERVAL_S": "0.5",
            "RETRY_BASE_S": "0.2",
        },
    )
    with LocalStack(config) as running:
        yield running
    if os.environ.get("KEEP_STACK_LOGS"):
        print(f"stack logs in {data_dir / 'logs'}")


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.photos import write_photos

    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder)
    return folder
