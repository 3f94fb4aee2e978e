"""The supervisor of ``make run``: a child that exits is started again, with a delay that
doubles up to its cap; one that keeps crashing at once gets one clear message and is
still restarted; a stopped supervisor restarts nothing. Small real child processes."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgsearch_devstack import Proc, RestartPolicy, Supervisor, spawn

FAST = RestartPolicy(base_s=0.05, max_s=0.4, stable_s=30.0, burst=5, window_s=60.0, poll_s=0.02)


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def children() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        proc.stop(timeout=5)


def _python(name: str, code: str, log_dir: Path) -> Proc:
    return spawn(name, [sys.executable, "-c", code], {}, "", log_dir)


def test_a_killed_child_is_started_again_and_counted(
    children: list[Proc], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_devstack")
    sleeper = _python(
        "sleeper", "print('sleeping', flush=True); import time; time.sleep(600)", tmp_path
    )
    children.append(sleeper)
    supervisor = Supervisor(lambda: children, FAST).start()
    try:
        first = sleeper.pid
        _until(lambda: "sleeping" in sleeper.log_tail())
        sleeper.popen.send_signal(signal.SIGKILL)
        _until(lambda: supervisor.restart_count("sleeper") == 1 and sleeper.alive())
        assert sleeper.pid != first
    finally:
        supervisor.stop()
    crash = next(r.getMessage() for r in caplog.records if "restarting it in" in r.getMessage())
    assert "sleeper exited (killed by SIGKILL)" in crash
    assert "| sleeping" in crash  # the end of its log comes with the reason
    assert any("sleeper is up again" in r.getMessage() for r in caplog.records)


def test_a_child_crashing_at_once_gets_a_crash_loop_message_and_capped_delays(
    children: list[Proc], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_devstack")
    crasher = _python(
        "crasher", "import sys; print('bad config', flush=True); sys.exit(3)", tmp_path
    )
    children.append(crasher)
    supervisor = Supervisor(lambda: children, FAST).start()
    try:
        _until(lambda: supervisor.restart_count("crasher") >= 7, timeout=30)
    finally:
        supervisor.stop()
    messages = [r.getMessage() for r in caplog.records]
    delays = [
        float(m.split("restarting it in ")[1].split(" s")[0])
        for m in messages
        if "restarting it in" in m
    ]
    # Doubling from the base, then held at the cap: 0.05, 0.1, 0.2, 0.4, 0.4, ...
    assert delays[:6] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert all("(exit code 3)" in m for m in messages if "restarting it in" in m)
    loops = [r for r in caplog.records if "crashed 5 times within 60 s" in r.getMessage()]
    assert len(loops) == 1 and loops[0].levelno == logging.ERROR
    assert "Still restarting it" in loops[0].getMessage()


def test_nothing_is_restarted_once_the_supervisor_is_stopped(
    children: list[Proc], tmp_path: Path
) -> None:
    sleeper = _python("sleeper", "import time; time.sleep(600)", tmp_path)
    children.append(sleeper)
    supervisor = Supervisor(lambda: children, FAST).start()
    supervisor.stop()
    assert not supervisor.running
    sleeper.kill()
    time.sleep(0.3)
    assert not sleeper.alive() and supervisor.restart_count("sleeper") == 0
