"""Ports of the local stack: a taken internal port (Redis, encoder, workers) is replaced by
a free one and logged (``make run``), or named in a clear error; a taken API port is
always a clear error, and ``make run`` exits with it (no traceback)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearch_devstack import LocalStack, PortInUse, StackConfig, free_port, port_in_use


@pytest.fixture
def taken() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use_sees_a_listener_and_not_a_free_port(taken: int) -> None:
    assert port_in_use(taken)
    assert not port_in_use(free_port())


def test_a_taken_api_port_is_a_clear_error_before_anything_starts(
    taken: int, tmp_path: Path
) -> None:
    config = dataclasses.replace(StackConfig.on_free_ports(tmp_path), api_port=taken)
    stack = LocalStack(config)
    with pytest.raises(PortInUse, match=f"port {taken} \\(API_PORT.*already in use"):
        stack.check_ports()
    with pytest.raises(PortInUse):
        stack.start()
    assert list(stack.procs()) == []


def test_taken_internal_ports_are_replaced_and_logged_with_fallback(
    taken: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_devstack")
    config = dataclasses.replace(
        StackConfig.on_free_ports(tmp_path, workers=2),
        redis_port=taken,
        encoder_port=taken,
        worker_base_port=taken,
        port_fallback=True,
    )
    stack = LocalStack(config)
    stack.check_ports()
    chosen = (stack.config.redis_port, stack.config.encoder_port, *stack._worker_ports.values())
    assert taken not in chosen and len(chosen) == 4
    assert stack.redis_url.endswith(f":{stack.config.redis_port}/0")
    assert stack.env()["ENCODER_URL"].endswith(f":{stack.config.encoder_port}")
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"port {taken} (REDIS_PORT) is taken by another program: Redis" in m for m in messages
    )
    assert any(f"port {taken} (ENCODER_PORT)" in m for m in messages)


def test_without_fallback_a_taken_internal_port_is_named(taken: int, tmp_path: Path) -> None:
    config = dataclasses.replace(StackConfig.on_free_ports(tmp_path), redis_port=taken)
    with pytest.raises(PortInUse, match=f"port {taken} \\(REDIS_PORT, Redis\\)"):
        LocalStack(config).check_ports()


def test_make_run_with_the_api_port_taken_exits_with_a_message(taken: int, tmp_path: Path) -> None:
    env = {**os.environ, "API_PORT": str(taken), "DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "imgsearch_devstack"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"error: port {taken} (API_PORT, the web page and REST API) is already in use" in (
        done.stderr
    )
    assert "API_PORT=" in done.stderr  # what to do about it
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "logs").exists()  # nothing was started
