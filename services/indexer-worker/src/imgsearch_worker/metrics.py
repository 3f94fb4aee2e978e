from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "imgsearch_worker_jobs_total",
            "Jobs handled, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "imgsearch_worker_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_flight = Gauge(
            "imgsearch_worker_in_flight", "Jobs being processed", registry=self.registry
        )
        self.windows = Counter(
            "imgsearch_worker_windows_total", "Windows encoded", registry=self.registry
        )
