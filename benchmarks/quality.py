"""Retrieval-quality benchmark: does a query find the picture it came from, and where?

A program, not a test (``make bench-quality``; ``BENCH_ARGS=--quick`` for a smoke run). It
starts the real stack as processes (``imgsearch_devstack.LocalStack``: redis-server, encoder with
``CLIP_PRETRAINED=random``, search API, workers) on a fresh data folder, indexes the photo
set through ``/api/index/folder``, sends every query through ``/api/search/by-image``,
prints a table and writes ``quality.json`` under ``--out``.

Three modes run one after the other on the same photos and queries:

- ``ours``: the engine's defaults (relative windows, best-window score, re-scoring,
  query-side windows for the ``contains`` family through ``match_mode=contains``);
- ``stage1``: ours with stage two off (``RESCORE_TOP_K=0``) and the top ``STAGE1_LIMIT``
  answers: the ranking stage two starts from, so its recall@K per family says whether the
  parent is among the K pictures ``RESCORE_TOP_K=K`` re-scores;
- ``baseline``: the original system's algorithm as the reference: fixed 224/448 px windows
  at stride 56 (``WINDOW_GEOMETRY=baseline``), its ``0.7·max + 0.3·mean + 0.1·frequency``
  score (``PARTIAL_RULE=baseline``), no re-scoring, no query-side windows, and its 0.5
  thresholds.

``--variant NAME:KEY=VALUE,...`` adds modes: ours with other settings, in the same run (to
measure a default before and after, e.g. ``--variant k16:RESCORE_TOP_K=16``).

The encoder runs its default engine (on a CPU: ONNX Runtime int8), its graphs cached
under ``DATA_DIR/bench-cache/onnx`` (exported on the first run only).

The weights are random (no pretrained weights can be downloaded here): the figures measure
the pipeline's geometry and aggregation on random-weight features, not CLIP's semantics.
Photos and queries: ``benchmarks.quality_data``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import quality_data as qd
from imgsearch_common.schemas import SearchResponse
from imgsearch_common.settings import CommonSettings
from imgsearch_common.windows import box_iou
from imgsearch_devstack import LocalStack, StackConfig, wait_batch

log = logging.getLogger("benchmarks.quality")

COLLECTION = "bench"
RESULTS_LIMIT = 10
#: Answers asked for in the ``stage1`` mode, and the K its recall@K is reported at
#: (``RESCORE_TOP_K`` is at most 50).
STAGE1_LIMIT = 32
STAGE1_KS = (1, 2, 4, 8, 12, 16, 24, 32)
RANDOM_NOTE = (
    "CLIP_PRETRAINED=random: these numbers measure the pipeline's geometry and aggregation "
    "on random-weight features, not CLIP's semantics; score thresholds do not carry over "
    "to real weights."
)
BASE_ENV = {
    "CLIP_MODEL": "ViT-B-32",
    "CLIP_PRETRAINED": "random",
    "LOG_LEVEL": "WARNING",
    "TORCH_THREADS": "2",
    # Batches of 8 are the fastest on a 2-core CPU (docs/FINDINGS); bigger ones are slower.
    "MAX_BATCH_SIZE": "16",
}
#: Per mode: extra environment of the stack, form fields per family, and the no-match
#: threshold sent with every query (None: the server's default rule).
MODES: dict[str, dict[str, Any]] = {
    "ours": {
        "env": {},
        "match_mode": {"contains": "contains"},
        "min_score": None,
    },
    "stage1": {
        "env": {"RESCORE_TOP_K": "0"},
        "match_mode": {"contains": "contains"},
        "min_score": None,
        "limit": STAGE1_LIMIT,
        "ks": STAGE1_KS,
    },
    "baseline": {
        "env": {"WINDOW_GEOMETRY": "baseline", "PARTIAL_RULE": "baseline", "RESCORE_TOP_K": "0"},
        "match_mode": {},
        # The original system's PARTIAL_MATCH_THRESHOLD / FULL_MATCH_THRESHOLD.
        "min_score": 0.5,
    },
}


@dataclass
class Outcome:
    family: str
    group: str
    name: str
    target: str | None
    #: 1-based rank of the target among the results (None: not returned).
    rank: int | None
    results: int
    top_score: float | None
    target_score: float | None
    box: list[int] | None
    box_iou: float | None
    query_box: list[int] | None
    query_box_iou: float | None
    latency_ms: float
    server_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)


# --- running one mode ---------------------------------------------------------------------


def run_mode(
    mode: str,
    photos_dir: Path,
    files: dict[str, str],
    queries: Sequence[qd.Query],
    work: Path,
    *,
    workers: int,
    extra_env: dict[str, str],
    concurrency: int = 1,
    spec: dict[str, Any] | None = None,
    onnx_cache: Path | None = None,
) -> dict[str, Any]:
    """``spec``: the mode's (default ``MODES[mode]``); ``onnx_cache``: ``ONNX_CACHE_DIR``
    of the encoder (None: its default, in the mode's fresh data folder)."""
    spec = spec if spec is not None else MODES[mode]
    data_dir = work / f"data-{mode}"
    # The photos' folder is the one the API may index (INDEX_ROOTS: none by default).
    roots = {"INDEX_ROOTS": json.dumps([str(photos_dir.resolve())])}
    cache = {"ONNX_CACHE_DIR": str(onnx_cache)} if onnx_cache is not None else {}
    env = {**BASE_ENV, **cache, **spec["env"], **extra_env, **roots}
    config = StackConfig.on_free_ports(data_dir, workers=workers, extra_env=env)
    by_file = {fname: name for name, fname in files.items()}
    log.info("[%s] starting the stack", mode)
    t_start = time.perf_counter()
    with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=600) as api:
        health = httpx.get(stack.encoder_url + "/health", timeout=30).json()
        started_s = time.perf_counter() - t_start
        log.info("[%s] indexing %d photos", mode, len(files))
        t0 = time.perf_counter()
        r = api.post("/api/index/folder", json={"path": str(photos_dir), "collection": COLLECTION})
        r.raise_for_status()
        status = wait_batch(api, r.json()["batch_id"], timeout=3600.0, poll_s=0.5)
        index_s = time.perf_counter() - t0
        if status.failed:
            raise RuntimeError(f"[{mode}] {status.failed} photos failed to index: {status.errors}")
        counts = api.get("/api/status").json()["collections"][COLLECTION]
        index_bytes = _folder_bytes(data_dir / "index")

        log.info("[%s] %d queries, %d in flight", mode, len(queries), concurrency)
        t1 = time.perf_counter()
        outcomes = []
        with ThreadPoolExecutor(concurrency) as pool:
            asked = pool.map(lambda q: _ask(api, q, spec, by_file), queries)
            for outcome in asked:  # in query order, as they finish
                outcomes.append(outcome)
                if len(outcomes) % 50 == 0:
                    log.info("[%s] %d/%d queries", mode, len(outcomes), len(queries))
        queries_s = time.perf_counter() - t1
    return {
        "mode": mode,
        "env": {**spec["env"], **extra_env},
        "min_score_sent": spec["min_score"],
        "encoder": {k: health.get(k) for k in ("model", "pretrained", "device", "dtype", "engine")},
        "results_limit": spec.get("limit", RESULTS_LIMIT),
        "stack_start_s": round(started_s, 1),
        "index": {
            "photos": counts["full_images"],
            "windows": counts["partial_images"],
            "windows_per_image": round(counts["partial_images"] / max(1, counts["full_images"]), 2),
            "index_bytes": index_bytes,
            "indexing_s": round(index_s, 1),
            "photos_per_s": round(counts["full_images"] / index_s, 2) if index_s else None,
        },
        "queries_s": round(queries_s, 1),
        "queries_in_flight": concurrency,
        "outcomes": [asdict(o) for o in outcomes],
    }


