"""Prometheus metrics of one encoder app, in the app's own registry.

A registry per app (not prometheus_client's global one) lets several apps live in
one process, as they do in the tests.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Item kinds: the image tower encodes crops, the text tower texts.
KINDS = ("image", "text")

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EncoderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram(
            "imgsearch_encoder_batch_size",
            "Items per forward pass.",
            ["kind"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.forward_seconds = Histogram(
            "imgsearch_encoder_forward_seconds",
            "Duration of one forward pass, in the model thread.",
            ["kind"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "imgsearch_encoder_request_seconds",
            "Time of one request in the batcher: 'queue' until its first forward pass "
            "starts, 'model' from then until its last row is out (transfer is the rest "
            "of what the caller measures).",
            ["kind", "stage"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_items = Gauge(
            "imgsearch_encoder_queue_items",
            "Items (crops and texts) admitted and not yet encoded.",
            registry=r,
        )
        self.items_encoded = Counter(
            "imgsearch_encoder_items_encoded",
            "Items encoded.",
            ["kind"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "imgsearch_encoder_rejected_requests",
            "Requests refused with 429 because the queue was full.",
            ["kind"],
            registry=r,
        )
        self.failed_batches = Counter(
            "imgsearch_encoder_failed_batches",
            "Forward passes that raised; their requests got an error.",
            ["kind"],
            registry=r,
        )
        for kind in KINDS:  # export zeros from the start, so rates have a baseline
            for labelled in (
                self.batch_size,
                self.forward_seconds,
                self.items_encoded,
                self.rejected_requests,
                self.failed_batches,
            ):
                labelled.labels(kind=kind)
            for stage in ("queue", "model"):
                self.request_seconds.labels(kind=kind, stage=stage)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
