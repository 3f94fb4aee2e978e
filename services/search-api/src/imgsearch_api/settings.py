from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from imgsearch_common.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    #: When set, write endpoints (indexing) require it as ``X-API-Key`` or a Bearer token.
    api_key: SecretStr | None = None

    #: Qdrant server URL; unset = the embedded Qdrant Edge store under DATA_DIR/index.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_shards: int | None = Field(default=None, ge=1)
    qdrant_replication_factor: int | None = Field(default=None, ge=1)
    qdrant_write_consistency: int | None = Field(default=None, ge=1)
    #: Edge: build the HNSW index once this many points were added since the last build.
    edge_optimize_threshold: int = Field(default=20_000, ge=1)

    #: Where uploaded and URL-fetched images are kept (workers read them from here).
    upload_dir: Path | None = None
    #: Largest request body (uploads included), in bytes; bigger → 413.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    url_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    url_fetch_timeout_s: float = Field(default=10.0, gt=0)
    #: Lets by-url reach private addresses. Only for trusted, closed deployments.
    url_allow_private: bool = False
    #: Folders that may be queued for indexing (and their sub-folders). Empty = any
    #: folder the server can read — fine on a laptop; set it on a shared server.
    index_roots: list[Path] = Field(default_factory=list)

    #: Window hits fetched per query for partial matching (then grouped per image).
    window_search_limit: int = Field(default=200, ge=1, le=10_000)
    #: How a parent's window scores become one score: "max" (best window) or "seed"
    #: (the original 0.7·max + 0.3·mean + 0.1·frequency). See aggregation.py.
    partial_rule: Literal["max", "seed"] = "max"
    #: Threads for decoding queries, text removal and other CPU work.
    cpu_threads: int = Field(default=2, ge=1, le=64)

    @field_validator("index_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [p for p in value.split(":") if p.strip()]
        return value

    def api_key_value(self) -> str | None:
        key = self.api_key.get_secret_value() if self.api_key else ""
        return key or None

    def uploads_path(self) -> Path:
        return self.upload_dir or (self.data_dir / "uploads")
