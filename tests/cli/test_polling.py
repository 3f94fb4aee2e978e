"""The one loop that follows a batch (the CLI's progress, the launcher's wait_batch)."""

from __future__ import annotations

import pytest

from imgsearch_cli.polling import follow_batch
from imgsearch_common.schemas import BatchStatus


def status(done: int, total: int = 3) -> BatchStatus:
    return BatchStatus(
        batch_id="b1",
        collection="c",
        total=total,
        done=done,
        failed=0,
        pending=total - done,
        finished=done == total,
        created_at=0.0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_polls_until_finished_and_shows_every_status() -> None:
    answers = iter([status(0), status(2), status(3)])
    seen: list[int] = []
    clock = Clock()
    last = follow_batch(
        lambda: next(answers),
        on_status=lambda s: seen.append(s.done),
        poll_s=0.5,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert last.finished and seen == [0, 2, 3]
    assert clock.sleeps == [0.5, 0.5]


def test_transient_failures_are_tolerated_up_to_the_limit() -> None:
    calls = {"n": 0}

    def flaky() -> BatchStatus:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("restarting")
        return status(3)

    clock = Clock()
    transient = lambda exc: isinstance(exc, ConnectionError)  # noqa: E731
    assert follow_batch(flaky, transient=transient, sleep=clock.sleep).finished
    assert calls["n"] == 3

    def down() -> BatchStatus:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        follow_batch(down, transient=transient, max_failures=4, sleep=clock.sleep)
    assert len(clock.sleeps) == 2 + 3  # the fourth failure in a row gives up


def test_other_errors_propagate_at_once() -> None:
    def broken() -> BatchStatus:
        raise ValueError("bad answer")

    clock = Clock()
    with pytest.raises(ValueError):
        follow_batch(broken, sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_timeout_carries_the_last_status() -> None:
    clock = Clock()
    with pytest.raises(TimeoutError, match="batch b1 not finished"):
        follow_batch(
            lambda: status(1), poll_s=1.0, timeout_s=2.5, sleep=clock.sleep, clock=lambda: clock.now
        )
    assert clock.now == 3.0
