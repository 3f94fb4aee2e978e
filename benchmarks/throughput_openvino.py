"""OpenVINO as a candidate engine, measured in the engines table (benchmark only).

Not an engine of the product (it did not beat ONNX Runtime here: benchmarks/README.md,
"OpenVINO"): the ``openvino`` package is not a dependency, and the engines named
``openvino-*`` in ``--engines`` are skipped, with the reason in the JSON, where it is not
installed (``pip install openvino nncf``).

The graph OpenVINO compiles is the one the onnx engine exported (``image.onnx`` of its fp32
cache folder: uint8 NHWC crops in, normalised vectors out), so both runtimes run the
same computation:

- ``openvino-fp32``: that graph as it is;
- ``openvino-int8``: its weights compressed to int8 by NNCF (``compress_weights``,
  ``INT8_ASYM``, per channel): like ONNX Runtime's dynamic quantization, it needs no
  calibration data, so it is the comparable one;
- ``openvino-int8static``: NNCF's post-training quantization of weights *and* activations
  (``nncf.quantize``, transformer preset), calibrated on ``CALIBRATION_CROPS`` random
  crops: a speed probe only (calibrating a product on arbitrary pixels is not a choice).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

#: Crops of the calibration set of ``openvino-int8static``.
CALIBRATION_CROPS = 16
PRECISIONS = ("fp32", "int8", "int8static")


def unavailable() -> str | None:
    """Why the OpenVINO engines cannot run here (None: they can)."""
    for module in ("openvino", "nncf"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install openvino nncf)"
    return None


class OpenVinoImageTower:
    """The image graph compiled by OpenVINO for the CPU, with the ``encode_pixels`` the
    engines table calls."""

    def __init__(self, graph: Path, precision: str, image_size: int, threads: int | None) -> None:
        # Imported by name: neither package is a dependency (mypy must pass without them).
        ov: Any = importlib.import_module("openvino")
        if precision not in PRECISIONS:
            raise ValueError(f"openvino precision {precision!r}: one of {', '.join(PRECISIONS)}")
        core = ov.Core()
        model = core.read_model(str(graph))
        if precision != "fp32":
            nncf: Any = importlib.import_module("nncf")
            if precision == "int8":
                model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
            else:
                rng = np.random.default_rng(0)
                crops = [
                    rng.integers(0, 256, (1, image_size, image_size, 3), dtype=np.uint8)
                    for _ in range(CALIBRATION_CROPS)
                ]
                model = nncf.quantize(
                    model,
                    nncf.Dataset(crops),
                    model_type=nncf.ModelType.TRANSFORMER,
                    subset_size=CALIBRATION_CROPS,
                )
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        self.image_size = image_size
        self.version = ov.__version__

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        out = self._compiled(np.ascontiguousarray(pixels))[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def close(self) -> None:
        del self._compiled
