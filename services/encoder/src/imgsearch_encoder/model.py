"""The CLIP model: loading through open_clip, and the two encode calls.

Only this module knows about torch and open_clip. The pixels it receives are
already resized and centre-cropped by the callers exactly like open_clip's eval
``preprocess`` (``imgsearch_common.imaging.model_input``); what is left here is
the float conversion, the mean/std normalisation (done on the device, so only
uint8 crosses the PCIe bus) and the forward pass.

Both encode calls block; the batcher runs them in its model thread.

Two engines run the loaded model (``ENCODER_ENGINE``): :class:`ClipEncoder` (torch, here)
and ``onnx_engine.OnnxEncoder`` (the same model exported to ONNX, run by ONNX Runtime on
the CPU). Both satisfy :class:`Engine`, which is all the batcher and the app see.

On CUDA with ``GPU_MIXED_PRECISION`` the weights themselves are cast to fp16 (rather
than autocast, which re-casts every weight on every forward pass), and the crops go
through a reused page-locked (pinned) staging buffer, so the host-to-device copy is a
plain DMA that does not block the host thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from imgsearch_common.catalog import model_fingerprint

from .settings import DEFAULT_ONNX_PRECISION, EncoderSettings

log = logging.getLogger(__name__)

#: ENCODER_PRECISION of the torch engine → (the weights' dtype, its name in /health).
_TORCH_DTYPES = {
    "fp32": (torch.float32, "float32"),
    "fp16": (torch.float16, "float16"),
    "bf16": (torch.bfloat16, "bfloat16"),
}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_SCHEMAS = ("hf-hub:", "local-dir:")


class ModelLoadError(RuntimeError):
    """The configured model cannot be loaded; the message says what to change."""


class Engine(Protocol):
    """A loaded model, whatever runs it: what the batcher, the app and /health use."""

    #: ``torch`` or ``onnx`` (``ENCODER_ENGINE``).
    engine: str
    #: ``fp32``, ``fp16``, ``bf16`` or ``int8`` (``ENCODER_PRECISION``, resolved).
    precision: str
    model_name: str
    pretrained: str
    device: torch.device
    #: ``float32``, ``float16``, ``bfloat16`` or ``int8``: what the forward pass computes in.
    dtype: str
    dim: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Which model this is, whatever the engine and precision (``imgsearch_common.catalog``):
    #: what a collection records and a search is checked against.
    fingerprint: str

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def warmup(self) -> None: ...

    def gpu_memory_used(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class InputSpec:
    """The model's input: square side and the normalisation of its eval preprocessing."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def input_spec(model: torch.nn.Module, model_name: str) -> InputSpec:
    """What open_clip's eval ``preprocess`` of ``model`` does, as the pixel wire format
    needs it; raises :class:`ModelLoadError` for a non-square input."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height != width:
        raise ModelLoadError(
            f"{model_name} expects {width}x{height} inputs; the pixel wire format "
            "carries square crops only"
        )
    interpolation = cfg.get("interpolation", "bicubic")
    resize_mode = cfg.get("resize_mode", "shortest")
    if (interpolation, resize_mode) != ("bicubic", "shortest"):
        # imaging.model_input reproduces only the bicubic shortest-side resize.
        log.warning(
            "%s preprocesses with %s interpolation and resize mode %r; the clients' "
            "model_input() does bicubic shortest-side resize + centre crop, so their "
            "crops will differ slightly from what this model was trained on",
            model_name,
            interpolation,
            resize_mode,
        )
    return InputSpec(
        image_size=int(height),
        mean=tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD)),
    )


def check_pixels(pixels: np.ndarray, size: int) -> None:
    """Refuse (``ValueError``) anything but ``(N, size, size, 3)`` uint8 pixels: the wire format."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
        raise ValueError(
            f"expected uint8 pixels of shape (N, {size}, {size}, 3), "
            f"got {pixels.dtype} {pixels.shape}"
        )


