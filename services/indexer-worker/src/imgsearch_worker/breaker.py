"""Circuit breakers: a worker stops feeding a downstream that is failing.

One breaker per downstream (the encoder, the index owner). **Closed**, jobs flow; after
``failures`` consecutive failures of that downstream (unavailable or overloaded) it
**opens**: the worker takes no new job (no read of new entries, no claim of stale
ones), sends no job to it, keeps the heartbeats of the jobs it holds, and probes the
downstream's health instead, with a delay that doubles from ``probe_base_s`` up to
``probe_max_s``. A probe that succeeds makes it **half-open**: one job at a time goes
through; its success closes the breaker, its failure opens it again.

The breaker is a state machine on a clock you can pass in; the worker drives it (it
records the outcomes of its calls and runs the probes), so it is tested without time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"


#: How bad each state is, for the worker's one summary and the metric's value.
SEVERITY = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Backoff:
    """Delays that double from ``base_s`` up to ``max_s``; :meth:`reset` starts again."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self.base_s = base_s
        self.max_s = max(max_s, base_s)
        self._next = base_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self.max_s, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.base_s


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int,
        probe_base_s: float,
        probe_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        listener: Callable[[CircuitBreaker], None] | None = None,
    ) -> None:
        self.name = name
        self._threshold = failures
        self._probes = Backoff(probe_base_s, probe_max_s)
        self._clock = clock
        self._listener = listener
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_at = 0.0
        #: How many times it opened (a metric).
        self.opened = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    def allows_work(self) -> bool:
        return self._state is not BreakerState.OPEN

    # --- outcomes of the worker's calls -----------------------------------------------------

    def record_success(self) -> None:
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._probes.reset()
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self._state is BreakerState.OPEN:
            # A call that started before it opened: no news, and no reason to put off
            # the next probe.
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    # --- probes while open ------------------------------------------------------------------

    def probe_due(self) -> bool:
        return self._state is BreakerState.OPEN and self._clock() >= self._probe_at

    def seconds_to_probe(self) -> float:
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._probe_at - self._clock())

    def probe_succeeded(self) -> None:
        if self._state is BreakerState.OPEN:
            self._set(BreakerState.HALF_OPEN)

    def probe_failed(self) -> None:
        if self._state is BreakerState.OPEN:
            self._probe_at = self._clock() + self._probes.next()

    # --- transitions --------------------------------------------------------------------------

    def _open(self) -> None:
        self._failures = 0
        self._probe_at = self._clock() + self._probes.next()
        self.opened += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if state is BreakerState.OPEN:
            log.warning(
                "%s is failing: no new jobs until it answers (next probe in %.1fs)",
                self.name,
                self.seconds_to_probe(),
            )
        elif state is BreakerState.HALF_OPEN:
            log.info("%s answers its probe: trying one job", self.name)
        else:
            log.info("%s works again: taking jobs", self.name)
        if self._listener is not None:
            self._listener(self)


def overall_state(breakers: Iterable[CircuitBreaker]) -> BreakerState:
    """The worst state of ``breakers`` (what the worker does follows it)."""
    return max((b.state for b in breakers), key=SEVERITY.__getitem__, default=BreakerState.CLOSED)


class BreakerMetrics:
    """``imgsearch_worker_breaker_state{downstream}`` (0 closed, 1 half-open, 2 open) and
    ``imgsearch_worker_breaker_opened_total{downstream}``."""

    def __init__(self, registry: CollectorRegistry, downstreams: Iterable[str]) -> None:
        self.state = Gauge(
            "imgsearch_worker_breaker_state",
            "Circuit breaker per downstream: 0 closed, 1 half-open, 2 open",
            ["downstream"],
            registry=registry,
        )
        self.opened = Counter(
            "imgsearch_worker_breaker_opened",
            "Times a downstream's circuit breaker opened",
            ["downstream"],
            registry=registry,
        )
        for name in downstreams:
            self.state.labels(name).set(0)
            self.opened.labels(name)

    def update(self, breaker: CircuitBreaker) -> None:
        self.state.labels(breaker.name).set(SEVERITY[breaker.state])
        if breaker.state is BreakerState.OPEN:
            self.opened.labels(breaker.name).inc()
