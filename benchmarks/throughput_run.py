"""Runs the sections of the throughput benchmark in order and fills ``results``."""

from __future__ import annotations

import argparse
import gc
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .throughput_data import describe, ensure_photos, list_photos, select


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def service_env(
    args: argparse.Namespace, device: str, onnx_cache: Path | None = None
) -> dict[str, str]:
    env = {
        "CLIP_MODEL": args.model,
        "CLIP_PRETRAINED": args.pretrained,
        "CLIP_RANDOM_SEED": "0",
        "DEVICE": device,
        "GPU_MIXED_PRECISION": "false" if args.fp32 else "true",
        # The sections compare the service with the bare torch model (section `model`):
        # the same engine. `--env ENCODER_ENGINE=auto` (or onnx) measures another one.
        "ENCODER_ENGINE": "torch",
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    if onnx_cache is not None:  # the onnx engine's graphs, exported on the first run only
        env["ONNX_CACHE_DIR"] = str(onnx_cache)
    if args.encoder_batch:
        env["MAX_BATCH_SIZE"] = str(args.encoder_batch)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key.strip()] = value
    return env


def _load_encoder(args: argparse.Namespace, device: str) -> Any:
    from imgsearch_encoder.model import load_encoder
    from imgsearch_encoder.settings import EncoderSettings

    settings = EncoderSettings(
        clip_model=args.model,
        clip_pretrained=args.pretrained,
        clip_random_seed=0,
        device=device,
        gpu_mixed_precision=not args.fp32,
        encoder_engine="torch",  # the reference the sections measure (its bare model)
    )
    return load_encoder(settings)


def _engines_section(
    args: argparse.Namespace,
    plan: Any,
    device: str,
    work: Path,
    torch_fp32: Any,
    onnx_cache: Path,
) -> dict[str, Any]:
    """Model-only crops/s of every engine of ``--engines`` (ONNX graphs exported into
    ``onnx_cache`` on the first run, reused after); ``openvino-*`` compile the onnx
    engine's fp32 graph (``throughput_openvino``)."""
    from imgsearch_encoder.model import load_encoder
    from imgsearch_encoder.settings import EncoderSettings

    from . import throughput_model as tm
    from . import throughput_openvino as tov

    def onnx_engine(precision: str) -> Any:
        return load_encoder(
            EncoderSettings(
                clip_model=args.model,
                clip_pretrained=args.pretrained,
                clip_random_seed=0,
                device=device,
                encoder_engine="onnx",
                encoder_precision=precision,
                data_dir=work / "data",
                onnx_cache_dir=str(onnx_cache),
            )
        )

    engines: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        engine, _, precision = name.partition("-")
        if engine in ("onnx", "openvino") and device.startswith("cuda"):
            skipped[name] = "runs on the CPU only here"
            continue
        if name == "torch-fp32" and torch_fp32 is not None and torch_fp32.dtype == "float32":
            engines[name] = torch_fp32
            continue
        if engine == "openvino" and (why := tov.unavailable()):
            skipped[name] = why
            _log(f"skipping {name}: {why}")
            continue
        _log(f"loading engine {name}")
        started = time.perf_counter()
        if engine == "openvino":
            fp32 = onnx_engine("fp32")
            fp32.close()
            if fp32.graphs is None:
                skipped[name] = f"the onnx graphs could not be cached in {onnx_cache}"
                continue
            engines[name] = tov.OpenVinoImageTower(
                fp32.graphs / "image.onnx", precision or "fp32", fp32.image_size, None
            )
        elif engine == "onnx":
            engines[name] = onnx_engine(precision or "int8")
        else:
            engines[name] = load_encoder(
                EncoderSettings(
                    clip_model=args.model,
                    clip_pretrained=args.pretrained,
                    clip_random_seed=0,
                    device=device,
                    encoder_engine=engine,
                    encoder_precision=precision or None,
                    data_dir=work / "data",
                )
            )
        _log(f"engine {name} ready in {time.perf_counter() - started:.1f} s")
    _log(f"engines side by side: {', '.join(engines)}, batch sizes {plan.batch_sizes}")
    out = tm.engines_model_only(engines, plan.batch_sizes, plan.model_seconds)
    out["min_cosine_to_torch_fp32"] = tm.engines_agreement(engines, "torch-fp32")
    out["skipped"] = skipped
    for engine in engines.values():
        if engine is not torch_fp32:
            engine.close()
    return out


def _preprocess(enc: Any) -> Any:
    import open_clip

    return open_clip.image_transform(enc.image_size, is_train=False, mean=enc.mean, std=enc.std)


