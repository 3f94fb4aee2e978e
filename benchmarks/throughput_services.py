"""Sections that run the real services as processes (``imgsearch_devstack``).

- :func:`encoder_load` — crops/s through the encoder's HTTP API under concurrent load.
- :func:`indexing_stack` — a folder through Redis → workers → encoder → search API → Edge.
- :func:`indexing_inprocess` — the same pipeline without Redis and the API hop (decode in
  a process pool, the encoder over HTTP, Edge in this process): for machines without
  ``redis-server``, such as the GPU device.
- :func:`build_search_index` + :func:`search_latency` — query latency on a filled index.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.ids import window_id
from imgsearch_common.jobs import Job
from imgsearch_common.payloads import (
    ImagePayload,
    ImagePointIn,
    UpsertRequest,
    WindowPayload,
    WindowPointIn,
)
from imgsearch_common.vectorstore import EdgeVectorStore
from imgsearch_common.vectorstore.writes import write_images
from imgsearch_devstack import (
    LocalStack,
    Proc,
    StackConfig,
    free_port,
    start_service,
)
from imgsearch_worker.pipeline import prepare_image
from imgsearch_worker.points import image_points

from .throughput_data import Photo
from .throughput_model import LAYOUT

WORKER_STAGES = ("read", "decode", "windows", "encode", "upsert")
#: Internal token of the encoders the benchmark starts (loopback only, gone when it ends).
BENCH_TOKEN = "bench-token"  # noqa: S105


# --- helpers ------------------------------------------------------------------------------


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    if not values:
        return {f"p{p}": float("nan") for p in points}
    a = np.asarray(values, dtype=np.float64)
    return {f"p{p}": round(float(np.percentile(a, p)), 3) for p in points}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus samples of ``url`` (a /metrics endpoint): (name, labels) → value."""
    text = httpx.get(url, timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoder_env(base: dict[str, str], port: int, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ENCODER_PORT": str(port),
        "INTERNAL_TOKEN": token,
        **base,
    }


@contextlib.contextmanager
def running_encoder(env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    token = BENCH_TOKEN
    url = f"http://127.0.0.1:{port}"
    proc = start_service(
        "encoder",
        "imgsearch_encoder",
        encoder_env(env, port, token),
        url + "/health",
        log_dir=log_dir,
        timeout=600,
    )
    try:
        yield url, proc
    finally:
        proc.stop()


# --- 2. the encoder service under load ------------------------------------------------------


async def _load(
    url: str,
    token: str,
    image_size: int,
    *,
    clients: int,
    crops_per_request: int,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    body = rng.integers(0, 256, (crops_per_request, image_size, image_size, 3), np.uint8).tobytes()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/octet-stream",
        "X-Crop-Count": str(crops_per_request),
    }
    latencies: list[float] = []
    crops_done = 0
    rejected = 0
    loop = asyncio.get_running_loop()
    window_start = loop.time() + warmup_s
    window_end = window_start + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:

        async def one_client() -> None:
            nonlocal crops_done, rejected
            while loop.time() < window_end:
                t0 = loop.time()
                response = await client.post("/v1/embed/pixels", content=body, headers=headers)
                t1 = loop.time()
                if response.status_code == 429:
                    rejected += 1
                    await asyncio.sleep(0.05)
                    continue
                response.raise_for_status()
                # Steady state: what completes inside the window counts, whenever it began.
                if window_start <= t1 <= window_end:
                    latencies.append((t1 - t0) * 1000)
                    crops_done += crops_per_request

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return {
        "clients": clients,
        "crops_per_request": crops_per_request,
        "seconds": seconds,
        "requests": len(latencies),
        "rejected_429": rejected,
        "crops_per_s": round(crops_done / seconds, 2),
        "latency_ms": percentiles(latencies, (50, 99)),
    }


def encoder_load(
    env: dict[str, str],
    log_dir: Path,
    *,
    clients: int,
    crops_per_request: int,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    """Start the encoder, load it with ``clients`` concurrent callers, stop it."""
    with running_encoder(env, log_dir) as (url, proc):
        health = httpx.get(url + "/health", timeout=10).json()
        before = scrape(url + "/metrics")
        cpu_before = cpu_seconds(proc.popen.pid)
        started = time.perf_counter()
        result = asyncio.run(
            _load(
                url,
                BENCH_TOKEN,
                int(health["image_size"]),
                clients=clients,
                crops_per_request=crops_per_request,
                warmup_s=warmup_s,
                seconds=seconds,
            )
        )
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proc.popen.pid) - cpu_before
        after = scrape(url + "/metrics")
    forward = delta(after, before, "imgsearch_encoder_forward_seconds_sum", kind="image")
    batches = delta(after, before, "imgsearch_encoder_forward_seconds_count", kind="image")
    items = delta(after, before, "imgsearch_encoder_items_encoded_total", kind="image")
    result.update(
        {
            "max_batch_size": health.get("max_batch_size"),
            "device": health["device"],
            "dtype": health["dtype"],
            "mean_batch": round(items / batches, 2) if batches else 0.0,
            # Over the whole run (warm-up included): how much of the time the model ran.
            "model_busy_share": round(forward / wall, 3),
            "crops_per_s_inside_forward": round(items / forward, 2) if forward else 0.0,
            # Whole run, warm-up included: crops per CPU-second of the encoder process.
            "crops_per_cpu_s": round(items / cpu, 3) if cpu > 0 else 0.0,
        }
    )
    return result


# --- 3. indexing end to end -----------------------------------------------------------------


def link_photos(photos: Sequence[Photo], folder: Path) -> Path:
    """A folder holding exactly ``photos`` (hard links where possible)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for photo in photos:
        target = folder / photo.path.name
        try:
            os.link(photo.path, target)
        except OSError:
            shutil.copyfile(photo.path, target)
    return folder


def _stage_split(
    worker_metrics: list[dict[Any, float]],
    encoder_before: dict[Any, float],
    encoder_after: dict[Any, float],
    images: int,
) -> dict[str, Any]:
    """Seconds per image of each stage, summed over workers (stages of different images
    overlap, so these add up to more than the wall time per image)."""
    sums = {s: 0.0 for s in WORKER_STAGES}
    for m in worker_metrics:
        for s in WORKER_STAGES:
            sums[s] += sample(m, "imgsearch_worker_stage_seconds_sum", stage=s)
    queue = delta(
        encoder_after,
        encoder_before,
        "imgsearch_encoder_request_seconds_sum",
        kind="image",
        stage="queue",
    )
    model = delta(
        encoder_after,
        encoder_before,
        "imgsearch_encoder_request_seconds_sum",
        kind="image",
        stage="model",
    )
    per = {s: round(v / max(1, images), 4) for s, v in sums.items()}
    # The worker's "encode" is the whole HTTP call: transfer + waiting for a batch + the
    # forward passes its crops took part in. The encoder reports the last two.
    per["encode_wait_in_batcher"] = round(queue / max(1, images), 4)
    per["encode_model"] = round(model / max(1, images), 4)
    per["transfer"] = round(max(0.0, sums["encode"] - queue - model) / max(1, images), 4)
    return per


def indexing_stack(
    photos: Sequence[Photo],
    work_dir: Path,
    env: dict[str, str],
    *,
    workers: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Queue ``photos`` through the real stack and time it until the batch is finished."""
    folder = link_photos(photos, work_dir.resolve() / "photos")  # the API wants it absolute
    data_dir = work_dir / "stack"
    shutil.rmtree(data_dir, ignore_errors=True)
    base = free_port()
    # The one folder the API may index (INDEX_ROOTS: none by default).
    env = {**env, "INDEX_ROOTS": json.dumps([str(folder)])}
    config = StackConfig.on_free_ports(
        data_dir, workers=workers, worker_base_port=base, extra_env=env
    )
    with LocalStack(config) as stack:
        assert stack.encoder is not None
        enc_url = stack.encoder_url
        health = httpx.get(enc_url + "/health", timeout=10).json()
        enc_before = scrape(enc_url + "/metrics")
        pids = {p.name: p.popen.pid for p in stack.procs()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        queued = httpx.post(
            stack.api_url + "/api/index/folder",
            json={"path": str(folder), "collection": "bench"},
            timeout=60,
        )
        if queued.status_code != 202:
            raise RuntimeError(f"queueing the folder failed: {queued.status_code} {queued.text}")
        batch_id = queued.json()["batch_id"]
        status: dict[str, Any] = {}
        while time.perf_counter() - started < timeout_s:
            status = httpx.get(f"{stack.api_url}/api/index/batches/{batch_id}", timeout=10).json()
            if status.get("finished"):
                break
            time.sleep(0.25)
        wall = time.perf_counter() - started
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in pids.items()}
        enc_after = scrape(enc_url + "/metrics")
        worker_metrics = [scrape(f"http://127.0.0.1:{base + i}/metrics") for i in range(workers)]
        windows = sum(sample(m, "imgsearch_worker_windows_total") for m in worker_metrics)
    done = int(status.get("done", 0))
    forward = delta(enc_after, enc_before, "imgsearch_encoder_forward_seconds_sum", kind="image")
    batches = delta(enc_after, enc_before, "imgsearch_encoder_forward_seconds_count", kind="image")
    items = delta(enc_after, enc_before, "imgsearch_encoder_items_encoded_total", kind="image")
    return {
        "mode": "stack (redis + workers + encoder + search API + Edge)",
        "workers": workers,
        "images": len(photos),
        "done": done,
        "failed": int(status.get("failed", 0)),
        "finished": bool(status.get("finished")),
        "wall_s": round(wall, 2),
        "images_per_s": round(done / wall, 3),
        "windows_per_image": round(windows / max(1, done), 2),
        "crops_per_s": round((done + windows) / wall, 2),
        "encoder_max_batch_size": health.get("max_batch_size"),
        "encoder_mean_batch": round(items / batches, 2) if batches else 0.0,
        "model_busy_share": round(forward / wall, 3),
        "stage_s_per_image": _stage_split(worker_metrics, enc_before, enc_after, done),
        # CPU seconds each process of the stack used during the run: where the cores went.
        "cpu_s_by_process": cpu,
        "crops_per_cpu_s_all_processes": round((done + windows) / sum(cpu.values()), 3),
    }


async def _index_inprocess(
    photos: Sequence[Photo],
    encoder_url: str,
    store: EdgeVectorStore,
    *,
    decode_processes: int,
    in_flight: int,
    image_size: int,
) -> dict[str, Any]:
    client = EncoderClient(encoder_url, BENCH_TOKEN, timeout_s=600)
    sums = {s: 0.0 for s in WORKER_STAGES}
    windows = 0
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(in_flight)
    work = partial(
        prepare_image,
        image_size=image_size,
        max_bytes=10**9,
        max_pixels=10**9,
        layout=LAYOUT,
    )
    # Spawned, not forked: this process may hold a CUDA context (the model-only section).
    with ProcessPoolExecutor(decode_processes, mp_context=mp.get_context("spawn")) as pool:

        async def one(photo: Photo) -> None:
            nonlocal windows
            async with gate:
                prepared = await loop.run_in_executor(pool, work, str(photo.path))
                t0 = time.perf_counter()
                vectors = await client.embed_pixels(prepared.pixels)
                t1 = time.perf_counter()
                # The worker's own payloads and write order (without Redis and the API hop).
                job = Job(photo.path.name, "bench", "bench", str(photo.path), name=photo.path.name)
                await write_images(store, image_points(job, prepared, vectors))
                t2 = time.perf_counter()
                for stage, seconds in prepared.timings.items():
                    sums[stage] += seconds
                sums["encode"] += t1 - t0
                sums["upsert"] += t2 - t1
                windows += len(prepared.boxes)

        # Warm the pool's processes (imports) before the clock starts.
        await asyncio.gather(
            *(loop.run_in_executor(pool, time.sleep, 0.01) for _ in range(decode_processes))
        )
        started = time.perf_counter()
        await asyncio.gather(*(one(p) for p in photos))
        wall = time.perf_counter() - started
    await client.aclose()
    return {"wall": wall, "windows": windows, "sums": sums}


def indexing_inprocess(
    photos: Sequence[Photo],
    work_dir: Path,
    env: dict[str, str],
    log_dir: Path,
    *,
    decode_processes: int,
    in_flight: int,
) -> dict[str, Any]:
    """The pipeline without Redis and without the search API hop (see the module doc)."""
    index_dir = work_dir / "inprocess-index"
    shutil.rmtree(index_dir, ignore_errors=True)
    with running_encoder(env, log_dir) as (url, _):
        health = httpx.get(url + "/health", timeout=10).json()
        before = scrape(url + "/metrics")
        store = EdgeVectorStore(index_dir, optimize_threshold=None)

        async def run() -> dict[str, Any]:
            try:
                return await _index_inprocess(
                    photos,
                    url,
                    store,
                    decode_processes=decode_processes,
                    in_flight=in_flight,
                    image_size=int(health["image_size"]),
                )
            finally:
                await store.close()

        out = asyncio.run(run())
        after = scrape(url + "/metrics")
    n = len(photos)
    wall = out["wall"]
    forward = delta(after, before, "imgsearch_encoder_forward_seconds_sum", kind="image")
    batches = delta(after, before, "imgsearch_encoder_forward_seconds_count", kind="image")
    items = delta(after, before, "imgsearch_encoder_items_encoded_total", kind="image")
    queue = delta(
        after, before, "imgsearch_encoder_request_seconds_sum", kind="image", stage="queue"
    )
    model = delta(
        after, before, "imgsearch_encoder_request_seconds_sum", kind="image", stage="model"
    )
    per = {s: round(v / n, 4) for s, v in out["sums"].items()}
    per["encode_wait_in_batcher"] = round(queue / n, 4)
    per["encode_model"] = round(model / n, 4)
    per["transfer"] = round(max(0.0, out["sums"]["encode"] - queue - model) / n, 4)
    return {
        "mode": f"in-process (no Redis, no API hop): {decode_processes} decode processes, "
        f"{in_flight} images in flight, encoder over HTTP, Edge in the driver",
        "images": n,
        "done": n,
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 3),
        "windows_per_image": round(out["windows"] / n, 2),
        "crops_per_s": round((n + out["windows"]) / wall, 2),
        "encoder_max_batch_size": health.get("max_batch_size"),
        "encoder_mean_batch": round(items / batches, 2) if batches else 0.0,
        "model_busy_share": round(forward / wall, 3),
        "stage_s_per_image": per,
    }


# --- 5. search latency ----------------------------------------------------------------------


def synthetic_vectors(
    rng: np.random.Generator, n: int, dim: int, centroids: np.ndarray, spread: float
) -> np.ndarray:
    """Unit vectors clustered around ``centroids`` (image-like: neighbours exist)."""
    picks = centroids[rng.integers(0, len(centroids), n)]
    v = picks + spread * rng.standard_normal((n, dim), dtype=np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def build_search_index(
    index_root: Path, images: int, windows_per_image: int, *, dim: int = 512, seed: int = 0
) -> dict[str, Any]:
    """Fill an Edge index (collection ``bench``) with synthetic images and their windows,
    and build its HNSW graphs: the state a long-running search API would be in."""
    shutil.rmtree(index_root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    # Windows lie near their image (cosine about 0.86), images near shared centroids.
    centroids = rng.standard_normal((max(16, images // 50), dim), dtype=np.float32)
    started = time.perf_counter()

    async def fill() -> None:
        store = EdgeVectorStore(index_root, optimize_threshold=None)
        try:
            chunk = 500
            for start in range(0, images, chunk):
                n = min(chunk, images - start)
                full = synthetic_vectors(rng, n, dim, centroids, 0.8)
                ids = [f"00000000-0000-4000-8000-{start + i:012d}" for i in range(n)]
                points = []
                windows = []
                for i in range(n):
                    # The payloads the workers write (payloads.py), for synthetic pictures.
                    payload = ImagePayload(
                        filename=f"synthetic-{start + i}.jpg",
                        original_path=f"/synthetic/{start + i}.jpg",
                        stored_path=f"/synthetic/{start + i}.jpg",
                        file_size=100_000,
                        indexed_at=0.0,
                        width=1920,
                        height=1080,
                        collection="bench",
                        source="folder",
                        sha256=f"{start + i:064x}",
                        windows=windows_per_image,
                    )
                    points.append(ImagePointIn(id=ids[i], vector=full[i].tolist(), payload=payload))
                    near = full[i] + 0.35 * rng.standard_normal(
                        (windows_per_image, dim), dtype=np.float32
                    )
                    near /= np.linalg.norm(near, axis=1, keepdims=True)
                    for w in range(windows_per_image):
                        box = (w * 10, 0, w * 10 + 540, 540)
                        windows.append(
                            WindowPointIn(
                                id=window_id(ids[i], box),
                                vector=near[w].tolist(),
                                payload=WindowPayload(parent_id=ids[i], box=box),
                            )
                        )
                await write_images(
                    store, UpsertRequest(collection="bench", full=points, windows=windows)
                )
            await store.optimize()
        finally:
            await store.close()

    asyncio.run(fill())
    return {
        "images": images,
        "windows": images * windows_per_image,
        "build_s": round(time.perf_counter() - started, 1),
    }


def _timed_requests(send: Any, n: int) -> tuple[list[float], list[dict[str, float]], list[float]]:
    client_ms, server, non_encode = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        response = send()
        client_ms.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        body = response.json()
        timings = body["timings_ms"]
        server.append(timings)
        non_encode.append(body["processing_time_ms"] - timings.get("encode", 0.0))
    return client_ms, server, non_encode


def search_latency(
    data_dir: Path,
    env: dict[str, str],
    query_image: bytes,
    *,
    requests: int,
    saturation_clients: int,
    saturation_s: float,
) -> dict[str, Any]:
    """Latency of each kind of query, one at a time, then requests/s at saturation."""
    # The saturating clients share one address: let all of them in at once.
    env = {"SEARCH_PER_CLIENT": str(saturation_clients), **env}
    config = StackConfig.on_free_ports(data_dir, workers=0, extra_env=env)
    out: dict[str, Any] = {"query_image_bytes": len(query_image)}
    with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as client:

        def by_image(full: bool, windows: bool) -> Any:
            def send() -> httpx.Response:
                return client.post(
                    "/api/search/by-image",
                    files={"file": ("query.jpg", query_image, "image/jpeg")},
                    data={
                        "collection": "bench",
                        "use_full_matching": str(full).lower(),
                        "use_partial_matching": str(windows).lower(),
                        "limit": "10",
                    },
                )

            return send

        def by_text() -> httpx.Response:
            return client.post(
                "/api/search/by-text",
                json={"text": "a red car on a street", "collection": "bench", "limit": 10},
            )

        kinds = {
            "by_image_full_and_partial": by_image(True, True),
            "by_image_full": by_image(True, False),
            "by_image_partial": by_image(False, True),
            "by_text": by_text,
        }
        for send in kinds.values():  # warm every path (HNSW pages, encoder, tokenizer)
            for _ in range(3):
                send().raise_for_status()
        for name, send in kinds.items():
            client_ms, server, non_encode = _timed_requests(send, requests)
            stages = sorted({k for t in server for k in t})
            out[name] = {
                "requests": requests,
                "client_ms": percentiles(client_ms),
                "server_except_encode_ms": percentiles(non_encode),
                "server_stage_ms_p50": {
                    k: round(statistics.median(t.get(k, 0.0) for t in server), 3) for k in stages
                },
            }
        out["saturation"] = asyncio.run(
            _saturate(stack.api_url, query_image, saturation_clients, saturation_s)
        )
    return out


async def _saturate(url: str, query: bytes, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one() -> None:
            while loop.time() < end:
                t0 = loop.time()
                r = await client.post(
                    "/api/search/by-image",
                    files={"file": ("q.jpg", query, "image/jpeg")},
                    data={"collection": "bench", "limit": "10"},
                )
                r.raise_for_status()
                latencies.append((loop.time() - t0) * 1000)

        started = loop.time()
        await asyncio.gather(*(one() for _ in range(clients)))
        wall = loop.time() - started
    return {
        "kind": "by_image_full_and_partial",
        "clients": clients,
        "requests_per_s": round(len(latencies) / wall, 2),
        "client_ms": percentiles(latencies),
    }


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)