def _ask(
    api: httpx.Client, query: qd.Query, spec: dict[str, Any], by_file: dict[str, str]
) -> Outcome:
    limit = spec.get("limit", RESULTS_LIMIT)
    form: dict[str, str] = {"collection": COLLECTION, "limit": str(limit)}
    mode = spec["match_mode"].get(query.family)
    if mode:
        form["match_mode"] = mode
    if spec["min_score"] is not None:
        form["min_score"] = str(spec["min_score"])
    t0 = time.perf_counter()
    r = api.post(
        "/api/search/by-image",
        files={"file": ("q.jpg", query.data, "image/jpeg")},
        data=form,
    )
    latency = (time.perf_counter() - t0) * 1000.0
    r.raise_for_status()
    body = SearchResponse.model_validate(r.json())
    names = [by_file.get(res.metadata.filename) if res.metadata else None for res in body.results]
    rank = names.index(query.target) + 1 if query.target in names else None
    hit = body.results[rank - 1] if rank else None
    box = hit.matched_boxes[0].box if hit and hit.matched_boxes else None
    qbox = hit.query_box if hit else None
    return Outcome(
        family=query.family,
        group=query.group,
        name=query.name,
        target=query.target,
        rank=rank,
        results=len(body.results),
        top_score=body.results[0].score if body.results else None,
        target_score=hit.score if hit else None,
        box=box,
        box_iou=_iou(box, query.box),
        query_box=qbox,
        query_box_iou=_iou(qbox, query.query_box),
        latency_ms=round(latency, 1),
        server_ms=body.processing_time_ms,
        timings_ms=body.timings_ms,
    )


