"""When a failed job is tried again, and when it is given up (``retries_exhausted``).

- **Transient** errors (ours, ``permanent=False``: encoder, index owner, Qdrant, Redis
  unavailable or overloaded) are retried for at least ``window_s`` seconds from the
  job's first failure (recorded in the job, so it holds across workers), and at least
  ``max_attempts`` times: a job that waited out a long outage behind an open circuit
  breaker was not tried meanwhile and still gets its attempts.
- **Unexpected** errors (anything else: a bug, most likely, maybe with this one file)
  are given up after ``max_attempts`` of them, however long that takes.

The delay before attempt *n + 1* is ``base_s * 2**(n - 1)``, capped at ``max_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imgsearch_common.jobs import Job

from .settings import WorkerSettings


@dataclass(frozen=True)
class RetryPolicy:
    window_s: float
    max_attempts: int
    base_s: float
    max_s: float

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryPolicy:
        return cls(
            window_s=settings.retry_window_s,
            max_attempts=settings.max_attempts,
            base_s=settings.retry_base_s,
            max_s=settings.retry_max_s,
        )

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed attempt (1-based)."""
        exponent = min(max(attempt - 1, 0), 60)  # 2**60 s is past any cap; no overflow
        return float(min(self.max_s, self.base_s * 2**exponent))

    def next_job(self, job: Job, now: float, *, unexpected: bool) -> Job | None:
        """``job`` after one more failed attempt at ``now`` (epoch seconds), to be retried;
        None when it is given up."""
        first = job.first_failed_at or now
        attempt = job.attempt + 1
        unexpected_failures = job.unexpected_failures + int(unexpected)
        if unexpected:
            if unexpected_failures >= self.max_attempts:
                return None
        elif now - first >= self.window_s and attempt >= self.max_attempts:
            return None
        return replace(
            job,
            attempt=attempt,
            first_failed_at=first,
            unexpected_failures=unexpected_failures,
        )
