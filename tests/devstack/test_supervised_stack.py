"""``make run``'s stack under supervision: a worker and the encoder killed with SIGKILL
come back by themselves (new processes, counted and logged) and the stack indexes a
folder afterwards. The encoder's usual port is taken by another program: the stack
picks a free one and everything is wired to it."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from imgsearch_devstack import LocalStack, Proc, RestartPolicy, StackConfig, free_port, wait_batch
from tests.conftest import TEST_ENV
from tests.support.inprocess import WORKER_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _until(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _came_back(proc: Proc, old_pid: int) -> Callable[[], bool]:
    return lambda: proc.pid != old_pid and proc.alive() and proc.ready()


@pytest.fixture(scope="module")
def encoder_port_taken() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def supervised(
    tmp_path_factory: pytest.TempPathFactory, encoder_port_taken: int
) -> Iterator[LocalStack]:
    env = {
        **TEST_ENV,
        **{name.upper(): str(value) for name, value in WORKER_ENV.items()},
        "INDEX_ROOTS": str(tmp_path_factory.getbasetemp()),
    }
    config = dataclasses.replace(
        StackConfig.on_free_ports(
            tmp_path_factory.mktemp("supervised"),
            workers=1,
            worker_base_port=free_port(),  # a /health to wait for after a restart
            extra_env=env,
        ),
        encoder_port=encoder_port_taken,
        port_fallback=True,
        supervise=True,
        restart_policy=RestartPolicy(base_s=0.2, max_s=2.0),
    )
    with LocalStack(config) as stack:
        yield stack


def test_killed_worker_and_encoder_come_back_and_the_stack_indexes(
    supervised: LocalStack,
    encoder_port_taken: int,
    photos_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_devstack")
    stack = supervised
    assert stack.config.encoder_port != encoder_port_taken
    assert stack.supervisor is not None and stack.supervisor.running
    worker, encoder = stack.workers[0], stack.encoder
    assert encoder is not None

    old = worker.pid
    worker.kill()  # SIGKILL, as in a crash
    _until(_came_back(worker, old), "worker-0 was not restarted")
    old = encoder.pid
    encoder.kill()
    _until(_came_back(encoder, old), "the encoder was not restarted")
    assert stack.supervisor.restarts == {"worker-0": 1, "encoder": 1}
    crashes = [r.getMessage() for r in caplog.records if "restarting it in" in r.getMessage()]
    assert [m.split(" ")[0] for m in crashes] == ["worker-0", "encoder"]
    assert all("(killed by SIGKILL)" in m for m in crashes)

    folder = tmp_path / "after-restarts"
    folder.mkdir()
    for name in ("astronaut.jpg", "rocket.jpg", "coffee.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": "sup"})
        assert r.status_code == 202, r.text
        status = wait_batch(client, r.json()["batch_id"], timeout=300)
        assert (status.done, status.failed) == (3, 0), status
        counts = client.get("/api/status").json()["collections"]["sup"]
    assert counts["full_images"] == 3
