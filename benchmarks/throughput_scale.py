"""Section 6: the embedded store (Qdrant Edge) at scale, with and without int8 quantization.

Each configuration runs in two child processes, so memory is measured cleanly:

- ``build``: N window vectors (synthetic, clustered like images and their windows,
  with ``parent_id`` / ``box`` payloads) upserted through :class:`EdgeVectorStore`, then
  its HNSW build (the product's own out-of-process optimize). Times and disk size.
- ``query``: a fresh process loads the shard, answers 200 held-out queries (RSS measured
  before and after: RAM per vector), then regenerates the vectors to compute exact
  top-10s with numpy: recall@10 and latency p50/p99 for several ``hnsw_ef``.

RAM and disk per vector are marginal costs: a build of 2 000 vectors gives the fixed part
(WAL, preallocated files), subtracted from the large one.

``python -m benchmarks.throughput_scale build|query DIR N QUANT`` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DIM = 512
CHUNK = 5_000
WINDOWS_PER_IMAGE = 15
SEED = 7
QUERIES = 200
#: (hnsw_ef, oversampling) settings tried per quantization; None = Qdrant's default.
SETTINGS: dict[str, tuple[tuple[int | None, float | None], ...]] = {
    "none": ((None, None), (256, None), (512, None), (1024, None)),
    "int8": ((None, None), (512, 2.0), (1024, 4.0), (2048, 4.0)),
}
#: A tiny build of each configuration: its RSS and disk are the fixed costs (WAL, mmap'd
#: preallocations) subtracted to get the cost per vector.
BASELINE_VECTORS = 2_000


def _centroids(n: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return rng.standard_normal((max(64, n // 2000), DIM), dtype=np.float32)


def chunks(n: int) -> Iterator[tuple[int, np.ndarray]]:
    """The same N vectors in every process: image vectors around shared centroids (cosine
    about 0.6 within a cluster, 0 across), ``WINDOWS_PER_IMAGE`` windows around each image
    vector (cosine about 0.86 to it)."""
    centroids = _centroids(n)
    rng = np.random.default_rng(SEED + 1)
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        images = math.ceil(count / WINDOWS_PER_IMAGE)
        parents = centroids[rng.integers(0, len(centroids), images)]
        parents = parents + 0.8 * rng.standard_normal(parents.shape, dtype=np.float32)
        parents /= np.linalg.norm(parents, axis=1, keepdims=True)
        v = np.repeat(parents, WINDOWS_PER_IMAGE, axis=0)[:count]
        v = v + 0.6 * rng.standard_normal(v.shape, dtype=np.float32) / math.sqrt(DIM)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        yield start, v.astype(np.float32)


def _queries(all_vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(SEED + 2)
    base = all_vectors[rng.integers(0, len(all_vectors), QUERIES)]
    q = base + 0.5 * rng.standard_normal(base.shape, dtype=np.float32) / math.sqrt(DIM)
    out: np.ndarray = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return out


def _point_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- child: build ---------------------------------------------------------------------------


async def _build(root: Path, n: int, quant: str, m: int, ef_construct: int) -> dict[str, Any]:
    from imgsearch_common.payloads import WindowPayload
    from imgsearch_common.vectorstore import EdgeVectorStore, PointRecord

    store = EdgeVectorStore(
        root,
        optimize_threshold=None,
        quantization=quant,  # type: ignore[arg-type]
        hnsw_m=m,
        hnsw_ef_construct=ef_construct,
    )
    upsert_s = 0.0
    try:
        for start, vectors in chunks(n):
            points = [
                PointRecord(
                    _point_id(start + i),
                    v,
                    # A window's payload as the workers write it (payloads.py).
                    WindowPayload(
                        parent_id=_point_id((start + i) // WINDOWS_PER_IMAGE), box=(0, 0, 64, 64)
                    ).model_dump(mode="json"),
                )
                for i, v in enumerate(vectors)
            ]
            t = time.perf_counter()
            await store.upsert("bench", "window", points)
            upsert_s += time.perf_counter() - t
        t = time.perf_counter()
        await store.optimize()
        optimize_s = time.perf_counter() - t
        info = await store.shard_info("bench", "window")
    finally:
        await store.close()
    return {
        "vectors": n,
        "quantization": quant,
        "hnsw_m": m,
        "hnsw_ef_construct": ef_construct,
        "upsert_s": round(upsert_s, 1),
        "hnsw_build_s": round(optimize_s, 1),
        "build_s": round(upsert_s + optimize_s, 1),
        "indexed_vectors": info["indexed_vectors"] if info else None,
        "segments": info["segments"] if info else None,
        "disk_bytes": _du(root / "bench" / "window"),
    }


# --- child: query ---------------------------------------------------------------------------


def _query(root: Path, n: int, quant: str, *, rss_only: bool = False) -> dict[str, Any]:
    from qdrant_edge import (
        EdgeShard,
        QuantizationSearchParams,
        Query,
        QueryRequest,
        SearchParams,
    )

    rss_before = _rss_bytes()
    shard = EdgeShard.load(str(root / "bench" / "window"))
    rss_loaded = _rss_bytes()
    all_vectors = np.empty((n, DIM), dtype=np.float32)

    def search(
        q: np.ndarray, limit: int, ef: int | None, oversampling: float | None = None
    ) -> tuple[list[str], float]:
        quant = None
        if oversampling is not None:
            quant = QuantizationSearchParams(rescore=True, oversampling=oversampling)
        params = None
        if ef is not None or quant is not None:
            params = SearchParams(hnsw_ef=ef, quantization=quant)
        req = QueryRequest(
            limit=limit, query=Query.Nearest(q.tolist()), with_payload=True, params=params
        )
        t = time.perf_counter()
        hits = shard.query(req)
        return [str(h.id) for h in hits], (time.perf_counter() - t) * 1000

    # RSS is read before the vectors are regenerated (for the exact answers), so warm up
    # with data-independent queries.
    rng = np.random.default_rng(SEED + 3)
    warm = rng.standard_normal((50, DIM)).astype(np.float32)
    for q in warm:
        search(q / np.linalg.norm(q), 10, None)
    rss_warm = _rss_bytes()
    if rss_only:
        shard.close()
        return {"rss_after_queries_bytes": rss_warm - rss_before}
    for start, vectors in chunks(n):
        all_vectors[start : start + len(vectors)] = vectors
    queries = _queries(all_vectors)
    sims = queries @ all_vectors.T
    exact = np.argsort(-sims, axis=1)[:, :10]
    del sims
    results: dict[str, Any] = {}
    for ef, oversampling in SETTINGS[quant]:
        lat10, lat200, recalls, parent_recalls = [], [], [], []
        recalls_in_200: list[float] = []
        for q, truth in zip(queries, exact, strict=True):
            ids, ms = search(q, 10, ef, oversampling)
            lat10.append(ms)
            want = {_point_id(int(i)) for i in truth}
            recalls.append(len(want & set(ids)) / 10)
            # What window matching needs: the images (parents) of the exact top 10.
            want_parents = {int(i) // WINDOWS_PER_IMAGE for i in truth}
            got_parents = {int(h[-12:]) // WINDOWS_PER_IMAGE for h in ids}
            parent_recalls.append(len(want_parents & got_parents) / len(want_parents))
            # The search API asks for the top 200 windows (WINDOW_SEARCH_LIMIT), never
            # the top 10: recall@10 within that answer is what window matching gets.
            ids200, ms200 = search(q, 200, ef, oversampling)
            lat200.append(ms200)
            recalls_in_200.append(len(want & set(ids200[:10])) / 10)
        name = "default" if ef is None else str(ef)
        if oversampling is not None:
            name += f" x{oversampling:g}"
        results[name] = {
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "image_recall_at_10": round(float(np.mean(parent_recalls)), 4),
            "recall_at_10_of_top200": round(float(np.mean(recalls_in_200)), 4),
            "top10_ms": {
                "p50": round(float(np.percentile(lat10, 50)), 3),
                "p99": round(float(np.percentile(lat10, 99)), 3),
            },
            "top200_ms": {
                "p50": round(float(np.percentile(lat200, 50)), 3),
                "p99": round(float(np.percentile(lat200, 99)), 3),
            },
        }
    shard.close()
    return {
        "vectors": n,
        "quantization": quant,
        "rss_after_load_bytes": rss_loaded - rss_before,
        "rss_after_queries_bytes": rss_warm - rss_before,
        "by_hnsw_ef": results,
    }


# --- parent -------------------------------------------------------------------------------


def _child(args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "benchmarks.throughput_scale", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"scale child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_scale(
    work_dir: Path,
    n: int,
    quantizations: Sequence[str],
    *,
    hnsw_m: int = 32,
    hnsw_ef_construct: int = 128,
    timeout_s: float = 3600,
) -> dict[str, Any]:
    out: dict[str, Any] = {"vectors": n, "dim": DIM, "configs": {}}
    hnsw = [f"--m={hnsw_m}", f"--ef-construct={hnsw_ef_construct}"]
    for quant in quantizations:
        root = work_dir / f"scale-{quant}-{n}"
        base = work_dir / f"scale-{quant}-{BASELINE_VECTORS}"
        for path in (root, base):
            shutil.rmtree(path, ignore_errors=True)
        small = {
            **_child(["build", str(base), str(BASELINE_VECTORS), quant, *hnsw], timeout_s),
            **_child(["query", str(base), str(BASELINE_VECTORS), quant, "--rss-only"], timeout_s),
        }
        build = _child(["build", str(root), str(n), quant, *hnsw], timeout_s)
        query = _child(["query", str(root), str(n), quant], timeout_s)
        for path in (root, base):
            shutil.rmtree(path, ignore_errors=True)
        extra = n - BASELINE_VECTORS
        ram = query["rss_after_queries_bytes"] - small["rss_after_queries_bytes"]
        disk = build["disk_bytes"] - small["disk_bytes"]
        out["configs"][quant] = {
            **build,
            **query,
            "fixed_ram_bytes": small["rss_after_queries_bytes"],
            "fixed_disk_bytes": small["disk_bytes"],
            "ram_bytes_per_vector": round(ram / extra, 1),
            "disk_bytes_per_vector": round(disk / extra, 1),
        }
    return out


def extrapolate(result: dict[str, Any], target: int) -> dict[str, Any]:
    """Build time and RAM at ``target`` vectors from a run at fewer: build time as
    n·log n (HNSW insertion), RAM and disk linear, latency as log n. Labelled as such."""
    n = int(result["vectors"])
    if n >= target:
        return {}
    grow = target / n * math.log(target) / math.log(n)
    out: dict[str, Any] = {"target_vectors": target, "from_vectors": n, "method": "extrapolated"}
    for quant, cfg in result["configs"].items():
        best = cfg["by_hnsw_ef"]
        out[quant] = {
            "build_s": round(cfg["build_s"] * grow, 0),
            "ram_bytes": round(cfg["fixed_ram_bytes"] + cfg["ram_bytes_per_vector"] * target),
            "disk_bytes": round(cfg["fixed_disk_bytes"] + cfg["disk_bytes_per_vector"] * target),
            "top10_p50_ms_by_ef": {
                ef: round(v["top10_ms"]["p50"] * math.log(target) / math.log(n), 2)
                for ef, v in best.items()
            },
        }
    return out


def main(argv: Sequence[str]) -> None:
    phase, root, n, quant = argv[0], Path(argv[1]), int(argv[2]), argv[3]
    rss_only = "--rss-only" in argv
    options = dict(a.lstrip("-").split("=", 1) for a in argv[4:] if "=" in a)
    if phase == "build":
        # The product's defaults for new collections (HNSW_M, HNSW_EF_CONSTRUCT).
        m, efc = int(options.get("m", 32)), int(options.get("ef-construct", 128))
        result = asyncio.run(_build(root, n, quant, m, efc))
    else:
        result = _query(root, n, quant, rss_only=rss_only)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
