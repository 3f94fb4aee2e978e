"""The ONNX Runtime engine: the loaded open_clip model, exported once, run on the CPU.

Both towers are exported from the very model ``load_encoder`` built (any ``CLIP_MODEL``
and ``CLIP_PRETRAINED``, random weights included), with everything :class:`ClipEncoder`
does around the forward pass inside the graph: the image graph takes the wire format
itself, ``(N, S, S, 3)`` uint8, and does the float conversion, the mean/std
normalisation and the final L2 normalisation; the text graph takes open_clip's tokens
and ends with ``encode_text``'s projection and the same normalisation. Only the
tokenizer stays in Python.

The graphs are cached under ``ONNX_CACHE_DIR/<fingerprint>/`` (default
``DATA_DIR/onnx``); the fingerprint covers the model name, the pretrained tag, a hash of
every weight, the export settings, the precision and the versions of torch, onnx,
onnxruntime and open_clip, so any change exports again. A cache folder is written under a
temporary name and renamed when it is complete (its ``manifest.json``, written last, lists
every file and its size): a crash mid-export leaves a folder that is never loaded.
Encoders sharing the cache export a fingerprint once (a lock on the cache folder: the
others wait, then load it). ``int8`` is ONNX Runtime's dynamic
quantization (int8 weights, activations quantized per batch at run time).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import open_clip
import torch
import torch.nn.functional as F
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch.jit._trace import TracerWarning  # not re-exported by torch.jit for mypy

from .model import InputSpec, ModelLoadError, check_pixels, input_spec, weights_hash

log = logging.getLogger(__name__)

#: Precisions this engine runs.
PRECISIONS = ("fp32", "int8")
#: What decides the graphs besides the weights; bump ``format`` when the export changes.
EXPORT_SETTINGS: dict[str, Any] = {
    "format": 1,
    "exporter": "torchscript",  # torch.onnx.export(dynamo=False)
    "opset": 17,
    "image_input": "uint8 NHWC, normalised in the graph",
    "output": "L2-normalised float32",
    "int8": "quantize_dynamic QInt8 weights, per tensor",
}
GRAPHS = ("image.onnx", "text.onnx")
MANIFEST = "manifest.json"
#: A temporary export folder older than this is a crashed export's: removed.
_STALE_TMP_S = 3600.0


class _ImageTower(torch.nn.Module):
    """uint8 NHWC crops → L2-normalised embeddings, as ``ClipEncoder.encode_pixels``."""

    def __init__(self, model: Any, spec: InputSpec) -> None:
        super().__init__()
        self.model = model
        # Plain attributes, not buffers: the export makes them constants of the graph.
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        return F.normalize(self.model.encode_image(x), dim=-1)


class _TextTower(torch.nn.Module):
    """Tokens → L2-normalised embeddings, as ``ClipEncoder.encode_texts``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(tokens), dim=-1)


