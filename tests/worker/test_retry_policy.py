"""The retry rule and the circuit breaker: pure decisions, exact numbers, a clock we drive."""

from __future__ import annotations

import pytest

from imgsearch_common.jobs import Job
from imgsearch_worker.breaker import BreakerState, CircuitBreaker, overall_state
from imgsearch_worker.retries import RetryPolicy
from imgsearch_worker.settings import WorkerSettings

POLICY = RetryPolicy(window_s=600.0, max_attempts=6, base_s=1.0, max_s=60.0)
JOB = Job("j", "b", "c", "/p.jpg")


def test_backoff_doubles_and_is_capped() -> None:
    assert [POLICY.delay_s(a) for a in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert POLICY.delay_s(10_000) == 60.0  # no float overflow for a long-lived job


def test_the_policy_comes_from_the_settings() -> None:
    s = WorkerSettings(retry_window_s=30, max_attempts=4, retry_base_s=0.5, retry_max_s=8)
    assert RetryPolicy.from_settings(s) == RetryPolicy(30.0, 4, 0.5, 8.0)
    assert WorkerSettings().retry_window_s >= 600


def test_the_first_failure_is_recorded_and_kept() -> None:
    first = POLICY.next_job(JOB, now=1000.0, unexpected=False)
    assert first is not None
    assert (first.attempt, first.first_failed_at, first.unexpected_failures) == (1, 1000.0, 0)
    second = POLICY.next_job(first, now=1005.0, unexpected=False)
    assert second is not None
    assert (second.attempt, second.first_failed_at) == (2, 1000.0)


def test_transient_failures_never_give_up_inside_the_window() -> None:
    job = JOB
    for i in range(200):  # far more attempts than MAX_ATTEMPTS, all inside 600 s
        nxt = POLICY.next_job(job, now=1000.0 + i * 2.9, unexpected=False)
        assert nxt is not None
        job = nxt
    assert job.attempt == 200


def test_transient_failures_give_up_after_the_window_and_enough_attempts() -> None:
    failed_once = Job("j", "b", "c", "/p.jpg", attempt=1, first_failed_at=1000.0)
    # Past the window, but only the second attempt: a job that waited out an outage
    # behind an open breaker was not tried; it gets its attempts.
    assert POLICY.next_job(failed_once, now=1601.0, unexpected=False) is not None
    tried = Job("j", "b", "c", "/p.jpg", attempt=5, first_failed_at=1000.0)
    assert POLICY.next_job(tried, now=1599.9, unexpected=False) is not None  # inside
    assert POLICY.next_job(tried, now=1600.0, unexpected=False) is None


def test_unexpected_errors_keep_max_attempts() -> None:
    job = JOB
    for _ in range(5):
        nxt = POLICY.next_job(job, now=1000.0, unexpected=True)
        assert nxt is not None
        job = nxt
    assert job.unexpected_failures == 5
    assert POLICY.next_job(job, now=1000.0, unexpected=True) is None  # the sixth
    # Transient failures do not count toward that bound.
    mixed = Job("j", "b", "c", "/p.jpg", attempt=40, first_failed_at=999.0, unexpected_failures=1)
    assert POLICY.next_job(mixed, now=1000.0, unexpected=True) is not None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("encoder", failures=3, probe_base_s=1.0, probe_max_s=4.0, clock=clock)


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    b = _breaker(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # the count starts again
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.opened == 1


def test_open_breaker_probes_with_capped_backoff() -> None:
    clock = Clock()
    b = _breaker(clock)
    for _ in range(3):
        b.record_failure()
    assert not b.probe_due()
    assert b.seconds_to_probe() == pytest.approx(1.0)
    waits = []
    for _ in range(5):
        waits.append(b.seconds_to_probe())
        clock.now += b.seconds_to_probe()
        assert b.probe_due()
        b.probe_failed()
        assert b.state is BreakerState.OPEN
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    # Failures of jobs started before it opened do not postpone the next probe.
    b.record_failure()
    assert b.seconds_to_probe() == pytest.approx(4.0)


def test_half_open_closes_on_success_and_reopens_on_failure() -> None:
    clock = Clock()
    b = _breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 1.0
    b.probe_succeeded()
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure()  # the trial job failed: open again, at once
    assert b.state is BreakerState.OPEN
    clock.now += b.seconds_to_probe()
    b.probe_succeeded()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    # Closed again: back to the threshold and the first probe delay.
    for _ in range(3):
        b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.seconds_to_probe() == pytest.approx(1.0)


def test_overall_state_is_the_worst() -> None:
    clock = Clock()
    a, b = _breaker(clock), _breaker(clock)
    assert overall_state([a, b]) is BreakerState.CLOSED
    for _ in range(3):
        b.record_failure()
    assert overall_state([a, b]) is BreakerState.OPEN
    b.probe_succeeded()
    assert overall_state([a, b]) is BreakerState.HALF_OPEN
