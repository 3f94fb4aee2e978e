"""Duplicates benchmark: precision and recall of each tier of ``GET /api/duplicates``, and
what it costs (``make bench-duplicates``; ``BENCH_ARGS=--quick`` for a smoke run).

A program, not a test. Three sections, on generated copies of real photos mixed with
distinct photos (``benchmarks.duplicates_data``; the photos split in two halves by a hash
of their names):

- ``signature`` — the indexing-time cost of the pixel signature: ``pixel_signature`` on
  the pixels ``prepare_image`` decodes, against ``prepare_image`` itself, on a spread of
  the original photos (0.01 to 18 megapixels);
- ``calibration`` — the checks' measures on the *calibration* half, every pair, no
  model: the near check (thumbnail and gradient correlations) on every pair of files,
  the crop check (``coarse_crop`` on the signatures, ``locate_crop`` on the files) on
  each crop against the whole views of its photo and against other photos, the prior
  being the window of the parent's layout that covers the crop best. The thresholds in
  ``imgsearch_api.duplicate_checks`` were chosen from these tables;
- ``held_out`` — the real stack (``imgsearch_devstack.LocalStack``: encoder with
  ``CLIP_PRETRAINED=random``, API, workers) indexes the *held-out* half (two photos of
  three with their copies, the third alone), then ``GET /api/duplicates`` per tier and
  for all; precision and recall per tier against the truth, time and the API process's
  memory (RSS sampled every 20 ms) per request, and per 1 000 images.

Pairs: ``exact`` — every two files of a group, right when their decoded pixels are
identical; ``near`` — every two files of two different images of a group, right when both
show the whole photo; ``contained`` — each (parent, child) pair, right when the child's
part of the photo lies inside the parent's and covers at most 90 % of it. Recall of
``contained`` is per crop: found when at least one right parent is named (each crop has
about ten right parents: the photo's whole views and the larger crops around it).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import duplicates_data as dd
from benchmarks.runs import machine
from benchmarks.throughput_data import ensure_photos, list_photos, select
from imgsearch_api.duplicate_checks import (
    COARSE_MIN_CORRELATION,
    CONTAINED_MAX_AREA,
    CONTAINED_MIN_CORRELATION,
    CONTAINED_MIN_DETAIL,
    CONTAINED_MIN_TEXTURE,
    NEAR_MIN_CORRELATION,
    NEAR_MIN_DETAIL,
    ThumbTable,
    coarse_crop,
    grey_copy,
    locate_crop,
    near_checks,
    short_side_for,
)
from imgsearch_common.imaging import open_image, prescale
from imgsearch_common.settings import CommonSettings
from imgsearch_common.signatures import PixelSignature, pixel_signature
from imgsearch_common.windows import WindowLayout, box_iou
from imgsearch_devstack import LocalStack, StackConfig, wait_batch
from imgsearch_worker.pipeline import needed_short_side, prepare_image

log = logging.getLogger("benchmarks.duplicates")

SECTIONS = ("signature", "calibration", "held_out")
COLLECTION = "bench-duplicates"
LAYOUT = WindowLayout()
MAX_PIXELS = 200_000_000
ENV = {
    "CLIP_MODEL": "ViT-B-32",
    "CLIP_PRETRAINED": "random",
    "LOG_LEVEL": "WARNING",
    "TORCH_THREADS": "2",
    "MAX_BATCH_SIZE": "16",
}
RANDOM_NOTE = (
    "CLIP_PRETRAINED=random: the model only proposes candidates; every reported pair was "
    "verified on pixels, so the tiers' figures do not rest on the weights' similarities."
)


# --- signature cost -------------------------------------------------------------------------


def signature_cost(cache: Path, images: int) -> dict[str, Any]:
    """ms of the signature against prepare_image, per photo of a spread of sizes."""
    photos = select(list_photos(ensure_photos(cache)), images)
    sig_ms, prep_ms, mp = [], [], []
    for photo in photos:
        t0 = time.perf_counter()
        prepare_image(
            str(photo.path), image_size=224, max_bytes=10**9, max_pixels=MAX_PIXELS, layout=LAYOUT
        )
        prep_ms.append((time.perf_counter() - t0) * 1000)
        # The same decode and shrunk copy as prepare_image's, then the signature alone.
        opened = open_image(photo.path.read_bytes(), max_pixels=MAX_PIXELS)
        w, h = opened.size
        need = needed_short_side(w, h, LAYOUT.boxes(w, h), 224)
        img = opened.decode(need)
        cut = prescale(img, int(2 * need) + 1) if min(img.size) > 2 * need else img
        t1 = time.perf_counter()
        pixel_signature(cut, (w, h)).encode()
        sig_ms.append((time.perf_counter() - t1) * 1000)
        mp.append(photo.megapixels)
    return {
        "photos": len(photos),
        "megapixels_median": round(statistics.median(mp), 2),
        "signature_ms_median": round(statistics.median(sig_ms), 2),
        "signature_ms_p95": round(float(np.percentile(sig_ms, 95)), 2),
        "signature_ms_mean": round(statistics.fmean(sig_ms), 2),
        "prepare_ms_median": round(statistics.median(prep_ms), 1),
        "share_of_prepare": round(sum(sig_ms) / sum(prep_ms), 4),
        "signature_s_per_1000": round(statistics.fmean(sig_ms), 1),
        "payload_bytes": len(pixel_signature(img, (w, h)).encode()),
    }


# --- calibration -----------------------------------------------------------------------------


def _signatures(
    folder: Path, files: Sequence[dd.Generated]
) -> list[tuple[PixelSignature, tuple[int, int]]]:
    out = []
    for f in files:
        prepared = prepare_image(
            str(folder / f.name), image_size=224, max_bytes=10**9, max_pixels=MAX_PIXELS,
            layout=LAYOUT,
        )  # fmt: skip
        signature = PixelSignature.decode(prepared.signature)
        assert signature is not None
        out.append((signature, (prepared.width, prepared.height)))
    return out


def _pr(tp: int, fp: int, fn: int) -> dict[str, Any]:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
    }


def calibrate_near(
    files: Sequence[dd.Generated], signed: Sequence[tuple[PixelSignature, tuple[int, int]]]
) -> dict[str, Any]:
    table = ThumbTable.of([s for s, _ in signed], [z for _, z in signed])
    n = len(files)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    checks = near_checks(table, pairs)
    pos = np.array([dd.relation(files[c.i], files[c.j]) in ("exact", "near") for c in checks])
    corr = np.array([c.correlation if c.correlation is not None else np.nan for c in checks])
    detail = np.array([c.detail if c.detail is not None else np.nan for c in checks])
    same_shape = np.array(
        [abs(table.log_aspect[c.i] - table.log_aspect[c.j]) <= 0.04 for c in checks]
    )
    sweep = []
    for tc in (0.6, 0.7, 0.8, 0.9, 0.95):
        for td in (0.3, 0.45, 0.6, 0.75, 0.9):
            passed = same_shape & (corr >= tc) & (detail >= td)
            tp, fp = int((passed & pos).sum()), int((passed & ~pos).sum())
            sweep.append({"correlation": tc, "detail": td, **_pr(tp, fp, int(pos.sum()) - tp)})
    chosen = np.array([c.passed for c in checks])
    tp, fp = int((chosen & pos).sum()), int((chosen & ~pos).sum())
    negatives = ~pos & same_shape & np.isfinite(corr)
    positives = pos & np.isfinite(corr)
    missed = [
        f"{files[c.i].name} ~ {files[c.j].name}: {c.correlation:.3f}/{c.detail:.3f}"
        for c, p in zip(checks, pos, strict=True)
        if p and not c.passed and c.correlation is not None and c.detail is not None
    ]
    return {
        "files": n,
        "pairs": len(pairs),
        "positive_pairs": int(pos.sum()),
        "chosen": {
            "correlation": NEAR_MIN_CORRELATION,
            "detail": NEAR_MIN_DETAIL,
            **_pr(tp, fp, int(pos.sum()) - tp),
        },
        "negatives_same_aspect_max": {
            "correlation": round(float(np.nanmax(corr[negatives])), 4),
            "detail": round(float(np.nanmax(detail[negatives])), 4),
            "min_of_both": round(float(np.nanmax(np.minimum(corr, detail)[negatives])), 4),
        },
        "positives_percentiles_1_5_50": {
            "correlation": [round(float(v), 4) for v in np.percentile(corr[positives], [1, 5, 50])],
            "detail": [round(float(v), 4) for v in np.percentile(detail[positives], [1, 5, 50])],
        },
        "missed": missed[:20],
        "sweep": sweep,
    }


def _prior_window(size: tuple[int, int], box: tuple[float, ...]) -> tuple[int, int, int, int]:
    """The window of ``size``'s layout that covers ``box`` (fractions) best."""
    w, h = size
    target = (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
    windows = LAYOUT.boxes(w, h) or [(0, 0, w, h)]
    return max(windows, key=lambda b: box_iou(b, target))


def _within(box: tuple[float, ...], outer: tuple[float, ...]) -> tuple[float, ...]:
    """``box`` (fractions of the photo) in fractions of ``outer``."""
    w, h = outer[2] - outer[0], outer[3] - outer[1]
    return (
        (box[0] - outer[0]) / w,
        (box[1] - outer[1]) / h,
        (box[2] - outer[0]) / w,
        (box[3] - outer[1]) / h,
    )


def calibrate_contained(
    folder: Path,
    files: Sequence[dd.Generated],
    signed: Sequence[tuple[PixelSignature, tuple[int, int]]],
    negatives_per_child: int,
) -> dict[str, Any]:
    rng = random.Random(5)
    greys: dict[str, np.ndarray] = {}

    def grey(f: dd.Generated) -> np.ndarray:
        if f.name not in greys:
            opened = open_image((folder / f.name).read_bytes(), max_pixels=MAX_PIXELS)
            greys[f.name] = grey_copy(opened.decode(short_side_for(opened.size, 448)))
        return greys[f.name]

    index = {f.name: k for k, f in enumerate(files)}
    whole = [f for f in files if f.tier in ("base", "exact", "near")]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    crops = [f for f in files if f.tier == "contained"]
    for child in crops:
        positives = [p for p in (*whole, *crops) if dd.relation(p, child) == "contained"]
        # The hardest negatives: crops of the same photo that do not hold this one.
        siblings = [p for p in crops if p.source == child.source and p is not child]
        siblings = [p for p in siblings if dd.relation(p, child) != "contained"]
        others = [p for p in whole if p.source != child.source]
        for parent, label in [
            *((p, True) for p in positives),
            *((p, False) for p in siblings),
            *((p, False) for p in rng.sample(others, min(negatives_per_child, len(others)))),
        ]:
            csig, csize = signed[index[child.name]]
            psig, psize = signed[index[parent.name]]
            if label:
                window = _prior_window(psize, _within(child.box, parent.box))
            else:
                window = rng.choice(LAYOUT.boxes(*psize) or [(0, 0, *psize)])
            coarse = coarse_crop(csig, csize, psig, psize, window)
            pg = grey(parent)
            s = pg.shape[1] / psize[0]
            match = locate_crop(
                grey(child), pg, ((window[2] - window[0]) * s, (window[3] - window[1]) * s)
            )
            iou = None
            if match is not None and label:
                inner = _within(child.box, parent.box)
                truth = tuple(v * d for v, d in zip(inner, (*psize, *psize), strict=True))
                box = tuple(v / s for v in match.box)
                iou = box_iou(tuple(round(v) for v in box), tuple(round(v) for v in truth))  # type: ignore[arg-type]
            rows.append(
                {
                    "label": label,
                    "sibling": not label and parent.source == child.source,
                    "variant": child.variant,
                    "coarse": coarse,
                    "correlation": None if match is None else match.correlation,
                    "detail": None if match is None else match.detail,
                    "texture": None if match is None else match.texture,
                    "area": None if match is None else match.area,
                    "passed": match is not None and match.passed,
                    "iou": iou,
                }
            )
    elapsed = time.perf_counter() - t0

    def passes(r: dict[str, Any], tc: float, td: float, tt: float, pre: float | None) -> bool:
        if r["correlation"] is None:
            return False
        if pre is not None and r["coarse"] is not None and r["coarse"] < pre:
            return False
        return bool(
            r["correlation"] >= tc
            and r["detail"] >= td
            and r["texture"] >= tt
            and r["area"] <= CONTAINED_MAX_AREA
        )

    n_pos = sum(r["label"] for r in rows)
    sweep = []
    for pre in (None, 0.3, 0.4, COARSE_MIN_CORRELATION):
        for tc in (0.8, 0.85, 0.9, 0.95):
            for td in (0.6, 0.7, 0.8, 0.85, 0.9):
                tp = sum(
                    1 for r in rows if r["label"] and passes(r, tc, td, CONTAINED_MIN_TEXTURE, pre)
                )
                fp = sum(
                    1
                    for r in rows
                    if not r["label"] and passes(r, tc, td, CONTAINED_MIN_TEXTURE, pre)
                )
                sweep.append(
                    {"coarse": pre, "correlation": tc, "detail": td, **_pr(tp, fp, n_pos - tp)}
                )
    chosen = [
        passes(
            r,
            CONTAINED_MIN_CORRELATION,
            CONTAINED_MIN_DETAIL,
            CONTAINED_MIN_TEXTURE,
            COARSE_MIN_CORRELATION,
        )
        for r in rows
    ]
    tp = sum(1 for r, c in zip(rows, chosen, strict=True) if c and r["label"])
    fp = sum(1 for r, c in zip(rows, chosen, strict=True) if c and not r["label"])
    by_variant: dict[str, list[bool]] = defaultdict(list)
    for r, c in zip(rows, chosen, strict=True):
        if r["label"]:
            by_variant[r["variant"]].append(c)
    ious = [
        r["iou"]
        for r, c in zip(rows, chosen, strict=True)
        if c and r["label"] and r["iou"] is not None
    ]
    coarse_neg = [r["coarse"] for r in rows if not r["label"] and r["coarse"] is not None]
    coarse_pos = [r["coarse"] for r in rows if r["label"] and r["coarse"] is not None]
    hardest = {}
    for kind, chosen_rows in (
        ("siblings", [r for r in rows if r["sibling"] and r["correlation"] is not None]),
        (
            "other_photos",
            [
                r
                for r in rows
                if not r["label"] and not r["sibling"] and r["correlation"] is not None
            ],
        ),
        ("positives", [r for r in rows if r["label"] and r["correlation"] is not None]),
    ):
        if chosen_rows:
            hardest[kind] = {
                "n": len(chosen_rows),
                "correlation_max_p99_p5": [
                    round(float(np.max([r["correlation"] for r in chosen_rows])), 4),
                    round(float(np.percentile([r["correlation"] for r in chosen_rows], 99)), 4),
                    round(float(np.percentile([r["correlation"] for r in chosen_rows], 5)), 4),
                ],
                "detail_max_p99_p5": [
                    round(float(np.max([r["detail"] for r in chosen_rows])), 4),
                    round(float(np.percentile([r["detail"] for r in chosen_rows], 99)), 4),
                    round(float(np.percentile([r["detail"] for r in chosen_rows], 5)), 4),
                ],
            }
    return {
        "pairs": len(rows),
        "positive_pairs": n_pos,
        "measures": hardest,
        "ms_per_pair": round(elapsed * 1000 / max(1, len(rows)), 1),
        "chosen": {
            "coarse": COARSE_MIN_CORRELATION,
            "correlation": CONTAINED_MIN_CORRELATION,
            "detail": CONTAINED_MIN_DETAIL,
            "texture": CONTAINED_MIN_TEXTURE,
            **_pr(tp, fp, n_pos - tp),
        },
        "recall_by_variant": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_variant.items())},
        "box_iou_median_p10": [
            round(statistics.median(ious), 4) if ious else None,
            round(float(np.percentile(ious, 10)), 4) if ious else None,
        ],
        "coarse_positives_percentiles_1_2_5": [
            round(float(v), 4) for v in np.percentile(coarse_pos or [0.0], [1, 2, 5])
        ],
        "coarse_negatives_percentiles_25_50_75": [
            round(float(v), 4) for v in np.percentile(coarse_neg or [0.0], [25, 50, 75])
        ],
        "coarse_rejects": {
            "negatives": round(
                sum(c < COARSE_MIN_CORRELATION for c in coarse_neg) / max(1, len(coarse_neg)), 4
            ),
            "positives": round(
                sum(c < COARSE_MIN_CORRELATION for c in coarse_pos) / max(1, len(coarse_pos)), 4
            ),
        },
        "sweep": sweep,
    }


