from __future__ import annotations

from pydantic import Field

from imgsearch_common.settings import CommonSettings


class WorkerSettings(CommonSettings):
    #: Where to hand vectors: the search API owns the index (an Edge shard is single-process).
    api_internal_url: str = "http://127.0.0.1:8000"
    #: Images in flight per worker process. Enough to keep the encoder's batcher fed
    #: while this process decodes the next images; more only adds memory.
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    #: Threads that decode and cut windows (Pillow releases the GIL while decoding).
    decode_threads: int = Field(default=2, ge=1, le=64)
    #: Largest file a worker reads, in bytes.
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    #: A job pending this long on a consumer that stopped acknowledging is taken over.
    #: Longer than the slowest job; shorter means faster recovery after a crash.
    claim_idle_ms: int = Field(default=120_000, ge=100)
    #: How often a worker looks for stale jobs and due retries (s).
    maintenance_interval_s: float = Field(default=2.0, gt=0)
    #: Attempts for transient errors (encoder/index down) before dead-lettering.
    max_attempts: int = Field(default=6, ge=1)
    #: Claims of one entry (worker crashes while handling it) before dead-lettering it.
    max_deliveries: int = Field(default=5, ge=1)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    #: Consumer name; defaults to host:pid. Keep it stable across restarts to resume faster.
    worker_name: str | None = None
    #: /health and /metrics of this worker; 0 disables the HTTP endpoint.
    worker_port: int = Field(default=0, ge=0, le=65535)
    worker_host: str = "127.0.0.1"
