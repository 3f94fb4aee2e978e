from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from imgsearch_common.errors import InvalidCollection
from imgsearch_common.ids import DEFAULT_COLLECTION, validate_collection
from imgsearch_common.settings import (
    CommonSettings,
    VectorStoreSettings,
    baseline_alias,
    empty_is_unset,
    env_list,
)
from imgsearch_common.windows import QUERY_WINDOW_MAX, QUERY_WINDOW_SCALES

from .hosts import trusted_hosts
from .search.aggregation import WindowRule


class ApiSettings(CommonSettings, VectorStoreSettings):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    #: When set, write endpoints (indexing) require it as ``X-API-Key`` or a Bearer token.
    #: Required to listen on any address but a loopback one (the API refuses to start).
    api_key: SecretStr | None = None
    #: The internal hand-off (``/internal/*``) listens on this port of API_HOST, and only
    #: there; the public port answers 404 for it. Never publish it (workers: API_INTERNAL_URL).
    internal_port: int = Field(default=8002, ge=1, le=65535)
    #: Host names the API answers to besides localhost, 127.0.0.1, [::1] and a specific
    #: API_HOST, on any port; another Host gets 400 (DNS rebinding). "a.example,b.example";
    #: "*.example.com" = its sub-domains; "*" turns the check off (any page whose name
    #: resolves here may then drive the API from a browser).
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Origins (scheme://host[:port]) whose pages may send writes besides the API's own and
    #: those of the allowed hosts (http or https, any port); "*" = any.
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()

    #: Where uploaded and URL-fetched images are kept (workers read them from here).
    upload_dir: Path | None = None
    #: Largest request body (uploads included), in bytes; bigger → 413.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    url_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    url_fetch_timeout_s: float = Field(default=10.0, gt=0)
    #: Lets by-url reach private addresses. Only for trusted, closed deployments.
    url_allow_private: bool = False
    #: Folders that may be queued for indexing (and their sub-folders). Empty = no folder
    #: may be (403): uploads and URLs only. ``make run`` adds IMAGES_DIR and UPLOAD_DIR.
    index_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    #: Folders the API follows on disk (":"-separated; each under INDEX_ROOTS, else the API
    #: refuses to start): queued with sync at start-up, then again after each burst of
    #: changes (new, changed, moved, deleted files), into WATCH_COLLECTION. A change waits
    #: WATCH_DEBOUNCE_S of quiet, and for the folder's previous batch to finish.
    watch_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    watch_collection: str = DEFAULT_COLLECTION
    watch_debounce_s: float = Field(default=2.0, gt=0.0, le=3600.0)

    #: Window hits fetched per query for window matching (then grouped per image).
    window_search_limit: int = Field(default=200, ge=1, le=10_000)
    #: How a parent's window scores become one score: "max" (best window) or "baseline"
    #: (the original system's 0.7·max + 0.3·mean + 0.1·frequency; the old spelling "seed"
    #: is accepted). See search/aggregation.py.
    partial_rule: WindowRule = "max"
    #: Re-scoring (search/rescoring.py, stage two): the best this-many pictures of an image
    #: query are looked at again: the query is located in each picture by pixel correlation
    #: (search/locate.py) and the box found is cut, encoded and scored (one encoder call for all).
    #: Costs about one crop and 30-80 ms of CPU per picture (a 2-core CPU: ~0.7 s per
    #: query at 8; a GPU: milliseconds), and reads those pictures' files. 0 = off. 12: stage
    #: one's recall@12 is its recall@16 for every partial family, and 12 lifted 5 % crops and
    #: contains queries as much as 16 with no family lower than at 8 (benchmarks/README.md,
    #: "Stage one's recall@K").
    rescore_top_k: int = Field(default=12, ge=0, le=50)
    #: Extra re-scoring boxes: the query's shape centred on each picture's best window, at
    #: these fractions of the window's area (e.g. "1,0.5"). Empty: the located box only.
    rescore_fractions: Annotated[tuple[float, ...], NoDecode] = ()
    #: Windows cut from the query in "contains"/"auto" mode: scales of the query's short
    #: side and the most windows per query (each is one more crop to encode).
    query_window_scales: Annotated[tuple[float, ...], NoDecode] = QUERY_WINDOW_SCALES
    query_window_max: int = Field(default=QUERY_WINDOW_MAX, ge=1, le=128)
    #: The no-match rule: results scoring under this are dropped when a request gives no
    #: min_score. Unset: keep every result. Scores depend on the weights: a threshold
    #: measured with CLIP_PRETRAINED=random means nothing for real weights.
    default_min_score: float | None = Field(default=None, ge=-1.0, le=2.0)
    #: match_mode of image queries that name none: "region", "contains" or "auto".
    default_match_mode: Literal["auto", "region", "contains"] = "region"
    #: Threads for decoding queries, text removal and other CPU work.
    cpu_threads: int = Field(default=2, ge=1, le=64)
    #: Image queries are shrunk to this long side before anything else looks at them
    #: (text removal, enhancement, query windows, re-scoring; the model sees 224 px).
    #: Larger: finer query windows and located boxes on huge queries; more CPU and memory.
    max_query_side: int = Field(default=2048, ge=256, le=16384)
    #: Most pixels decoding one query may hold at full size (over it: 413). A JPEG counts
    #: at its reduced DCT scale (progressive ones at full size); other formats can only
    #: be decoded whole, at up to 4 bytes a pixel, before they are shrunk. Lower than
    #: MAX_IMAGE_PIXELS: a query needs at most MAX_QUERY_SIDE px, and anyone can send one.
    max_query_pixels: int = Field(default=40_000_000, ge=1)
    #: Admission (admission.py). Searches doing their work at once (by image, URL or
    #: text; unset: 2 x CPU_THREADS), and how many more may wait (unset: as many); beyond,
    #: 503 + Retry-After. Larger: more throughput under load, more memory and latency.
    search_concurrency: int | None = Field(default=None, ge=1, le=1024)
    search_queue: int | None = Field(default=None, ge=0, le=10_000)
    #: Searches one client address may have in progress (and as many again waiting);
    #: beyond, 429 + Retry-After. The address is the connection's, or what uvicorn takes
    #: from X-Forwarded-For for peers in its FORWARDED_ALLOW_IPS (default: loopback).
    search_per_client: int = Field(default=2, ge=1, le=1024)
    #: Longest a search waits in either line before it is refused (seconds).
    search_queue_wait_s: float = Field(default=5.0, ge=0.0, le=300.0)
    #: GET /api/duplicates scans the whole collection: one runs at a time, this many more
    #: may wait (each for at most SEARCH_QUEUE_WAIT_S); beyond, 503 + Retry-After.
    duplicates_queue: int = Field(default=2, ge=0, le=100)

    @field_validator("search_concurrency", "search_queue", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return empty_is_unset(value)

    @field_validator("rescore_fractions", "query_window_scales", mode="before")
    @classmethod
    def _split_floats(cls, value: object) -> object:
        # Accept "1,0.6,0.35" from the environment as well as a JSON list.
        return env_list(value, ",", float)

    @field_validator("rescore_fractions", "query_window_scales")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0.0 < v <= 1.0 for v in value):
            raise ValueError("each value must be in (0, 1]")
        return value

    @field_validator("query_window_scales")
    @classmethod
    def _some_scales(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("needs at least one scale")
        return value

    @field_validator("partial_rule", mode="before")
    @classmethod
    def _old_rule_name(cls, value: object) -> object:
        return baseline_alias(value)

    @field_validator("index_roots", "watch_dirs", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        # "/a:/b" from the environment, or a JSON list.
        return env_list(value, ":")

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        return env_list(value, ",")

    @field_validator("watch_collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        try:
            return validate_collection(value)
        except InvalidCollection as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _watched_under_roots(self) -> ApiSettings:
        # A watched folder is queued like any other: it must be one that may be queued.
        roots = [os.path.realpath(r) for r in self.index_roots]
        for folder in self.watch_dirs:
            real = os.path.realpath(folder)
            if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
                raise ValueError(
                    f"WATCH_DIRS: {folder} is not under INDEX_ROOTS; every watched folder must "
                    "lie under one of them (add it, or a folder above it, to INDEX_ROOTS)"
                )
        return self

    @model_validator(mode="after")
    def _two_listeners(self) -> ApiSettings:
        if self.internal_port == self.api_port:
            raise ValueError("INTERNAL_PORT must differ from API_PORT (it is never published)")
        return self

    def trusted_hosts(self) -> tuple[str, ...]:
        """The Host names the API answers to (``hosts.trusted_hosts``)."""
        return trusted_hosts(self.api_host, self.allowed_hosts)

    def api_key_value(self) -> str | None:
        key = self.api_key.get_secret_value() if self.api_key else ""
        return key or None

    def uploads_path(self) -> Path:
        return self.upload_dir or (self.data_dir / "uploads")
