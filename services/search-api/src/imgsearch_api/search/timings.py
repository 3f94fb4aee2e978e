"""Server-side time per stage of one search (the response's ``timings_ms``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class Timings:
    """Milliseconds per named stage, rounded to microseconds. Stages run one after the
    other (a stage may run in a worker thread while its caller awaits it)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.ms[name] = elapsed_ms(t0)

    def include(self, side_by_side: Iterable[Timings]) -> None:
        """The stages of timings that ran side by side (one per collection searched): each
        stage as long as its longest."""
        for other in side_by_side:
            for name, ms in other.ms.items():
                self.ms[name] = max(ms, self.ms.get(name, 0.0))

    def total_ms(self) -> float:
        return elapsed_ms(self.started)


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)