def fingerprint(
    weights: str, *, model_name: str, pretrained: str, precision: str, spec: InputSpec
) -> str:
    """The cache key of the graphs of a model (``weights``: its :func:`weights_hash`) at
    ``precision``."""
    facts = {
        "model": model_name,
        "pretrained": pretrained,
        "weights": weights,
        "precision": precision,
        "input": [spec.image_size, list(spec.mean), list(spec.std)],
        "export": EXPORT_SETTINGS,
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "open_clip": open_clip.__version__,
        },
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def is_complete(folder: Path, key: str) -> bool:
    """``folder`` holds a finished export for ``key``: its manifest names the key and every
    graph file, with the sizes they have."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files: dict[str, int] = manifest["files"]
        return (
            manifest.get("fingerprint") == key
            and all(g in files for g in GRAPHS)
            and all((folder / name).stat().st_size == size for name, size in files.items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(folder: Path, key: str, took_s: float) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    for name in files:
        _fsync(folder / name)
    manifest = {"fingerprint": key, "files": files, "export_s": round(took_s, 1)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    _fsync(folder / MANIFEST)


def _remove_stale_tmp(root: Path) -> None:
    now = time.time()
    for entry in root.glob(".tmp-*"):
        try:
            if now - entry.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _timed_build(build: Callable[[Path], None], folder: Path, what: str) -> float:
    """``build(folder)``, said in the log before (a cold export takes tens of seconds) and
    after, with how long it took; → the seconds."""
    log.info("exporting %s to ONNX into %s (first start with these weights)", what, folder)
    started = time.perf_counter()
    build(folder)
    took = time.perf_counter() - started
    log.info("exported %s in %.1f s", what, took)
    return took


@contextmanager
def _export_lock(root: Path, what: str) -> Iterator[None]:
    """One export at a time among the processes (and threads) sharing the cache ``root``:
    ``flock`` on the folder itself, so no lock file is left behind, and the kernel
    releases it when its holder dies (a killed export never blocks the next start).
    Exports of different fingerprints wait for each other too: each takes every core."""
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another encoder is exporting into %s: %s waits for it", root, what)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def cached_graphs(
    root: Path, key: str, build: Callable[[Path], None], *, what: str = "the graphs"
) -> tuple[Path, bool]:
    """The folder of the graphs for ``key`` under ``root``, built by ``build(folder)`` when
    no complete one is there; → (folder, whether it was built now). An incomplete folder
    under the key's name (a crash, a copy cut short) is replaced. Loaders sharing ``root``
    export a key once: the others wait, then load it. ``what`` names the export in the log.
    Raises OSError when ``root`` cannot be written."""
    final = root / key
    if is_complete(final, key):
        return final, False
    root.mkdir(parents=True, exist_ok=True)
    with _export_lock(root, what):
        if is_complete(final, key):  # exported by whoever held the lock before us
            return final, False
        _remove_stale_tmp(root)
        tmp = root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            took = _timed_build(build, tmp, what)
            _write_manifest(tmp, key, took)
            if final.exists():
                log.warning("%s is an incomplete export: replacing it", final)
                stale = root / f".tmp-stale-{key}-{secrets.token_hex(4)}"
                final.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                tmp.rename(final)
            except OSError:
                if not is_complete(final, key):  # not another process's finished export
                    raise
                return final, False
            return final, True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, name: str) -> None:
    # The TorchScript exporter (dynamo=False) is the one measured here: deprecated in
    # torch 2.9+, it warns on every call, on the text tower's argmax pooling (advanced
    # indexing, exported correctly) and, as a tracer, on open_clip's Python-level shape
    # checks (constant for a given model). The warnings are about the exporter, not about
    # this model (the tests compare the graphs' vectors with torch's): silenced for the call.
    with warnings.catch_warnings():
        for category in (DeprecationWarning, UserWarning, TracerWarning):
            warnings.simplefilter("ignore", category)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[name],
            output_names=["embeddings"],
            dynamic_axes={name: {0: "n"}, "embeddings": {0: "n"}},
            opset_version=EXPORT_SETTINGS["opset"],
            dynamo=False,
        )


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs a line per tensor with ``logging.info`` (the root
    logger): hundreds of lines at LOG_LEVEL=INFO. A filter on the root logger drops only
    records logged on it directly, not those of named loggers propagating through it."""
    quiet = _BelowWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def export_graphs(
    model: torch.nn.Module, tokenizer: Any, spec: InputSpec, precision: str, folder: Path
) -> None:
    """Write ``image.onnx`` and ``text.onnx`` of ``model`` at ``precision`` into ``folder``."""
    size = spec.image_size
    pixels = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    tokens = tokenizer(["an example", "another"])
    # With frozen weights nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which has no ONNX export: off while exporting.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        for graph, tower, example, input_name in (
            ("image.onnx", _ImageTower(model, spec), pixels, "pixels"),
            ("text.onnx", _TextTower(model), tokens, "tokens"),
        ):
            target = folder / graph
            if precision == "int8":
                fp32 = folder / f"fp32-{graph}"
                _export(tower.eval(), example, fp32, input_name)
                with _quiet_root_logger():
                    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
                for leftover in folder.glob("fp32-*"):  # the graph, and external data if any
                    leftover.unlink()
            else:
                _export(tower.eval(), example, target, input_name)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # TORCH_THREADS sizes both engines; unset: ONNX Runtime's default (one per core).
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """The exported towers in two ONNX Runtime sessions; the interface of ClipEncoder."""

    engine = "onnx"
    #: Set by ``load_encoder`` (``imgsearch_common.catalog.model_fingerprint``).
    fingerprint = ""

    def __init__(
        self,
        image: ort.InferenceSession,
        text: ort.InferenceSession,
        tokenizer: Any,
        *,
        model_name: str,
        pretrained: str,
        precision: str,
        spec: InputSpec,
        dim: int,
        graphs: Path | None,
    ) -> None:
        self._image: ort.InferenceSession | None = image
        self._text: ort.InferenceSession | None = text
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.pretrained = pretrained
        self.precision = precision
        self.dtype = "int8" if precision == "int8" else "float32"
        self.device = torch.device("cpu")
        self.image_size = spec.image_size
        self.mean = spec.mean
        self.std = spec.std
        self.dim = dim
        #: The cache folder the graphs were loaded from (None: exported to a temporary one).
        self.graphs = graphs

    def _sessions(self) -> tuple[ort.InferenceSession, ort.InferenceSession]:
        if self._image is None or self._text is None:
            raise RuntimeError("the ONNX encoder is closed")
        return self._image, self._text

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 RGB → ``(N, D)`` float32, L2-normalised."""
        check_pixels(pixels, self.image_size)
        image, _ = self._sessions()
        out = image.run(None, {"pixels": np.ascontiguousarray(pixels)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``N`` strings → ``(N, D)`` float32, L2-normalised (open_clip's tokenizer)."""
        _, text = self._sessions()
        tokens = self.tokenizer(list(texts)).numpy().astype(np.int64, copy=False)
        out = text.run(None, {"tokens": tokens})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def warmup(self) -> None:
        self.encode_pixels(np.zeros((1, self.image_size, self.image_size, 3), dtype=np.uint8))
        self.encode_texts(["warm-up"])

    def gpu_memory_used(self) -> int:
        return 0

    def close(self) -> None:
        self._image = None
        self._text = None


