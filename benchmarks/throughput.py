"""Throughput benchmark: indexing, encoding and search, measured (``make bench-throughput``).

A program, not a test: it prints a table and writes JSON (``--out DIR``). Sections
(``--only``, comma-separated; default all):

- ``model``    crops/s of the bare open_clip image tower at its best batch size: the ceiling;
               and each engine of ``--engines`` (torch fp32, ONNX Runtime fp32 and int8;
               OpenVINO where installed) through its ``encode_pixels``, side by side in
               one run. The other sections run the torch engine (``--env
               ENCODER_ENGINE=auto`` for the default one).
- ``encoder``  crops/s through the encoder's HTTP API under concurrent load, as a ratio to
               ``model`` (measured again right after, to bracket the noise); latency p50/p99.
- ``prep``     CPU cost per image of decode + windows, per format, for each decode option.
- ``indexing`` images/s through Redis → workers → encoder → search API → Edge for a folder
               of real photos of mixed sizes; pipeline efficiency and the time per stage.
- ``naive``    the original system's way (the baseline) on the same photos and model (full
               decode, windows cropped and preprocessed one at a time, forward passes of
               64), as a ratio.
- ``fidelity`` cosine of the pipeline's vectors against open_clip's own on the same crops.
- ``search``   latency of by-image (full, partial, both) and by-text with 10 000 images
               indexed (synthetic vectors, real query image), server-side split, saturation.
- ``scale``    N window vectors in the embedded store with and without int8 quantization:
               build time, RAM per vector, recall@10 and latency for several ``hnsw_ef``.

``--quick`` is a smoke run of a few minutes. Every figure on this shared 2-core machine is
noisy: ratios are taken within one run, and the JSON keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

SUMMARY_KEYS = ("section", "what", "value", "target", "verdict")
SECTIONS = ("model", "encoder", "prep", "indexing", "naive", "fidelity", "search", "scale")

#: Targets of the issue: key → (threshold, "min" or "max"), on a CPU and on a GPU.
TARGETS_CPU = {
    "encoder_ratio": (0.9, "min"),
    "indexing_efficiency": (0.85, "min"),
    "speedup_vs_naive": (3.0, "min"),
    "search_except_encode_p50_ms": (15.0, "max"),
    "scale_top10_p50_ms": (10.0, "max"),
    "scale_recall_at_10": (0.98, "min"),
}
TARGETS_GPU = {"encoder_ratio": (0.7, "min")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/bench"), help="where the JSON goes")
    p.add_argument("--cache", type=Path, help="downloaded photos (default: OUT/cache)")
    p.add_argument("--photos", type=Path, help="a folder of photos instead of the wallpapers")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    p.add_argument("--pretrained", default="random", help="open_clip tag, checkpoint or random")
    p.add_argument("--fp32", action="store_true", help="fp32 on CUDA too (default fp16)")
    p.add_argument(
        "--engines",
        default="torch-fp32,onnx-fp32,onnx-int8",
        help="model section: ENCODER_ENGINE-ENCODER_PRECISION pairs compared side by side "
        "(onnx ones on the CPU only; openvino-fp32, openvino-int8, openvino-int8static: "
        "OpenVINO on the onnx graph, where openvino and nncf are installed); empty: none",
    )
    p.add_argument("--images", type=int, help="photos for indexing and naive (default 60)")
    p.add_argument("--workers", type=int, default=2, help="indexer worker processes")
    p.add_argument(
        "--indexing-mode",
        choices=("stack", "inprocess"),
        default="stack",
        help="stack: redis + workers + API; inprocess: no Redis (machines without it)",
    )
    p.add_argument("--decode-processes", type=int, help="inprocess mode: decode processes")
    p.add_argument("--encoder-batch", type=int, help="MAX_BATCH_SIZE of the encoder")
    p.add_argument("--clients", type=int, help="concurrent clients of the encoder load")
    p.add_argument("--search-images", type=int, help="images in the search index (10000)")
    p.add_argument("--scale", type=int, help="window vectors of the scale section (300000)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the services (e.g. JPEG_DRAFT=false WINDOW_PRESCALE=0)",
    )
    return p.parse_args(argv)


class Plan:
    """Sizes of every section, from --quick and the explicit options."""

    def __init__(self, args: argparse.Namespace, cuda: bool) -> None:
        q = args.quick
        self.batch_sizes = (
            [32, 64, 128, 256, 512] if cuda else ([8, 16, 32] if q else [4, 8, 16, 32, 64])
        )
        self.model_seconds = 1.5 if q else 4.0
        # A worker sends one image (about 15 crops) per request; a GPU needs more in flight.
        self.clients = args.clients or (16 if cuda else (4 if q else 8))
        self.crops_per_request = 64 if cuda else 16
        self.encoder_warmup_s = 5.0
        self.encoder_seconds = 15.0 if q else (20.0 if cuda else 40.0)
        self.images = args.images or (12 if q else 60)
        self.prep_images = 12 if q else 40
        self.fidelity_images = 3 if q else 12
        self.search_images = args.search_images or (500 if q else 10_000)
        self.search_requests = 20 if q else 100
        self.saturation_s = 5.0 if q else 20.0
        self.scale = args.scale or (10_000 if q else 300_000)


def _section_enabled(args: argparse.Namespace, name: str) -> bool:
    return name in {s.strip() for s in args.only.split(",")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = {s.strip() for s in args.only.split(",")} - set(SECTIONS)
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    # torch and the services are imported late: --help stays fast.
    import torch

    from .throughput_run import run_sections

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    plan = Plan(args, cuda)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = args.cache or out_dir / "cache"
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([sys.executable, "-m", "benchmarks.throughput", *sys.argv[1:]]),
            "quick": args.quick,
            "host": platform.node(),
            "cpu_cores": os.cpu_count(),
            "device": device,
            "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "model": args.model,
            "weights": args.pretrained,
            "torch": torch.__version__,
        },
    }
    partial = out_dir / "throughput-partial.json"

    def checkpoint() -> None:
        partial.write_text(json.dumps(results, indent=2, default=str))

    try:
        run_sections(args, plan, device, cache, work, results, checkpoint)
    finally:
        from .throughput_report import print_table, summarize

        results["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
        rows = summarize(results, TARGETS_GPU if cuda else TARGETS_CPU)
        results["summary"] = [dict(zip(SUMMARY_KEYS, r, strict=True)) for r in rows]
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = out_dir / f"throughput-{stamp}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
        shutil.copyfile(path, out_dir / "throughput-latest.json")
        partial.unlink(missing_ok=True)
        print_table(rows)
        print(f"\nJSON: {path}  ({results['meta']['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