def _iou(box: Sequence[int] | None, truth: Sequence[int] | None) -> float | None:
    if truth is None:
        return None
    if not box:
        return 0.0
    a = (box[0], box[1], box[2], box[3])
    b = (truth[0], truth[1], truth[2], truth[3])
    return round(box_iou(a, b), 4)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- figures ------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[k], 1)


def _mean(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.fmean(got), 4) if got else None


def figures(
    outcomes: Sequence[dict[str, Any]], ks: Sequence[int] = ()
) -> dict[str, dict[str, Any]]:
    """Per family and per ``family/group``: recall, MRR, IoU, false matches, latency;
    recall at each of ``ks`` too (``recall@k``, keyed by K as a string)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in outcomes:
        groups[o["family"]].append(o)
        if o["group"] != o["family"]:
            groups[f"{o['family']}/{o['group']}"].append(o)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(groups):
        rows = groups[key]
        latencies = [o["latency_ms"] for o in rows]
        fig: dict[str, Any] = {"n": len(rows)}
        if rows[0]["target"] is None:
            fig["false_match_rate"] = round(sum(o["results"] > 0 for o in rows) / len(rows), 4)
            fig["mean_top_score"] = _mean(o["top_score"] for o in rows)
        else:
            ranks = [o["rank"] for o in rows]
            fig["recall@1"] = round(sum(r == 1 for r in ranks) / len(rows), 4)
            fig["recall@5"] = round(sum(r is not None and r <= 5 for r in ranks) / len(rows), 4)
            fig["mrr"] = round(sum(1.0 / r for r in ranks if r) / len(rows), 4)
            if ks:
                fig["recall@k"] = {
                    str(k): round(sum(r is not None and r <= k for r in ranks) / len(rows), 4)
                    for k in ks
                }
            if rows[0]["family"] == "partial":
                fig["box_iou"] = _mean(o["box_iou"] for o in rows)
            if rows[0]["family"] == "contains":
                fig["query_box_iou"] = _mean(o["query_box_iou"] for o in rows)
        fig["latency_p50_ms"] = _pct(latencies, 0.5)
        fig["latency_p95_ms"] = _pct(latencies, 0.95)
        aggregate = [o["timings_ms"].get("aggregate", 0.0) for o in rows]
        fig["aggregate_p50_ms"] = _pct(aggregate, 0.5)
        rescore = [o["timings_ms"]["rescore"] for o in rows if "rescore" in o["timings_ms"]]
        if rescore:
            fig["rescore_p50_ms"] = _pct(rescore, 0.5)
        out[key] = fig
    return out


#: Score thresholds tried after the fact (on the recorded scores) for the no-match rule.
SWEEP = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)


def threshold_sweep(outcomes: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """For each threshold: distractor queries that would still return a result (false
    matches) and true queries whose right answer would still come first."""
    distractors = [o for o in outcomes if o["target"] is None]
    true = [o for o in outcomes if o["target"] is not None]
    rows = []
    for t in SWEEP:
        false = sum((o["top_score"] or -9.0) >= t for o in distractors)
        kept = sum(o["rank"] == 1 and (o["target_score"] or -9.0) >= t for o in true)
        rows.append(
            {
                "min_score": t,
                "false_match_rate": round(false / max(1, len(distractors)), 4),
                "recall@1": round(kept / max(1, len(true)), 4),
            }
        )
    return rows


def table(report: dict[str, Any]) -> str:
    modes = report["modes"]
    names = list(modes)
    keys = sorted({k for m in modes.values() for k in m["figures"]})
    lines = [
        f"Retrieval quality — {report['photos']} indexed photos (long side <= "
        f"{report['max_side']} px), {report['queries']} queries per mode",
        "RANDOM WEIGHTS — " + RANDOM_NOTE,
        "",
    ]
    head = f"{'family':<22}" + "".join(
        f"{n + ' ' + c:>14}" for n in names for c in ("R@1", "R@5", "MRR", "IoU")
    )
    lines.append(head)
    for key in keys:
        cells = []
        for n in names:
            fig = modes[n]["figures"].get(key, {})
            if "false_match_rate" in fig:
                cells += [f"{'false ' + _f(fig['false_match_rate']):>14}", "", "", ""]
                cells[-3:] = [f"{'':>14}"] * 3
                continue
            iou = fig.get("box_iou", fig.get("query_box_iou"))
            cells += [
                f"{_f(fig.get('recall@1')):>14}",
                f"{_f(fig.get('recall@5')):>14}",
                f"{_f(fig.get('mrr')):>14}",
                f"{_f(iou):>14}",
            ]
        n_ = next((m["figures"][key]["n"] for m in modes.values() if key in m["figures"]), 0)
        lines.append(f"{key + f' ({n_})':<22}" + "".join(cells))
    lines.append("")
    lines.append(
        f"{'mode':<8}{'win/img':>9}{'windows':>9}{'index MB':>10}{'index s':>9}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'agg p50':>9}{'rescore p50':>13}"
    )
    for n in names:
        m = modes[n]
        idx = m["index"]
        overall = m["figures_all"]
        lines.append(
            f"{n:<8}{idx['windows_per_image']:>9}{idx['windows']:>9}"
            f"{idx['index_bytes'] / 1e6:>10.1f}{idx['indexing_s']:>9}"
            f"{_f(overall['latency_p50_ms'], 1):>9}{_f(overall['latency_p95_ms'], 1):>9}"
            f"{_f(overall['aggregate_p50_ms'], 2):>9}{_f(overall.get('rescore_p50_ms'), 1):>13}"
        )
    flight = {m.get("queries_in_flight", 1) for m in modes.values()}
    lines.append(
        f"(latency: client-side, with {'/'.join(map(str, sorted(flight)))} queries in flight)"
    )
    lines += ["", *target_lines(report)]
    stage_one = stage_one_lines(report)
    if stage_one:
        lines += ["", *stage_one]
    lines.append("")
    lines.append("no-match rule, thresholds applied to the recorded scores (all families):")
    lines.append(
        f"{'min_score':>10}" + "".join(f"{n + ' false':>14}{n + ' R@1':>12}" for n in names)
    )
    for i, t in enumerate(SWEEP):
        row = f"{t:>10}"
        for n in names:
            sw = modes[n]["no_match_sweep"][i]
            row += f"{_f(sw['false_match_rate']):>14}{_f(sw['recall@1']):>12}"
        lines.append(row)
    return "\n".join(lines)


def target_lines(report: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its measured value and a verdict (ours vs the
    original system's algorithm, the baseline)."""
    modes = report["modes"]
    if "ours" not in modes:
        return []
    ours = modes["ours"]["figures"]
    baseline = modes.get("baseline", {}).get("figures", {})

    def get(figs: dict[str, Any], key: str, name: str) -> float:
        return float(figs.get(key, {}).get(name) or 0.0)

    rows: list[tuple[str, float, str, bool]] = []
    for group in ("partial/10%", "partial/25%", "partial/50%"):
        r1, r5 = get(ours, group, "recall@1"), get(ours, group, "recall@5")
        rows.append((f"{group} R@1", r1, ">= 0.95", r1 >= 0.95))
        rows.append((f"{group} R@5", r5, ">= 0.99", r5 >= 0.99))
    r1 = get(ours, "full", "recall@1")
    rows.append(("full R@1", r1, ">= 0.99", r1 >= 0.99))
    iou = get(ours, "partial", "box_iou")
    rows.append(("partial box IoU (mean)", iou, ">= 0.5", iou >= 0.5))
    win = float(modes["ours"]["index"]["windows_per_image"])
    rows.append(("windows per image", win, "<= 16", win <= 16))
    if "baseline" in modes:
        base_win = float(modes["baseline"]["index"]["windows_per_image"])
        rows.append(("windows vs baseline's", win / base_win, "<= 0.2", win / base_win <= 0.2))
        for fam in ("full", "partial", "contains"):
            a, b = get(ours, fam, "recall@1"), get(baseline, fam, "recall@1")
            rows.append((f"{fam} R@1 minus baseline's", a - b, ">= 0", a >= b))
    out = [f"{'target':<28}{'measured':>10}  {'wanted':<9}verdict"]
    out += [f"{n:<28}{v:>10.3f}  {w:<9}{'met' if ok else 'MISSED'}" for n, v, w, ok in rows]
    return out


