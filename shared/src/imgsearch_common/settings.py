"""Settings shared by every service; each service extends :class:`CommonSettings`.

All configuration comes from environment variables (names are the field names in
upper case; README lists each with its default). Nothing else in the code base
reads ``os.environ``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .windows import (
    DEFAULT_MAX_WINDOWS,
    DEFAULT_OVERLAP,
    DEFAULT_SCALES,
    WindowGeometry,
    WindowLayout,
)

#: The old spelling of the ``baseline`` setting values (``WINDOW_GEOMETRY``,
#: ``PARTIAL_RULE``): "seed" meant the original system, a word now kept for RNG seeds.
_OLD_BASELINE_NAME = "seed"


def env_list(value: object, sep: str = ",", item: Callable[[str], Any] = str) -> object:
    """A list setting as the environment gives it: a JSON list, or ``sep``-separated items
    (empty ones dropped), each converted by ``item``. For ``mode="before"`` validators of
    ``NoDecode`` fields; anything but a string is left for pydantic to check."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item(v) for v in text.split(sep) if v.strip()]
    return value


def empty_is_unset(value: object) -> object:
    """A ``mode="before"`` validator's body: ``KEY=`` (empty or blank, as an ``.env`` file
    may have it) means "use the default" (None), not an error."""
    return None if isinstance(value, str) and not value.strip() else value


def baseline_alias(value: object) -> object:
    """``"seed"`` → ``"baseline"``, for ``mode="before"`` validators of settings that name
    the original system's reference behaviour (older configurations spell it "seed")."""
    if isinstance(value, str) and value.strip().lower() == _OLD_BASELINE_NAME:
        return "baseline"
    return value


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    #: Where the embedded index, uploads and logs live.
    data_dir: Path = Path("./data")
    log_level: str = "INFO"

    #: Shared secret of the internal endpoints (encoder API, vector hand-off).
    #: Internal endpoints refuse every request while it is unset.
    internal_token: SecretStr | None = None

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Internal HTTP API of the encoder service.
    encoder_url: str = "http://127.0.0.1:8001"
    #: How long a call to the encoder may take before it counts as failed (s).
    encoder_timeout_s: float = 120.0

    #: Decompression-bomb guard: images with more pixels are refused.
    max_image_pixels: int = Field(default=80_000_000, ge=1)

    #: Window geometry (see imgsearch_common.windows). Relative to the short side.
    #: NoDecode: "0.75,0.5" is parsed by the validator below, not as JSON.
    window_scales: Annotated[tuple[float, ...], NoDecode] = DEFAULT_SCALES
    window_overlap: float = Field(default=DEFAULT_OVERLAP, ge=0.0, lt=1.0)
    max_windows: int = Field(default=DEFAULT_MAX_WINDOWS, ge=0, le=256)
    #: "relative" (the scales above) or "baseline" (the original system's fixed 224/448 px
    #: windows every 56 px, hundreds per photo; a reference for the quality benchmark
    #: only; the old spelling "seed" is accepted).
    window_geometry: WindowGeometry = "relative"

    @field_validator("window_scales", mode="before")
    @classmethod
    def _parse_scales(cls, value: object) -> object:
        # Accept "0.75,0.5" from the environment as well as a JSON list.
        return env_list(value, ",", float)

    @field_validator("window_geometry", mode="before")
    @classmethod
    def _old_geometry_name(cls, value: object) -> object:
        return baseline_alias(value)

    def window_layout(self) -> WindowLayout:
        """Where this deployment puts an indexed image's windows."""
        return WindowLayout(
            self.window_geometry, tuple(self.window_scales), self.window_overlap, self.max_windows
        )

    def internal_token_value(self) -> str | None:
        token = self.internal_token.get_secret_value() if self.internal_token else ""
        return token or None


class VectorStoreSettings(BaseSettings):
    """Where the vectors live and how new collections are built, for the services that
    read or write them (search API, workers): what ``vectorstore.open_vector_store`` takes.
    Unset ``qdrant_url``: the embedded Qdrant Edge store, which only the search API opens."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    #: Qdrant server URL; unset = the embedded Qdrant Edge store under DATA_DIR/index.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    #: Collection settings sent when a collection is created (the server's defaults when
    #: unset); the API and the workers must agree, since whichever writes first creates it.
    qdrant_shards: int | None = Field(default=None, ge=1)
    qdrant_replication_factor: int | None = Field(default=None, ge=1)
    qdrant_write_consistency: int | None = Field(default=None, ge=1)
    #: HNSW graph of new collections (Edge shards or server collections): links per node
    #: and build beam. 32 / 128 rather than Qdrant's 16 / 100: at 1M window vectors (int8)
    #: recall@10 0.95 at best with 16 / 100, 0.99 with 32 / 128, for 1 % more RAM per
    #: vector (benchmarks/README.md, "Throughput"). Existing collections keep theirs.
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=128, ge=4, le=1024)

    #: Edge: build the HNSW index once this many points were added since the last build.
    edge_optimize_threshold: int = Field(default=20_000, ge=1)
    #: Edge: ``int8`` creates new shards with scalar quantization (int8 vectors in RAM,
    #: float32 originals on disk for rescoring: about a third of the RAM per vector);
    #: ``none`` keeps float32 vectors in RAM. Existing shards keep how they were created.
    edge_quantization: Literal["none", "int8"] = "none"
    #: Edge: search beam width of the HNSW graph (unset: Qdrant's default). Larger:
    #: better recall, slower queries (figures in benchmarks/README.md).
    edge_hnsw_ef: int | None = Field(default=None, ge=1, le=4096)
    #: Edge with int8: candidates fetched per result by int8 score before rescoring.
    edge_oversampling: float | None = Field(default=None, ge=1.0, le=16.0)

    def qdrant_api_key_value(self) -> str | None:
        key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else ""
        return key or None