def _offline_hint(model_name: str) -> str:
    return (
        f"Set CLIP_PRETRAINED to the path of a local open_clip checkpoint file for "
        f"{model_name} (for example one downloaded on a machine with network access), "
        f"or CLIP_PRETRAINED=random for seeded random weights (works offline, but search "
        f"results are then not semantic)."
    )


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as torch spells it."""
    if spec.lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"DEVICE={spec!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"DEVICE={spec!r} but CUDA is not available; use DEVICE=cpu or auto")
    return device


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of every tensor of the state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


class ClipEncoder:
    """A loaded open_clip model in eval mode, run by torch, with the facts callers need."""

    engine = "torch"
    #: Set by :func:`load_encoder` (``imgsearch_common.catalog.model_fingerprint``).
    fingerprint = ""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        model_name: str,
        pretrained: str,
        device: torch.device,
        mixed_precision: bool = False,
        precision: str | None = None,
    ) -> None:
        """``precision`` (fp32, fp16, bf16; the last two on CUDA only) wins over the older
        ``mixed_precision`` (fp16 on CUDA), which applies when it is None."""
        self.model: Any = model  # open_clip.CLIP or a subclass (untyped upstream)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = device
        if precision is None:
            precision = "fp16" if device.type == "cuda" and mixed_precision else "fp32"
        check_torch_precision(precision, device)
        self.precision = precision
        self._compute_dtype, self.dtype = _TORCH_DTYPES[precision]
        if self._compute_dtype != torch.float32:
            self.model.to(self._compute_dtype)
        # Pinned host buffer the crops are copied into before going to the GPU (grown on
        # demand). Reusing it is safe: every call waits for its results before returning.
        self._staging: torch.Tensor | None = None

        spec = input_spec(model, model_name)
        self.image_size = spec.image_size
        self.mean = spec.mean
        self.std = spec.std
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        output_dim = getattr(getattr(model, "visual", None), "output_dim", None)
        self.dim = int(output_dim) if output_dim else int(self.encode_texts([""]).shape[1])

    def _to_device(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 crops onto the model's device (through pinned memory on CUDA)."""
        if self.device.type != "cuda":
            if not pixels.flags.writeable:
                pixels = pixels.copy()  # torch.from_numpy warns on read-only memory
            return torch.from_numpy(pixels)
        n = pixels.shape[0]
        if self._staging is None or self._staging.shape[0] < n:
            self._staging = torch.empty(
                (max(n, 64), *pixels.shape[1:]), dtype=torch.uint8, pin_memory=True
            )
        staging = self._staging[:n]
        np.copyto(staging.numpy(), pixels)
        return staging.to(self.device, non_blocking=True)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 RGB → ``(N, D)`` float32, L2-normalised."""
        check_pixels(pixels, self.image_size)
        with torch.inference_mode():
            x = self._to_device(pixels)
            # NHWC memory seen as NCHW is channels_last, which convolutions take as is.
            x = x.permute(0, 3, 1, 2).float()
            x = x.div_(255.0).sub_(self._mean).div_(self._std).to(self._compute_dtype)
            features = self.model.encode_image(x)
            features = F.normalize(features.float(), dim=-1)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``N`` strings → ``(N, D)`` float32, L2-normalised (open_clip's tokenizer)."""
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device, non_blocking=True)
            features = self.model.encode_text(tokens)
            features = F.normalize(features.float(), dim=-1)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def warmup(self) -> None:
        """One tiny forward pass of each tower, so the first request does not pay for
        lazy initialisation (CUDA kernels, allocator), and a broken model fails at start."""
        self.encode_pixels(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.uint8))
        self.encode_texts(["warm-up"])

    def gpu_memory_used(self) -> int:
        """Bytes of tensors allocated on the CUDA device; 0 on the CPU. A counter read of
        torch's allocator (no device sync): cheap enough to report with every answer."""
        if self.device.type != "cuda":
            return 0
        return int(torch.cuda.memory_allocated(self.device))

    def close(self) -> None:
        self.model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def check_torch_precision(precision: str, device: torch.device) -> None:
    """Refuse (:class:`ModelLoadError`) a precision the torch engine has no dtype for on
    ``device``."""
    if precision not in _torch_precisions(device):
        raise ModelLoadError(
            f"ENCODER_PRECISION={precision} does not apply to ENCODER_ENGINE=torch on "
            f"{device.type}: {', '.join(_torch_precisions(device))} do"
        )


def _torch_precisions(device: torch.device) -> list[str]:
    return list(_TORCH_DTYPES) if device.type == "cuda" else ["fp32"]


def _create_random(model_name: str, seed: int) -> torch.nn.Module:
    # The seed makes the weights identical in every process (indexer and searcher then
    # share one embedding space). fork_rng keeps the process-wide RNG untouched; the
    # model is built on the CPU, whose generator is the one seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=None)
    return _module(model)


def _create_pretrained(model_name: str, pretrained: str) -> torch.nn.Module:
    if model_name.startswith(_SCHEMAS):
        # hf-hub:/local-dir: names carry their own weights; open_clip ignores `pretrained`.
        try:
            model, _, _ = open_clip.create_model_and_transforms(model_name)
        except Exception as exc:
            raise ModelLoadError(
                f"could not load CLIP_MODEL={model_name!r} ({type(exc).__name__}: {exc}). "
                "Point it at a local folder with local-dir:/path, or use CLIP_PRETRAINED=random "
                "with a built-in model name."
            ) from exc
        return _module(model)
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            looks_like_path = os.sep in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES)
            what = "is not a file" if looks_like_path else "is neither a file nor a known tag"
            raise ModelLoadError(
                f"CLIP_PRETRAINED={pretrained!r} {what} (tags known for {model_name}: "
                f"{', '.join(tags) or 'none'}). {_offline_hint(model_name)}"
            )
        pretrained = str(path)
    try:
        # Checkpoints trained with QuickGELU (all of OpenAI's) need it in the model too;
        # open_clip only warns about the mismatch and would build a subtly wrong model.
        model, _, _ = open_clip.create_model_and_transforms(
            model_name,
            pretrained=pretrained,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
        )
    except Exception as exc:
        source = "download the weights for tag" if tag_cfg else "load the checkpoint file"
        raise ModelLoadError(
            f"could not {source} CLIP_PRETRAINED={pretrained!r} for {model_name} "
            f"({type(exc).__name__}: {exc}). {_offline_hint(model_name)}"
        ) from exc
    return _module(model)