def run_sections(
    args: argparse.Namespace,
    plan: Any,
    device: str,
    cache: Path,
    work: Path,
    results: dict[str, Any],
    checkpoint: Callable[[], None] = lambda: None,
) -> None:
    """Run the wanted sections in order; ``checkpoint`` is called after each one (the
    caller saves what is there, so a run stopped by a time limit keeps its figures)."""
    from . import throughput_model as tm
    from . import throughput_services as ts

    want = {s.strip() for s in args.only.split(",")}
    env = service_env(args, device, cache / "onnx")
    log_dir = work / "logs"
    photos: list[Any] = []
    if want & {"prep", "indexing", "naive", "fidelity", "search"}:
        folder = args.photos or ensure_photos(cache)
        photos = list_photos(folder)
        results["photos"] = {"folder": str(folder), **describe(photos)}

    enc: Any = None
    if want & {"model", "encoder", "naive", "fidelity"}:
        _log(f"loading {args.model} ({args.pretrained}) on {device}")
        enc = _load_encoder(args, device)
        results["meta"]["dtype"] = enc.dtype
        results["meta"]["image_size"] = enc.image_size

    if "model" in want and args.engines.strip():
        results["model_engines"] = _engines_section(args, plan, device, work, enc, cache / "onnx")
        checkpoint()

    model_rate = None
    if "model" in want or "encoder" in want:
        _log(f"model only: batch sizes {plan.batch_sizes}")
        results["model"] = tm.model_only(enc, plan.batch_sizes, plan.model_seconds)
        checkpoint()
        model_rate = results["model"]["crops_per_s"]
        _log(f"model only: {model_rate} crops/s at batch {results['model']['best_batch']}")

    if "encoder" in want:
        _log(f"encoder service: {plan.clients} clients x {plan.crops_per_request} crops")
        enc_env = dict(env)
        load = ts.encoder_load(
            enc_env,
            log_dir,
            clients=plan.clients,
            crops_per_request=plan.crops_per_request,
            warmup_s=plan.encoder_warmup_s,
            seconds=plan.encoder_seconds,
        )
        # The model alone again, at its best batch and at the service's batch size, right
        # after: the machine is shared, so the ratio uses the mean of both measurements.
        best = results["model"]["best_batch"]
        again = tm.model_only(
            enc, sorted({best, int(load["max_batch_size"] or best)}), plan.model_seconds
        )
        before_rate = results["model"]["crops_per_s"]
        after_rate = max(again["crops_per_s_by_batch"].values())
        ceiling = (before_rate + after_rate) / 2
        load["model_only_before"] = before_rate
        load["model_only_after"] = after_rate
        load["model_only_after_by_batch"] = again["crops_per_s_by_batch"]
        load["model_only_after_by_cpu"] = again["crops_per_cpu_s_by_batch"]
        load["ratio_to_model_only"] = round(load["crops_per_s"] / ceiling, 3)
        # Contention-proof view: work per crop, service vs bare model at the service's batch.
        service_batch = str(int(load["max_batch_size"] or best))
        bare = again["crops_per_cpu_s_by_batch"].get(service_batch)
        if bare and load.get("crops_per_cpu_s"):
            load["cpu_ratio_to_model_only"] = round(load["crops_per_cpu_s"] / bare, 3)
        results["encoder"] = load
        checkpoint()
        model_rate = ceiling
        _log(
            f"encoder service: {load['crops_per_s']} crops/s = {load['ratio_to_model_only']} "
            f"of model only ({before_rate} before, {after_rate} after)"
        )

    if "prep" in want:
        _log("decode + windows per image, by option")
        results["prep"] = prep_costs(select(photos, plan.prep_images))
        checkpoint()

    chosen = select(photos, plan.images) if photos else []
    if "indexing" in want:
        _log(f"indexing {len(chosen)} photos ({args.indexing_mode})")
        if args.indexing_mode == "stack":
            idx = ts.indexing_stack(chosen, work, env, workers=args.workers, timeout_s=3600)
        else:
            procs = args.decode_processes or max(1, (os.cpu_count() or 2) - 2)
            idx = ts.indexing_inprocess(
                chosen, work, env, log_dir, decode_processes=procs, in_flight=procs * 2
            )
        idx["photos"] = describe(chosen)
        if model_rate:
            idx["model_only_crops_per_s"] = model_rate
            idx["efficiency"] = round(
                idx["images_per_s"] * (1 + idx["windows_per_image"]) / model_rate, 3
            )
        bare = _bare_cpu_rate(results, idx.get("encoder_max_batch_size"))
        if bare and idx.get("crops_per_cpu_s_all_processes"):
            # Share of all the CPU the stack used that went into the forward pass.
            idx["cpu_efficiency"] = round(idx["crops_per_cpu_s_all_processes"] / bare, 3)
        results["indexing"] = idx
        checkpoint()
        _log(
            f"indexing: {idx['images_per_s']} images/s, {idx['windows_per_image']} windows/image,"
            f" efficiency {idx.get('efficiency')}"
        )

    if "naive" in want:
        import torch

        _log(f"naive reference on the same {len(chosen)} photos")
        dtype = torch.float16 if enc.dtype == "float16" else torch.float32
        naive = tm.naive_reference(chosen, enc.model, _preprocess(enc), enc.device, dtype)
        if "indexing" in results:
            naive["speedup_of_pipeline"] = round(
                results["indexing"]["images_per_s"] / naive["images_per_s"], 2
            )
        results["naive"] = naive
        checkpoint()
        _log(f"naive: {naive['images_per_s']} images/s")

    if "fidelity" in want:
        subset = sorted(photos, key=lambda p: -p.megapixels)[: plan.fidelity_images // 2]
        subset += select(photos, plan.fidelity_images - len(subset))
        _log(f"fidelity on {len(subset)} photos")
        results["fidelity"] = tm.fidelity(subset, enc, enc.model, _preprocess(enc))
        checkpoint()

    if enc is not None:
        enc.close()
        del enc
        gc.collect()

    if "search" in want:
        index_root = work / "search" / "index"
        wpi = round(results.get("indexing", {}).get("windows_per_image", 14))
        _log(f"search: building an index of {plan.search_images} images x {wpi} windows")
        built = ts.build_search_index(index_root, plan.search_images, wpi)
        query = _query_image(photos)
        _log("search: latency")
        lat = ts.search_latency(
            work / "search",
            env,
            query,
            requests=plan.search_requests,
            saturation_clients=8,
            saturation_s=plan.saturation_s,
        )
        lat["query_prepare_ms"] = query_prepare_costs(query)
        results["search"] = {"index": built, **lat}
        checkpoint()

    if "scale" in want:
        from .throughput_scale import extrapolate, run_scale

        _log(f"scale: {plan.scale} window vectors, float32 and int8")
        scale = run_scale(work, plan.scale, ["none", "int8"])
        scale["extrapolated_1m"] = extrapolate(scale, 1_000_000)
        results["scale"] = scale
        checkpoint()


def _bare_cpu_rate(results: dict[str, Any], batch: Any) -> float | None:
    """The bare model's crops per CPU-second at ``batch`` (the latest measurement)."""
    for by_batch in (
        results.get("encoder", {}).get("model_only_after_by_cpu"),
        results.get("model", {}).get("crops_per_cpu_s_by_batch"),
    ):
        if by_batch and str(batch) in by_batch:
            return float(by_batch[str(batch)])
    return None


def _query_image(photos: list[Any]) -> bytes:
    """A realistic query: a photo of about a megapixel, as a phone would share it."""
    from PIL import Image

    source = max(photos, key=lambda p: (p.format == "JPEG", -abs(p.megapixels - 4.0)))
    with Image.open(source.path) as opened:
        img = opened.convert("RGB")
    img.thumbnail((1280, 1280))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def prep_costs(photos: list[Any]) -> dict[str, Any]:
    """Milliseconds of decode + windows per image, single thread, per format and option."""
    from imgsearch_worker.pipeline import prepare_image

    from .throughput_model import LAYOUT

    #: name → (jpeg_draft, prescale_factor)
    options = {
        "full_decode_every_window_resized": (False, 0.0),
        "jpeg_draft": (True, 0.0),
        "jpeg_draft_and_prescale": (True, 2.0),
    }
    out: dict[str, Any] = {"images": len(photos), "ms_per_image": {}}
    for name, (jpeg_draft, prescale_factor) in options.items():
        per_format: dict[str, list[float]] = {}
        for photo in photos:
            prepared = prepare_image(
                str(photo.path),
                image_size=224,
                max_bytes=10**9,
                max_pixels=10**9,
                layout=LAYOUT,
                jpeg_draft=jpeg_draft,
                prescale_factor=prescale_factor,
            )
            t = prepared.timings
            per_format.setdefault(photo.format, []).append(t["decode"] + t["windows"])
            per_format.setdefault("all", []).append(t["decode"] + t["windows"])
        out["ms_per_image"][name] = {
            fmt: round(1000 * sum(v) / len(v), 1) for fmt, v in sorted(per_format.items())
        }
    return out


def query_prepare_costs(data: bytes, repeats: int = 30) -> dict[str, Any]:
    """Median ms to turn the query JPEG into model input: a full decode (what search.py
    does) against a DCT-scaled decode to the model's size (``open_image(...).decode``)."""
    import statistics

    from imgsearch_common.imaging import decode_image, model_input, open_image

    def full() -> Any:
        return model_input(decode_image(data), 224)

    def drafted() -> Any:
        return model_input(open_image(data).decode(min_short_side=224), 224)

    out: dict[str, Any] = {}
    for name, fn in (("full_decode", full), ("draft_decode", drafted)):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = round(statistics.median(times), 2)
    return out
