"""Sections that run the model in this process: the ceiling, the naive reference, fidelity.

- :func:`model_only` — crops/s of the bare open_clip image tower (``encode_image`` on a
  tensor already on the device) for several batch sizes: the ceiling everything else is
  compared with.
- :func:`naive_reference` — the original system's way of indexing (the baseline):
  full-resolution decode, every window cropped and run through open_clip's ``preprocess``
  one at a time, forward passes of 64. Same photos, same windows, same model.
- :func:`fidelity` — cosine between the pipeline's vectors (``prepare_image`` + the
  encoder's own normalisation) and open_clip's ``preprocess`` + ``encode_image`` of the
  same crops cut with Pillow from the decoded pixels, and from a full-resolution decode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from imgsearch_common.imaging import decode_image
from imgsearch_common.windows import WindowLayout
from imgsearch_encoder.model import ClipEncoder
from imgsearch_worker.pipeline import prepare_image

from .throughput_data import Photo

#: The product's default window layout, spelled out: the benchmark's figures are for it.
LAYOUT = WindowLayout(geometry="relative", scales=(0.75, 0.5), overlap=0.5, max_windows=16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _input(enc: ClipEncoder, bs: int, layout: str, dtype: torch.dtype) -> torch.Tensor:
    """Random crops, normalised like the encoder does, in one of two memory layouts:
    ``nchw`` (contiguous) or ``nhwc`` (channels-last, what the encoder's uint8 input
    becomes after its permute)."""
    size = enc.image_size
    x = torch.randint(0, 256, (bs, size, size, 3), dtype=torch.uint8, device=enc.device)
    x = x.permute(0, 3, 1, 2).float().div(255.0).sub(enc._mean).div(enc._std).to(dtype)
    return x.contiguous() if layout == "nchw" else x


def model_only(
    enc: ClipEncoder, batch_sizes: Sequence[int], seconds: float, *, min_iters: int = 2
) -> dict[str, Any]:
    """Crops/s of ``enc.model.encode_image`` per batch size, input already on the device,
    in the faster of two memory layouts (measured: channels-last is faster on CPU)."""
    dtype = torch.float16 if enc.dtype == "float16" else torch.float32
    rates: dict[int, float] = {}
    per_cpu_s: dict[int, float] = {}
    by_layout: dict[str, dict[str, float]] = {"nchw": {}, "nhwc": {}}
    for bs in batch_sizes:
        try:
            for layout in ("nchw", "nhwc"):
                x = _input(enc, bs, layout, dtype)
                with torch.inference_mode():
                    for _ in range(2):
                        enc.model.encode_image(x)
                    _sync(enc.device)
                    iters = 0
                    cpu_started = time.process_time()
                    started = time.perf_counter()
                    while iters < min_iters or time.perf_counter() - started < seconds:
                        enc.model.encode_image(x)
                        iters += 1
                        if enc.device.type == "cuda" and iters % 8 == 0:
                            _sync(enc.device)
                    _sync(enc.device)
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu_started
                rate = iters * bs / elapsed
                by_layout[layout][str(bs)] = round(rate, 2)
                if rate > rates.get(bs, 0.0):
                    rates[bs] = rate
                    per_cpu_s[bs] = iters * bs / cpu if cpu > 0 else 0.0
                del x
        except torch.OutOfMemoryError:
            break
    best = max(rates, key=lambda b: rates[b])
    return {
        "crops_per_s_by_batch": {str(b): round(r, 2) for b, r in rates.items()},
        "crops_per_s_by_layout": by_layout,
        "best_batch": best,
        "crops_per_s": round(rates[best], 2),
        # Crops per CPU-second of this process (all threads): on a shared machine the wall
        # clock measures how much CPU the others left; this measures the work per crop.
        "crops_per_cpu_s_by_batch": {str(b): round(r, 3) for b, r in per_cpu_s.items()},
    }


def naive_reference(
    photos: Sequence[Photo],
    model: Any,
    preprocess: Any,
    device: torch.device,
    dtype: torch.dtype,
    *,
    batch: int = 64,
) -> dict[str, Any]:
    """The original system's indexing loop on ``photos`` (the baseline: full decode, every
    crop through open_clip's ``preprocess``); images/s and where its time goes."""
    spent = {"read": 0.0, "decode": 0.0, "windows": 0.0, "encode": 0.0}
    pending: list[torch.Tensor] = []
    crops = 0

    def flush() -> None:
        nonlocal pending
        t = time.perf_counter()
        with torch.inference_mode():
            x = torch.stack(pending).to(device, dtype)
            torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1).cpu()
        spent["encode"] += time.perf_counter() - t
        pending = []

    started = time.perf_counter()
    for photo in photos:
        t0 = time.perf_counter()
        data = photo.path.read_bytes()
        t1 = time.perf_counter()
        img = decode_image(data, max_pixels=10**9)
        t2 = time.perf_counter()
        boxes = LAYOUT.boxes(img.width, img.height)
        for view in [img, *(img.crop(b) for b in boxes)]:
            pending.append(preprocess(view))
        crops += 1 + len(boxes)
        t3 = time.perf_counter()
        spent["read"] += t1 - t0
        spent["decode"] += t2 - t1
        spent["windows"] += t3 - t2
        while len(pending) >= batch:
            rest = pending[batch:]
            pending = pending[:batch]
            flush()
            pending = rest
    if pending:
        flush()
    wall = time.perf_counter() - started
    return {
        "images": len(photos),
        "crops": crops,
        "batch": batch,
        "wall_s": round(wall, 2),
        "images_per_s": round(len(photos) / wall, 3),
        "crops_per_s": round(crops / wall, 2),
        "stage_s_per_image": {k: round(v / len(photos), 4) for k, v in spent.items()},
        "share_of_time": {k: round(v / wall, 3) for k, v in spent.items()},
    }