def stage_one_lines(report: dict[str, Any]) -> list[str]:
    """Stage one's recall@K per family (the ``stage1`` mode): is the parent among the K
    best pictures of stage one, the ones ``RESCORE_TOP_K=K`` would re-score?"""
    stage1 = report["modes"].get("stage1")
    if not stage1:
        return []
    figs = stage1["figures"]
    ks = [k for k in next((f["recall@k"] for f in figs.values() if "recall@k" in f), {})]
    if not ks:
        return []
    lines = [
        f"stage one's recall@K (mode stage1: RESCORE_TOP_K=0, top {stage1['results_limit']}):"
        " is the parent among the K pictures stage two re-scores?",
        f"{'family':<22}" + "".join(f"{'K=' + k:>8}" for k in ks),
    ]
    for key in sorted(figs):
        if "recall@k" in figs[key]:
            cells = "".join(f"{_f(figs[key]['recall@k'][k]):>8}" for k in ks)
            label = f"{key} ({figs[key]['n']})"
            lines.append(f"{label:<22}" + cells)
    return lines


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for quality.json")
    parser.add_argument("--quick", action="store_true", help="small smoke run (a few minutes)")
    parser.add_argument("--max-side", type=int, default=None, help="long side of the photos")
    parser.add_argument("--per-area", type=int, default=None, help="partial crops per size")
    parser.add_argument("--photos", type=int, default=None, help="index only this many photos")
    parser.add_argument(
        "--modes",
        default="ours,stage1,baseline",
        help="comma-separated, from: " + ", ".join(MODES) + " and the --variant names",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="one more mode: ours with these settings (e.g. k16:RESCORE_TOP_K=16); "
        "run after the --modes ones",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="queries in flight (latency figures are measured at this load; 1: one at a time)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the 'ours' stack (to measure other settings)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stacks' data folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    specs = dict(MODES)
    for item in args.variant:
        name, _, pairs = item.partition(":")
        name = name.strip()
        if not name or name in specs or not pairs:
            parser.error(f"--variant {item!r}: NAME:KEY=VALUE,... with a new NAME")
        env = dict(kv.strip().split("=", 1) for kv in pairs.split(",") if "=" in kv)
        specs[name] = {**MODES["ours"], "env": {**MODES["ours"]["env"], **env}}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}")
    modes += [m for m in specs if m not in MODES and m not in modes]
    variants = {m for m in specs if m not in MODES}
    max_side = args.max_side or (640 if args.quick else 800)
    per_area = args.per_area or 1
    photo_limit = args.photos or (8 if args.quick else None)
    extra_env = dict(kv.split("=", 1) for kv in args.env)

    started = time.perf_counter()
    cache = CommonSettings().data_dir / "bench-cache"
    photos = qd.load_photo_set(cache, max_side=max_side, limit=photo_limit)
    distractors = photos.distractors
    if args.quick:
        distractors = dict(list(distractors.items())[:3])
    queries = (
        qd.full_queries(photos.indexed)
        + qd.partial_queries(photos.indexed, per_area=per_area)
        + qd.contains_queries(photos.indexed, photos.distractors)
        + qd.distractor_queries(distractors)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-quality-", dir=args.out))
    try:
        photos_dir = work / "photos"
        files = qd.write_photos(photos.indexed, photos_dir)
        runs = {}
        for mode in modes:
            run = run_mode(
                mode,
                photos_dir,
                files,
                queries,
                work,
                workers=args.workers,
                extra_env=extra_env if mode in {"ours", "stage1"} | variants else {},
                concurrency=args.concurrency,
                spec=specs[mode],
                onnx_cache=cache / "onnx",
            )
            run["figures"] = figures(run["outcomes"], specs[mode].get("ks", ()))
            run["figures_all"] = figures(
                [
                    {**o, "family": "all", "group": "all"}
                    for o in run["outcomes"]
                    if o["target"] is not None
                ]
            )["all"]
            run["no_match_sweep"] = threshold_sweep(run["outcomes"])
            runs[mode] = run
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report = {
        "benchmark": "quality",
        "weights": "random",
        "note": RANDOM_NOTE,
        "photos": len(photos.indexed),
        "photo_names": sorted(photos.indexed),
        "distractor_names": sorted(distractors),
        "photo_notes": photos.notes,
        "max_side": max_side,
        "per_area": per_area,
        "quick": args.quick,
        "queries": len(queries),
        "query_counts": _counts(queries),
        "seeds": qd.SEEDS,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "wall_s": round(time.perf_counter() - started, 1),
        "modes": runs,
    }
    text = table(report)
    print(text)
    print(f"\nwall time {report['wall_s']:.0f} s")
    out = args.out / "quality.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


def _counts(queries: Sequence[qd.Query]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for q in queries:
        counts[f"{q.family}/{q.group}"] += 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