def _module(model: object) -> torch.nn.Module:
    """open_clip's factory is untyped: check once that it gave a torch module."""
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"open_clip returned a {type(model).__name__}, not a model")
    return model


def _engine_and_device(settings: EncoderSettings) -> tuple[str, torch.device]:
    """The engine (``ENCODER_ENGINE``, ``auto`` resolved) and the device it runs on; raises
    :class:`ModelLoadError` for a combination that cannot run, before any weight is loaded."""
    auto_device = settings.device.lower() == "auto"
    if settings.encoder_engine == "onnx" and auto_device:
        device = torch.device("cpu")  # the CPU-only engine asked for: DEVICE=auto is the CPU
    else:
        device = resolve_device(settings.device)
    engine = settings.engine_for(device.type)
    if engine == "onnx":
        if auto_device:
            device = torch.device("cpu")  # ENCODER_PRECISION=int8 on a machine with CUDA
        if device.type != "cpu":
            # The ONNX Runtime wheel the encoder installs runs on the CPU only.
            raise ModelLoadError(
                f"ENCODER_ENGINE=onnx runs on the CPU (DEVICE={settings.device!r}); "
                "set DEVICE=cpu or auto, or ENCODER_ENGINE=torch for the GPU"
            )
    elif settings.encoder_precision is not None:
        check_torch_precision(settings.encoder_precision, device)  # before loading weights
    return engine, device


def load_encoder(settings: EncoderSettings) -> Engine:
    """Load the model the settings name and the engine that runs it. Blocking (seconds;
    the ONNX engine's first start exports the graphs, tens of seconds); raises
    :class:`ModelLoadError`."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    engine, device = _engine_and_device(settings)
    name = settings.clip_model
    if not name.startswith(_SCHEMAS):
        name = name.replace("/", "-")  # open_clip's own spelling: ViT-B/32 → ViT-B-32
        if name not in open_clip.list_models():
            raise ModelLoadError(
                f"CLIP_MODEL={settings.clip_model!r} is not an open_clip model name "
                "(see open_clip.list_models())"
            )

    if settings.uses_random_weights:
        if name.startswith(_SCHEMAS):
            raise ModelLoadError("CLIP_PRETRAINED=random needs a built-in CLIP_MODEL name")
        log.warning(
            "\n%s\n  CLIP_PRETRAINED=random: %s with RANDOM weights (seed %d).\n"
            "  Embeddings are NOT semantic: text search will not find what it names,\n"
            "  only near-duplicates and crops will be found. For real results set\n"
            "  CLIP_PRETRAINED to an open_clip tag or a local checkpoint file.\n%s",
            "!" * 78,
            name,
            settings.clip_random_seed,
            "!" * 78,
        )
        try:
            model = _create_random(name, settings.clip_random_seed)
        except Exception as exc:
            raise ModelLoadError(f"could not build {name}: {type(exc).__name__}: {exc}") from exc
        label = "random"
    else:
        model = _create_pretrained(name, settings.clip_pretrained)
        # A file path is reported by name only: /health is open to anyone.
        label = settings.clip_pretrained
        if Path(label).expanduser().is_file():
            label = Path(label).name

    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(name)
    weights = weights_hash(model)  # before the model moves to a device or a dtype
    encoder: Engine
    if engine == "onnx":
        from .onnx_engine import load_onnx_encoder  # only this engine needs onnx

        encoder = load_onnx_encoder(
            model,
            tokenizer,
            model_name=name,
            pretrained=label,
            precision=settings.encoder_precision or DEFAULT_ONNX_PRECISION,
            cache_root=settings.onnx_cache_root,
            threads=settings.torch_threads,
            weights=weights,
        )
    else:
        model.to(device)
        encoder = ClipEncoder(
            model,
            tokenizer,
            model_name=name,
            pretrained=label,
            device=device,
            mixed_precision=settings.gpu_mixed_precision,
            precision=settings.encoder_precision,
        )
    encoder.fingerprint = model_fingerprint(name, label, encoder.image_size, weights)
    log.info(
        "loaded %s (%s) on %s, engine %s%s, %s, dim %d, input %dpx, fingerprint %s",
        name,
        label,
        encoder.device,
        encoder.engine,
        " (ENCODER_ENGINE=auto)" if settings.encoder_engine == "auto" else "",
        encoder.dtype,
        encoder.dim,
        encoder.image_size,
        encoder.fingerprint,
    )
    return encoder
