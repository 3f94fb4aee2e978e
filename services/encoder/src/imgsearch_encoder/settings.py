"""Settings of the encoder service (environment variables, see the README)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from imgsearch_common.settings import CommonSettings, empty_is_unset

#: Value of ``CLIP_PRETRAINED`` that selects seeded random weights (offline, not semantic).
RANDOM_WEIGHTS = "random"
#: What runs the forward pass.
ENGINES = ("torch", "onnx")
#: ``ENCODER_ENGINE`` values: an engine, or ``auto`` (resolved at load, see
#: :meth:`EncoderSettings.engine_for`).
ENGINE_CHOICES = ("auto", *ENGINES)
#: ``ENCODER_PRECISION`` values, and the engines each applies to (the device is checked at
#: start: fp16 and bf16 need CUDA).
PRECISIONS = {"fp32": ENGINES, "int8": ("onnx",), "fp16": ("torch",), "bf16": ("torch",)}
#: ``MAX_BATCH_SIZE`` when unset, per device type (measured: benchmarks/README.md).
DEFAULT_BATCH_SIZES = {"cpu": 16, "cuda": 256}
#: ``ENCODER_PRECISION`` of the onnx engine when unset: int8 indexed 2.76x torch fp32's
#: images/s end to end on 2 cores (onnx fp32: 1.84x) with every quality family's R@1
#: identical -- measured with random weights (benchmarks/README.md, "Engines side by
#: side"); tests/encoder/test_onnx_engine.py bounds its cosine to torch's vectors.
DEFAULT_ONNX_PRECISION = "int8"


class EncoderSettings(CommonSettings):
    #: open_clip architecture name, e.g. ``ViT-B-32``.
    clip_model: str = "ViT-B-32"
    #: An open_clip pretrained tag (downloaded from the hub as open_clip does), the path of
    #: a local checkpoint file, or ``random`` (seeded random weights; results are not semantic).
    clip_pretrained: str = "openai"
    #: Seed of the random weights when ``clip_pretrained=random``: same seed, same weights,
    #: in every process.
    clip_random_seed: int = 0
    #: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
    device: str = "auto"
    #: fp16 on CUDA (the weights are cast to fp16): faster on tensor-core GPUs, embeddings
    #: differ from fp32 only slightly. Ignored on CPU, which always runs fp32.
    gpu_mixed_precision: bool = True
    #: What runs the forward pass: ``torch`` (eager, CPU or CUDA), ``onnx`` (the same
    #: model exported to ONNX once, cached under ``ONNX_CACHE_DIR``, run by ONNX Runtime on
    #: the CPU; measured faster there, see benchmarks/README.md) or ``auto``: onnx on the
    #: CPU, torch on CUDA (the engine a precision needs, when only one has it).
    encoder_engine: str = "auto"
    #: ``fp32``; ``int8`` (onnx: dynamic quantization of the weights, faster on a CPU,
    #: vectors slightly different); ``fp16``/``bf16`` (torch on CUDA). Unset: int8 on
    #: the onnx engine; on torch fp16 on CUDA when ``gpu_mixed_precision``, else fp32.
    encoder_precision: str | None = None
    #: Where the onnx engine caches its exported graphs (one folder per fingerprint).
    #: Unset: ``DATA_DIR/onnx``. Folders may share it (the tests point every stack of a
    #: session at one, so the graphs are exported once). A string, not a Path: the deploy
    #: tests load this module on its own, where pydantic cannot resolve ``Path``.
    onnx_cache_dir: str | None = None

    encoder_host: str = "127.0.0.1"
    encoder_port: int = Field(default=8001, ge=1, le=65535)

    # Dynamic batching. A forward pass over many crops is cheaper per crop than one per
    # request, but each item then waits for its batch.
    #: Most items (crops or texts) in one forward pass. Larger: more throughput on a GPU,
    #: but more memory and a longer wait for the first request of a batch. Unset: 16 on
    #: a CPU (on 2 cores 16 to 64 are equal within the noise, 8 and below slower; a search
    #: query arriving during indexing waits for at most one running batch) and 256 on CUDA
    #: (see benchmarks/README.md, "Throughput").
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    #: How long a batch may wait for more items after its first one arrived (ms).
    #: Larger: fuller batches under moderate load; smaller: lower latency when idle.
    batch_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    #: Items (crops + texts) admitted and not yet encoded; a request that would exceed it
    #: is refused with 429 + Retry-After. Larger: absorbs bursts, but requests may wait
    #: longer than the callers' timeout; smaller: callers back off sooner.
    max_queue_items: int = Field(default=1024, ge=1)
    #: The same bound for requests marked ``X-Priority: query`` (searches), which have a
    #: lane of their own: a full indexing backlog never refuses a search. Unset: the
    #: largest request, or a quarter of MAX_QUEUE_ITEMS if that is more.
    max_query_queue_items: int | None = Field(default=None, ge=1)
    #: Query batches are formed before bulk (indexing) ones; after this many in a row
    #: while bulk items wait, one bulk batch goes. Larger: searches wait less under a
    #: stream of searches; smaller: indexing slows less.
    query_batches_per_bulk: int = Field(default=4, ge=1, le=1000)
    #: Most crops in one ``/v1/embed/pixels`` request (bigger requests: 413).
    max_request_crops: int = Field(default=256, ge=1)
    #: Most texts in one ``/v1/embed/texts`` request, and longest text (characters).
    max_request_texts: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=1000, ge=1)
    #: torch intra-op threads; unset: torch's default (one per core).
    torch_threads: int | None = Field(default=None, ge=1)

    @field_validator(
        "max_batch_size",
        "torch_threads",
        "max_query_queue_items",
        "encoder_precision",
        "onnx_cache_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return empty_is_unset(value)

    @field_validator("clip_pretrained", "clip_model", "device")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("encoder_engine", "encoder_precision")
    @classmethod
    def _known_choice(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        choices = ENGINE_CHOICES if info.field_name == "encoder_engine" else tuple(PRECISIONS)
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _precision_fits_engine(self) -> EncoderSettings:
        precision = self.encoder_precision
        engine = self.encoder_engine
        if precision is not None and engine != "auto" and engine not in PRECISIONS[precision]:
            engines = " or ".join(f"ENCODER_ENGINE={e}" for e in PRECISIONS[precision])
            raise ValueError(
                f"ENCODER_PRECISION={precision} does not apply to "
                f"ENCODER_ENGINE={self.encoder_engine}; it needs {engines}"
            )
        return self

    @model_validator(mode="after")
    def _request_fits_queue(self) -> EncoderSettings:
        # A request larger than the whole queue could never be admitted: every retry of it
        # would get 429 again. Refuse the configuration instead.
        biggest = max(self.max_request_crops, self.max_request_texts)
        for name, bound in (
            ("MAX_QUEUE_ITEMS", self.max_queue_items),
            ("MAX_QUERY_QUEUE_ITEMS", self.query_queue_items),
        ):
            if biggest > bound:
                raise ValueError(
                    f"{name} ({bound}) must be at least MAX_REQUEST_CROPS "
                    f"({self.max_request_crops}) and MAX_REQUEST_TEXTS ({self.max_request_texts})"
                )
        return self

    @property
    def query_queue_items(self) -> int:
        """``max_query_queue_items``, or its default."""
        if self.max_query_queue_items is not None:
            return self.max_query_queue_items
        biggest = max(self.max_request_crops, self.max_request_texts)
        return max(biggest, self.max_queue_items // 4)

    def batch_size_for(self, device_type: str) -> int:
        """``max_batch_size``, or the default for the device type (``cpu``, ``cuda``)."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return DEFAULT_BATCH_SIZES.get(device_type, DEFAULT_BATCH_SIZES["cpu"])

    def engine_for(self, device_type: str) -> str:
        """The engine that runs the model: ``encoder_engine``, or for ``auto`` the one
        engine ``encoder_precision`` applies to (int8: onnx; fp16, bf16: torch), else
        onnx on a CPU (``device_type`` ``cpu``: measured faster there) and torch on CUDA."""
        if self.encoder_engine != "auto":
            return self.encoder_engine
        if self.encoder_precision is not None:
            engines = PRECISIONS[self.encoder_precision]
            if len(engines) == 1:
                return engines[0]
        return "onnx" if device_type == "cpu" else "torch"

    @property
    def onnx_cache_root(self) -> Path:
        """``onnx_cache_dir``, or its default ``DATA_DIR/onnx``."""
        if self.onnx_cache_dir is None:
            return self.data_dir / "onnx"
        return Path(self.onnx_cache_dir).expanduser()

    @property
    def uses_random_weights(self) -> bool:
        return self.clip_pretrained.lower() == RANDOM_WEIGHTS