def fidelity(
    photos: Sequence[Photo], enc: ClipEncoder, model: Any, preprocess: Any
) -> dict[str, Any]:
    """Pipeline vectors vs open_clip's own, on the decoded pixels and on a full decode."""
    same_pixels: list[np.ndarray] = []
    full_decode: list[np.ndarray] = []
    drafted = prescaled = 0
    for photo in photos:
        prepared = prepare_image(
            str(photo.path),
            image_size=enc.image_size,
            max_bytes=10**9,
            max_pixels=10**9,
            layout=LAYOUT,
            keep_decoded=True,
        )
        drafted += prepared.decoded_size != (prepared.width, prepared.height)
        prescaled += prepared.prescaled
        ours = enc.encode_pixels(prepared.pixels)
        decoded = prepared.decoded
        assert decoded is not None and prepared.decoded_boxes is not None
        same = [decoded, *(decoded.crop(b) for b in prepared.decoded_boxes)]
        full = decode_image(photo.path.read_bytes(), max_pixels=10**9)
        full_res = [full, *(full.crop(b) for b in prepared.boxes)]
        for views, out in ((same, same_pixels), (full_res, full_decode)):
            with torch.inference_mode():
                x = torch.stack([preprocess(v) for v in views]).to(enc.device)
                x = x.to(torch.float16 if enc.dtype == "float16" else torch.float32)
                ref = torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1)
            out.append(np.sum(ours * ref.cpu().numpy(), axis=1))

    def summary(values: list[np.ndarray]) -> dict[str, float]:
        a = np.concatenate(values)
        return {
            "min": round(float(a.min()), 6),
            "p1": round(float(np.percentile(a, 1)), 6),
            "mean": round(float(a.mean()), 6),
        }

    return {
        "images": len(photos),
        "crops": int(sum(len(v) for v in same_pixels)),
        "jpeg_draft_decoded": int(drafted),
        "prescaled": int(prescaled),
        "cosine_vs_open_clip_same_decoded_pixels": summary(same_pixels),
        "cosine_vs_open_clip_full_resolution_decode": summary(full_decode),
    }


def engines_model_only(
    engines: dict[str, Any], batch_sizes: Sequence[int], seconds: float, *, rounds: int = 2
) -> dict[str, Any]:
    """Crops/s of each engine's ``encode_pixels`` (uint8 crops in, normalised vectors out:
    what the batcher calls) per batch size. Rounds interleave the engines, so that a
    neighbour's load on this shared machine hits all of them alike; the best round counts."""
    rates: dict[str, dict[int, float]] = {name: {} for name in engines}
    size = next(iter(engines.values())).image_size
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for bs in batch_sizes:
            x = rng.integers(0, 256, (bs, size, size, 3), dtype=np.uint8)
            for name, engine in engines.items():
                engine.encode_pixels(x)  # warm this batch shape
                iters = 0
                started = time.perf_counter()
                while iters < 2 or time.perf_counter() - started < seconds:
                    engine.encode_pixels(x)
                    iters += 1
                rate = iters * bs / (time.perf_counter() - started)
                rates[name][bs] = max(rate, rates[name].get(bs, 0.0))
    by_engine: dict[str, Any] = {}
    for name, by_batch in rates.items():
        best = max(by_batch, key=lambda b: by_batch[b])
        by_engine[name] = {
            "crops_per_s_by_batch": {str(b): round(r, 2) for b, r in by_batch.items()},
            "best_batch": best,
            "crops_per_s": round(by_batch[best], 2),
        }
    base = by_engine.get("torch-fp32", {}).get("crops_per_s")
    return {
        "rounds": rounds,
        "seconds_per_measure": seconds,
        "by_engine": by_engine,
        "ratio_to_torch_fp32": {
            name: round(e["crops_per_s"] / base, 2) for name, e in by_engine.items() if base
        },
    }


def engines_agreement(engines: dict[str, Any], reference: str, crops: int = 16) -> dict[str, float]:
    """Min cosine of each engine's vectors to ``reference``'s on the same crops (uniform
    random pixels: a check that the engines compute the same thing; the tests measure it
    on photos' crops)."""
    if reference not in engines:
        return {}
    size = engines[reference].image_size
    x = np.random.default_rng(1).integers(0, 256, (crops, size, size, 3), dtype=np.uint8)
    want = engines[reference].encode_pixels(x)
    return {
        name: round(float(np.min(np.sum(engine.encode_pixels(x) * want, axis=1))), 6)
        for name, engine in engines.items()
        if name != reference
    }
