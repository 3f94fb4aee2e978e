from __future__ import annotations

from pydantic import Field

from imgsearch_common.settings import CommonSettings, VectorStoreSettings


class WorkerSettings(CommonSettings, VectorStoreSettings):
    #: Where to hand vectors when QDRANT_URL is unset: the search API owns the embedded
    #: index (an Edge shard is single-process), on its internal port (INTERNAL_PORT, not
    #: the public one). With QDRANT_URL, workers write to Qdrant.
    api_internal_url: str = "http://127.0.0.1:8002"
    #: Images in flight per worker process. Enough to keep the encoder's batcher fed
    #: while this process decodes the next images; more only adds memory.
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    #: Threads that decode and cut windows (Pillow releases the GIL while decoding).
    decode_threads: int = Field(default=2, ge=1, le=64)
    #: Decode JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) when every window
    #: still gets at least the model's input size: several times faster on large photos,
    #: and the crops are cut from those decoded pixels exactly as before.
    jpeg_draft: bool = True
    #: An image decoded at more than this many times the resolution its smallest window
    #: needs (PNG, WebP, huge JPEGs) is shrunk once to that before its windows are cut,
    #: instead of resizing every window from full size. Changes crop pixels slightly
    #: (cosine >= 0.9999 measured); 0 = cut every window from the decoded pixels.
    window_prescale: float = Field(default=2.0, ge=0.0)
    #: Largest file a worker reads, in bytes.
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    #: A job pending this long on a consumer that stopped acknowledging is taken over.
    #: Longer than the slowest job; shorter means faster recovery after a crash.
    claim_idle_ms: int = Field(default=120_000, ge=100)
    #: How often a worker looks for stale jobs and due retries (s).
    maintenance_interval_s: float = Field(default=2.0, gt=0)
    #: Attempts for unexpected errors (not the services' own: a bug, most likely) before
    #: dead-lettering; a transient error is given up only after this many attempts too.
    max_attempts: int = Field(default=6, ge=1)
    #: Transient errors (encoder, index owner, Qdrant, Redis unavailable or overloaded)
    #: never dead-letter a job within this many seconds of its first failure: an outage
    #: of a few minutes (a redeploy, a model load) loses nothing.
    retry_window_s: float = Field(default=900.0, ge=0)
    #: Claims of one entry (worker crashes while handling it) before dead-lettering it.
    max_deliveries: int = Field(default=5, ge=1)
    #: Backoff between attempts of one job: doubles from base up to max (s).
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    #: Consecutive failures (unavailable, overloaded) of the encoder or the index owner
    #: that open its circuit breaker: the worker takes no new job and probes it instead.
    #: Fewer: an outage costs fewer wasted decodes; more: a single hiccup stops nobody.
    breaker_failures: int = Field(default=3, ge=1)
    #: First probe of an open breaker after this long, then doubling up to the max (s).
    #: The max bounds how long the worker idles after the downstream is back.
    breaker_probe_s: float = Field(default=1.0, gt=0)
    breaker_probe_max_s: float = Field(default=5.0, gt=0)
    #: A probe not answered within this long failed (s).
    breaker_probe_timeout_s: float = Field(default=5.0, gt=0)
    #: Redis unreachable or failing under the loop: wait from base, doubling up to max,
    #: then try again (s). The worker never exits for it.
    redis_retry_base_s: float = Field(default=0.5, gt=0)
    redis_retry_max_s: float = Field(default=10.0, gt=0)
    #: Consumer name; defaults to host:pid. Keep it stable across restarts to resume faster.
    worker_name: str | None = None
    #: /health and /metrics of this worker; 0 disables the HTTP endpoint.
    worker_port: int = Field(default=0, ge=0, le=65535)
    worker_host: str = "127.0.0.1"
