"""Session fixtures: a real redis-server, the real services in this process
(``inprocess``) and as processes (``stack``, for the end-to-end tests in ``tests/e2e``).

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
from tests.support.inprocess import WORKER_ENV, InProcessStack

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
def inprocess(
    redis_server: Proc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessStack]:
    """Encoder, search API (Edge shard in a temporary folder) and two worker loops, in this
    process, on Redis database 1 of the session's server (tests of the queue flush 0)."""
    with InProcessStack(tmp_path_factory.mktemp("inprocess"), redis_server.url[:-1] + "1") as s:
        yield s


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack: redis, encoder, search API, two workers (no API key)."""
    data_dir = tmp_path_factory.mktemp("stack")
    # The worker settings of the in-process stack (a killed worker's jobs are taken over
    # after 3 s instead of minutes), as environment variables.
    workers_env = {name.upper(): str(value) for name, value in WORKER_ENV.items()}
    config = StackConfig.on_free_ports(data_dir, workers=2, extra_env={**TEST_ENV, **workers_env})
    with LocalStack(config) as running:
        yield running
    if os.environ.get("KEEP_STACK_LOGS"):
        print(f"stack logs in {data_dir / 'logs'}")


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgsearch_devstack.photos import write_photos

    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder)
    return folder
