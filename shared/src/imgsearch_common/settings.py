"""Settings shared by every service; each service extends :class:`CommonSettings`.

All configuration comes from environment variables (names are the field names in
upper case; README lists each with its default). Nothing else in the code base
reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .windows import DEFAULT_MAX_WINDOWS, DEFAULT_OVERLAP, DEFAULT_SCALES


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
    window_scales: tuple[float, ...] = DEFAULT_SCALES
    window_overlap: float = Field(default=DEFAULT_OVERLAP, ge=0.0, lt=1.0)
    max_windows: int = Field(default=DEFAULT_MAX_WINDOWS, ge=0, le=256)

    @field_validator("window_scales", mode="before")
    @classmethod
    def _parse_scales(cls, value: object) -> object:
        # Accept "0.75,0.5" from the environment as well as a JSON list.
        if isinstance(value, str) and not value.strip().startswith("["):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    def internal_token_value(self) -> str | None:
        token = self.internal_token.get_secret_value() if self.internal_token else ""
        return token or None