def load_onnx_encoder(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    model_name: str,
    pretrained: str,
    precision: str,
    cache_root: Path,
    threads: int | None,
    weights: str | None = None,
) -> OnnxEncoder:
    """The ONNX engine for ``model`` (on the CPU, in eval mode): the cached graphs, or
    exported now (and cached) when there are none for its fingerprint."""
    if precision not in PRECISIONS:
        raise ModelLoadError(
            f"ENCODER_PRECISION={precision} does not apply to ENCODER_ENGINE=onnx: "
            f"{', '.join(PRECISIONS)} do"
        )
    spec = input_spec(model, model_name)
    output_dim = getattr(getattr(model, "visual", None), "output_dim", None)
    weights = weights or weights_hash(model)
    key = fingerprint(
        weights, model_name=model_name, pretrained=pretrained, precision=precision, spec=spec
    )

    what = f"{model_name} ({pretrained}), {precision}"

    def build(folder: Path) -> None:
        try:
            export_graphs(model, tokenizer, spec, precision, folder)
        except Exception as exc:
            if isinstance(exc, OSError):
                raise
            raise ModelLoadError(
                f"could not export {model_name} to ONNX ({type(exc).__name__}: {exc}); "
                "ENCODER_ENGINE=torch runs it without an export"
            ) from exc

    temporary: Path | None = None
    try:
        folder, _ = cached_graphs(cache_root, key, build, what=what)
        graphs: Path | None = folder
    except OSError as exc:
        # A read-only cache folder must not stop the encoder: export where we can, every start.
        log.warning(
            "cannot cache the ONNX graphs under %s (%s): exporting into a temporary folder; "
            "every start will export again (ONNX_CACHE_DIR names a writable one)",
            cache_root,
            exc,
        )
        temporary = Path(tempfile.mkdtemp(prefix="imgsearch-onnx-"))
        _timed_build(build, temporary, what)
        folder, graphs = temporary, None
    try:
        image = _session(folder / "image.onnx", threads)
        text = _session(folder / "text.onnx", threads)
    except Exception as exc:
        raise ModelLoadError(
            f"ONNX Runtime could not load the graphs in {folder} ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        if temporary is not None:  # the sessions hold the graphs in memory
            shutil.rmtree(temporary, ignore_errors=True)
    encoder = OnnxEncoder(
        image,
        text,
        tokenizer,
        model_name=model_name,
        pretrained=pretrained,
        precision=precision,
        spec=spec,
        dim=0,
        graphs=graphs,
    )
    encoder.dim = int(output_dim) if output_dim else int(encoder.encode_texts([""]).shape[1])
    return encoder
