"""What durability costs on the embedded Edge index: one image's upsert (15 windows, then
the full point, ``write_images``'s order, 512-d vectors) under four flush policies.

A program, not a test::

    .venv/bin/python -m benchmarks.edge_durability --out data/bench

- ``ack after WAL append`` (``flush_interval_s=None``, the store before its flusher): the
  upsert returns once Edge has appended it to its memory-mapped write-ahead log, which
  survives the process's death (the page cache outlives it), not a power loss;
- ``flush before ack``: the same, plus ``EdgeVectorStore.flush()`` (``msync``/``fsync`` of
  the WAL and the segments) after each image, before it counts as written: what surviving
  a power loss point by point would cost;
- ``flush every 1 s`` / ``flush every 5 s`` (``flush_interval_s``; 5 s is the default):
  each written shard flushed in the background that long after its first unflushed write
  (a power loss loses at most about that much of acknowledged writes).

Each run writes ``--images`` images into a fresh index already holding ``--prefill``
images (no HNSW build: ``optimize_threshold=None``, the write path alone), one image at a
time, as fast as it can or at ``--rate`` images/s, and reports the images/s achieved, the
p50/p95 latency of one image's upsert (the flush included where the policy has one), and
what the search API would feel: the event loop's longest stall (every Edge call holds the
GIL, a flush's syncs included) and the share of the run spent in stalls over 20 ms.
JSON goes to ``OUT/edge-durability-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imgsearch_common.payloads import (
    ImagePayload,
    ImagePointIn,
    UpsertRequest,
    WindowPayload,
    WindowPointIn,
)
from imgsearch_common.vectorstore import EdgeVectorStore
from imgsearch_common.vectorstore.writes import write_images

DIM = 512
WINDOWS = 15
COLLECTION = "durability"
#: Policy name → background flush interval (s) of the store; ``flush before ack`` flushes
#: after each image itself.
POLICIES: dict[str, float | None] = {
    "ack after WAL append": None,
    "flush before ack": None,
    "flush every 1 s": 1.0,
    "flush every 5 s": 5.0,
}
#: The event-loop probe's tick (s): a tick that comes late measures a stall (every Edge
#: call holds the GIL, a flush's syncs included).
TICK_S = 0.001


@dataclass
class Row:
    policy: str
    prefill_images: int
    images: int
    #: Images offered per second (0: as fast as the store takes them).
    rate: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    #: Longest time the event loop could not run (ms), and the share of the run it spent
    #: in stalls over 20 ms.
    longest_stall_ms: float
    stalled_share: float


def _image(rng: np.random.Generator) -> UpsertRequest:
    v = rng.standard_normal((WINDOWS + 1, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    image_id = str(uuid.uuid4())
    windows = [
        WindowPointIn(
            id=str(uuid.uuid4()),
            vector=v[i].tolist(),
            payload=WindowPayload(parent_id=image_id, box=(i, i, i + 224, i + 224)),
        )
        for i in range(WINDOWS)
    ]
    payload = ImagePayload(
        filename="photo.jpg",
        original_path="/images/photo.jpg",
        file_size=2_000_000,
        indexed_at=time.time(),
        width=1280,
        height=853,
        collection=COLLECTION,
        stored_path="/images/photo.jpg",
        windows=WINDOWS,
    )
    full = ImagePointIn(id=image_id, vector=v[WINDOWS].tolist(), payload=payload)
    return UpsertRequest(collection=COLLECTION, full=[full], windows=windows)


class StallProbe:
    """Ticks every ``TICK_S`` on the event loop and keeps how late each tick came."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.stalls.append(max(0.0, now - last - TICK_S))
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])


async def _run(policy: str, root: Path, prefill: int, images: int, rate: float, seed: int) -> Row:
    rng = np.random.default_rng(seed)
    store = EdgeVectorStore(root, optimize_threshold=None, flush_interval_s=POLICIES[policy])
    flush_each = policy == "flush before ack"
    probe = StallProbe()
    try:
        for _ in range(prefill):
            await write_images(store, _image(rng))
        await store.flush()
        # Built beforehand: the timing is the store's, not pydantic's.
        requests = [_image(rng) for _ in range(images)]
        latencies: list[float] = []
        probe.start()
        started = time.perf_counter()
        for n, request in enumerate(requests):
            if rate > 0:
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            t0 = time.perf_counter()
            await write_images(store, request)
            if flush_each:
                await store.flush()
            latencies.append(time.perf_counter() - t0)
        writing = time.perf_counter() - started
        # The interval policies' last flush falls after the last write: wait for it.
        await asyncio.sleep(POLICIES[policy] or 0.0)
        elapsed = time.perf_counter() - started
        await probe.stop()
    finally:
        await store.close()
    latencies.sort()
    stalled = sum(x for x in probe.stalls if x > 0.020)
    return Row(
        policy=policy,
        prefill_images=prefill,
        images=images,
        rate=rate,
        images_per_s=images / writing,
        p50_ms=statistics.median(latencies) * 1000,
        p95_ms=latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        longest_stall_ms=max(probe.stalls, default=0.0) * 1000,
        stalled_share=stalled / elapsed,
    )


def _table(rows: list[Row]) -> str:
    head = (
        f"{'policy':<22} {'prefill':>7} {'images':>6} {'offered/s':>9} {'images/s':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'max stall ms':>12} {'stalled':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        offered = f"{r.rate:.0f}" if r.rate > 0 else "max"
        lines.append(
            f"{r.policy:<22} {r.prefill_images:>7} {r.images:>6} {offered:>9} "
            f"{r.images_per_s:>8.1f} {r.p50_ms:>7.2f} {r.p95_ms:>7.2f} "
            f"{r.longest_stall_ms:>12.0f} {r.stalled_share:>7.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.edge_durability", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/bench"), help="where the JSON goes")
    p.add_argument("--images", type=int, default=1000, help="images timed per run")
    p.add_argument(
        "--prefill",
        type=int,
        nargs="+",
        default=[2000],
        help="images already in the index (one set of runs per value)",
    )
    p.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[0.0, 50.0],
        help="images offered per second (0: as fast as the store takes them; one set of "
        "runs per value)",
    )
    p.add_argument(
        "--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES), metavar="P"
    )
    p.add_argument("--dir", type=Path, default=None, help="where the indexes go (a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="edge-durability-") as tmp:
        for prefill in args.prefill:
            for rate in args.rate:
                for n, policy in enumerate(args.policies):
                    root = Path(tmp) / f"{prefill}-{rate}-{n}"
                    row = asyncio.run(_run(policy, root, prefill, args.images, rate, args.seed))
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
    print()
    print(_table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"edge-durability-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