def calibration(cache: Path, folder: Path, keys: Sequence[str], negatives: int) -> dict[str, Any]:
    files = dd.build(cache, folder, list(keys), with_variants=set(keys))
    log.info("calibration: %d files from %d photos; signatures", len(files), len(keys))
    signed = _signatures(folder, files)
    log.info("calibration: near, every pair")
    near = calibrate_near(files, signed)
    log.info("calibration: contained")
    contained = calibrate_contained(folder, files, signed, negatives)
    return {"photos": len(keys), "files": len(files), "near": near, "contained": contained}


# --- held out, through the stack ------------------------------------------------------------


class RssSampler:
    """The peak resident memory of a process while a block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.before = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _request(
    api: httpx.Client, pid: int, tier: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    params: dict[str, Any] = {"collection": COLLECTION, "limit": 1000}
    if tier:
        params["tier"] = tier
    with RssSampler(pid) as rss:
        t0 = time.perf_counter()
        r = api.get("/api/duplicates", params=params)
        wall = time.perf_counter() - t0
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    cost = {
        "wall_s": round(wall, 2),
        "server_ms": body["processing_time_ms"],
        "timings_ms": body["timings_ms"],
        "rss_before_mb": round(rss.before / 2**20, 1),
        "rss_peak_increase_mb": round(max(0, rss.peak - rss.before) / 2**20, 1),
        "groups": len(body["groups"]),
        "truncated": body["truncated"],
    }
    return body, cost


def evaluate(body: dict[str, Any], files: Sequence[dd.Generated], folder: Path) -> dict[str, Any]:
    by_path = {str(folder / f.name): f for f in files}
    by_content: dict[str, list[dd.Generated]] = defaultdict(list)
    for f in files:
        by_content[f.content].append(f)
    predicted: dict[str, set[tuple[str, str]]] = {"exact": set(), "near": set(), "contained": set()}
    in_groups: set[str] = set()
    for group in body["groups"]:
        items = [by_path[i["path"]] for i in group["items"]]
        in_groups.update(f.name for i in items for f in by_content[i.content])
        if group["tier"] == "exact":
            names = sorted({i.name for i in items})
            predicted["exact"] |= {(a, b) for x, a in enumerate(names) for b in names[x + 1 :]}
        elif group["tier"] == "near":
            expanded = [[f.name for f in by_content[i.content]] for i in items]
            for x in range(len(expanded)):
                for y in range(x + 1, len(expanded)):
                    predicted["near"] |= {
                        (a, b) if a < b else (b, a) for a in expanded[x] for b in expanded[y]
                    }
        else:
            for pair in group["pairs"]:
                parent, child = items[pair["a"]], items[pair["b"]]
                for p in by_content[parent.content]:
                    predicted["contained"].add((p.name, child.name))
    named = {f.name: f for f in files}
    truth_exact: set[tuple[str, str]] = set()
    truth_near: set[tuple[str, str]] = set()
    truth_contained: set[tuple[str, str]] = set()
    for one, two in dd.pairs(list(files)):
        rel = dd.relation(one, two)
        key = (one.name, two.name) if one.name < two.name else (two.name, one.name)
        if rel == "exact":
            truth_exact.add(key)
        elif rel == "near":
            truth_near.add(key)
        elif rel == "contained":
            truth_contained.add((one.name, two.name))
        elif rel == "reverse":
            truth_contained.add((two.name, one.name))
    out: dict[str, Any] = {}
    tp = len(predicted["exact"] & truth_exact)
    out["exact"] = _pr(tp, len(predicted["exact"]) - tp, len(truth_exact) - tp)
    same_picture = truth_near | truth_exact
    right = {p for p in predicted["near"] if p in same_picture}
    found = len(predicted["near"] & truth_near)
    out["near"] = {
        **_pr(len(right), len(predicted["near"]) - len(right), len(truth_near) - found),
        "recall": round(found / len(truth_near), 4) if truth_near else None,
    }
    by_variant: dict[str, list[bool]] = defaultdict(list)
    for a, b in truth_near:
        fa, fb = named[a], named[b]
        if fa.variant == "base" or fb.variant == "base":
            other = fb if fa.variant == "base" else fa
            by_variant[other.variant].append((a, b) in predicted["near"])
    out["near"]["recall_with_base_by_variant"] = {
        k: round(sum(v) / len(v), 4) for k, v in sorted(by_variant.items())
    }
    right_c = predicted["contained"] & truth_contained
    crops = [f for f in files if f.tier == "contained"]
    crop_found = {c.name: any((p, c.name) in right_c for p in named) for c in crops}
    out["contained"] = {
        "pairs": _pr(
            len(right_c),
            len(predicted["contained"]) - len(right_c),
            len(truth_contained) - len(right_c),
        ),
        "precision": _pr(len(right_c), len(predicted["contained"]) - len(right_c), 0)["precision"],
        "recall_per_crop": round(sum(crop_found.values()) / len(crops), 4) if crops else None,
        "recall_per_crop_by_variant": {
            v: round(statistics.fmean(crop_found[c.name] for c in crops if c.variant == v), 4)
            for v in sorted({c.variant for c in crops})
        },
        "wrong": sorted(f"{p} > {c}" for p, c in predicted["contained"] - truth_contained)[:20],
    }
    alone = {f.source for f in files} - {f.source for f in files if f.variant != "base"}
    out["distinct_photos_in_a_group"] = sorted(
        f.name for f in files if f.source in alone and f.name in in_groups
    )
    out["distinct_photos"] = len(alone)
    out["wrong_near"] = sorted(f"{a} ~ {b}" for a, b in predicted["near"] - same_picture)[:20]
    out["missed_exact"] = sorted(f"{a} = {b}" for a, b in truth_exact - predicted["exact"])[:20]
    return out


def held_out(cache: Path, work: Path, keys: Sequence[str], workers: int) -> dict[str, Any]:
    folder = work / "held-out"
    with_variants = {k for n, k in enumerate(keys) if n % 3 != 2}
    files = dd.build(cache, folder, list(keys), with_variants=with_variants)
    # One ONNX export for every run (the encoder's default engine on a CPU), as quality's.
    onnx = CommonSettings().data_dir / "bench-cache" / "onnx"
    env = {**ENV, "INDEX_ROOTS": json.dumps([str(folder.resolve())]), "ONNX_CACHE_DIR": str(onnx)}
    config = StackConfig.on_free_ports(work / "stack", workers=workers, extra_env=env)
    log.info("held out: %d files from %d photos; starting the stack", len(files), len(keys))
    with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=3600) as api:
        assert stack.api is not None
        t0 = time.perf_counter()
        r = api.post(
            "/api/index/folder", json={"path": str(folder.resolve()), "collection": COLLECTION}
        )
        r.raise_for_status()
        status = wait_batch(api, r.json()["batch_id"], timeout=7200.0, poll_s=1.0)
        index_s = time.perf_counter() - t0
        if status.failed:
            raise RuntimeError(f"{status.failed} files failed to index: {status.errors}")
        counts = api.get("/api/status").json()["collections"][COLLECTION]
        log.info("held out: indexed in %.0f s; asking for duplicates", index_s)
        costs: dict[str, Any] = {}
        bodies: dict[str, dict[str, Any]] = {}
        for tier in ("exact", "near", "contained", None):
            bodies[tier or "all"], costs[tier or "all"] = _request(api, stack.api.pid, tier)
            log.info("held out: %s in %.1f s", tier or "all", costs[tier or "all"]["wall_s"])
    images = counts["full_images"]
    for cost in costs.values():
        cost["s_per_1000_images"] = round(cost["server_ms"] / images, 2)
        cost["mb_per_1000_images"] = round(cost["rss_peak_increase_mb"] * 1000 / images, 1)
    return {
        "photos": len(keys),
        "photos_with_copies": len(with_variants),
        "files": len(files),
        "images": images,
        "windows": counts["partial_images"],
        "indexing_s": round(index_s, 1),
        "cost": costs,
        "figures": evaluate(bodies["all"], files, folder.resolve()),
    }


# --- report ---------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report_lines(results: dict[str, Any]) -> list[str]:
    lines = [RANDOM_NOTE, ""]
    sig = results.get("signature")
    if sig:
        lines.append(
            f"signature: {sig['signature_ms_median']} ms median, {sig['signature_ms_p95']} ms "
            f"p95 per image ({sig['photos']} photos, median {sig['megapixels_median']} MP) = "
            f"{100 * sig['share_of_prepare']:.1f} % of prepare_image; "
            f"{sig['signature_s_per_1000']} s per 1000 images; {sig['payload_bytes']} bytes"
        )
    cal = results.get("calibration")
    if cal:
        n, c = cal["near"], cal["contained"]
        lines.append(
            f"calibration ({cal['photos']} photos, {cal['files']} files): near every pair "
            f"({n['pairs']}, {n['positive_pairs']} positive) at {n['chosen']['correlation']}/"
            f"{n['chosen']['detail']}: P {_f(n['chosen']['precision'])} R "
            f"{_f(n['chosen']['recall'])}; negatives' max (same aspect) "
            f"{n['negatives_same_aspect_max']}"
        )
        lines.append(
            f"  contained ({c['pairs']} pairs, {c['positive_pairs']} positive, "
            f"{c['ms_per_pair']} ms each): P {_f(c['chosen']['precision'])} R "
            f"{_f(c['chosen']['recall'])}; by crop {c['recall_by_variant']}; box IoU median/p10 "
            f"{c['box_iou_median_p10']}; the signatures' first look rejects "
            f"{c['coarse_rejects']}"
        )
    held = results.get("held_out")
    if held:
        fig = held["figures"]
        lines += [
            "",
            f"held out: {held['images']} images ({held['files']} files, {held['photos']} photos, "
            f"{held['photos_with_copies']} with copies), indexed in {held['indexing_s']} s",
            f"{'tier':<10}{'precision':>10}{'recall':>8}{'tp':>7}{'fp':>5}{'fn':>5}",
        ]
        for tier in ("exact", "near"):
            t = fig[tier]
            lines.append(
                f"{tier:<10}{_f(t['precision']):>10}{_f(t['recall']):>8}{t['tp']:>7}{t['fp']:>5}"
                f"{t['fn']:>5}"
            )
        c = fig["contained"]
        lines.append(
            f"{'contained':<10}{_f(c['precision']):>10}{_f(c['recall_per_crop']):>8}"
            f"{c['pairs']['tp']:>7}{c['pairs']['fp']:>5}{'':>5}  (recall per crop; by crop "
            f"{c['recall_per_crop_by_variant']})"
        )
        by_variant = fig["near"]["recall_with_base_by_variant"]
        lines.append(f"near recall by variant (pairs with the original): {by_variant}")
        lines.append(
            f"distinct photos in a group: {len(fig['distinct_photos_in_a_group'])} of "
            f"{fig['distinct_photos']}"
        )
        lines += [
            "",
            f"{'request':<10}{'server s':>9}{'s/1000':>8}{'RSS+ MB':>9}{'MB/1000':>9}  stages (ms)",
        ]
        for name, cost in held["cost"].items():
            stages = ", ".join(f"{k} {v:.0f}" for k, v in cost["timings_ms"].items())
            lines.append(
                f"{name:<10}{cost['server_ms'] / 1000:>9.2f}{cost['s_per_1000_images']:>8.2f}"
                f"{cost['rss_peak_increase_mb']:>9.1f}{cost['mb_per_1000_images']:>9.1f}  {stages}"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.duplicates", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/bench"), help="where the JSON goes")
    parser.add_argument("--cache", type=Path, help="downloaded photos (default: OUT/cache)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few minutes)")
    parser.add_argument("--photos", type=int, help="photos per half (default: all)")
    parser.add_argument(
        "--negatives", type=int, default=6, help="calibration: other photos per crop"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown sections {unknown}")
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    keys = [k for k, _ in dd.distinct_photos(cache)]
    calibration_keys, held_keys = dd.split(keys)
    per_half = args.photos or (8 if args.quick else None)
    if per_half:
        calibration_keys, held_keys = calibration_keys[:per_half], held_keys[:per_half]
    results: dict[str, Any] = {"machine": machine(), "note": RANDOM_NOTE, "sections": sections}
    work = Path(tempfile.mkdtemp(prefix="duplicates-", dir=args.out))
    try:
        if "signature" in sections:
            log.info("signature cost")
            results["signature"] = signature_cost(cache, 12 if args.quick else 40)
        if "calibration" in sections:
            results["calibration"] = calibration(
                cache, work / "calibration", calibration_keys, args.negatives
            )
        if "held_out" in sections:
            results["held_out"] = held_out(cache, work, held_keys, args.workers)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    path = args.out / f"duplicates-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print("\n".join(report_lines(results)))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
