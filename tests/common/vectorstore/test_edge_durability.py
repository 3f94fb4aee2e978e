"""The Edge index's durability promise: an upsert acknowledged is never lost when the process
dies (SIGKILL, the OOM killer, a crash), even in the middle of a background optimize.

Why it holds without a flush before each acknowledgement: Qdrant Edge appends each update
to its write-ahead log, a memory-mapped file, before ``update()`` returns; what is written
there lives in the kernel's page cache, which outlives the process, and the shard replays
its log when it is loaded again. A power loss or a kernel crash is another matter: pages
not yet written back are gone (see the README, "Choices").

A child process writes images (15 windows, then the full point: ``write_images``'s order)
and prints each acknowledged image's ids; the test kills its whole process group (the
optimizer's child too) at a random moment, reopens the index and looks every acknowledged
point up; then the next child goes on writing into the same index.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from imgsearch_common.vectorstore import EdgeVectorStore

from .helpers import full_points, unit_vectors, window_points

#: Small vectors and a low optimize threshold: optimizes (copy, child build, swap) start
#: every few dozen images, so kills land in every phase of them.
DIM = 16
OPTIMIZE_EVERY = 300
ROUNDS = 4
#: A kill comes up to this long after the child's first acknowledgement.
MAX_KILL_DELAY_S = 5.0
STARTUP_S = 60.0

_CHILD = """\
import asyncio, json, sys, uuid
import numpy as np
from imgsearch_common.payloads import (
    ImagePayload, ImagePointIn, UpsertRequest, WindowPayload, WindowPointIn,
)
from imgsearch_common.vectorstore import EdgeVectorStore
from imgsearch_common.vectorstore.writes import write_images

async def main(root: str, dim: int, threshold: int) -> None:
    store = EdgeVectorStore(
        __import__("pathlib").Path(root),
        full_scan_threshold_kb=1, indexing_threshold_kb=1, optimize_threshold=threshold,
    )
    rng = np.random.default_rng()
    while True:
        v = rng.standard_normal((16, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        image_id = str(uuid.uuid4())
        windows = [
            WindowPointIn(
                id=str(uuid.uuid4()), vector=v[i].tolist(),
                payload=WindowPayload(parent_id=image_id, box=(i, i, i + 8, i + 8)),
            )
            for i in range(15)
        ]
        # A file of its own: writing a file detaches it from any other image.
        payload = ImagePayload(
            filename="x.jpg", original_path=f"/{image_id}.jpg", file_size=1, indexed_at=0.0,
            width=64, height=64, collection="durable",
        )
        full = ImagePointIn(id=image_id, vector=v[15].tolist(), payload=payload)
        await write_images(
            store, UpsertRequest(collection="durable", full=[full], windows=windows)
        )
        # Acknowledged: written where the caller would answer 200.
        sys.stdout.write(json.dumps([image_id, [w.id for w in windows]]) + "\\n")
        sys.stdout.flush()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def _write_until_killed(root: Path, kill_delay_s: float) -> list[tuple[str, list[str]]]:
    """Run the writer; SIGKILL its process group ``kill_delay_s`` after its first
    acknowledgement; every image it acknowledged."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(DIM), str(OPTIMIZE_EVERY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: the optimizer's child dies with it
    ) as child:
        assert child.stdout is not None

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

        # A writer that never gets going is killed too (and fails the test below).
        guard = threading.Timer(STARTUP_S, kill)
        guard.start()
        try:
            first = child.stdout.readline()
        finally:
            guard.cancel()
        killer = threading.Timer(kill_delay_s, kill)
        killer.start()
        try:
            rest = child.stdout.read()  # until the kill closes the pipe
        finally:
            killer.cancel()
            kill()
        assert first, f"the writer exited with {child.wait()} before writing anything"
        assert child.wait() == -signal.SIGKILL
    lines = [first, *rest.splitlines(keepends=True)]
    # A line cut short by the kill was being printed: its image counts as not acknowledged.
    return [tuple(json.loads(line)) for line in lines if line.endswith(b"\n")]


async def _missing(root: Path, acked: list[tuple[str, list[str]]]) -> tuple[int, int]:
    """How many acknowledged full points and window points the reopened index lacks."""
    store = EdgeVectorStore(root, optimize_threshold=None)
    try:
        fulls = [image_id for image_id, _ in acked]
        windows = [w for _, ws in acked for w in ws]
        found_full = len(await store.retrieve("durable", "full", fulls))
        found_windows = 0
        for at in range(0, len(windows), 1000):
            found_windows += len(await store.retrieve("durable", "window", windows[at : at + 1000]))
    finally:
        await store.close()
    return len(fulls) - found_full, len(windows) - found_windows


def test_acknowledged_upserts_survive_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    delays = random.Random(seed).sample(range(1, 1000), ROUNDS)
    root = tmp_path / "index"
    acked: list[tuple[str, list[str]]] = []
    for n, delay in enumerate(delays):
        delay_s = delay / 1000 * MAX_KILL_DELAY_S
        acked += _write_until_killed(root, delay_s)
        lost = asyncio.run(_missing(root, acked))
        assert lost == (0, 0), (
            f"round {n} (seed {seed}, killed {delay_s:.2f} s in): of {len(acked)} "
            f"acknowledged images, {lost[0]} full points and {lost[1]} windows are missing"
        )
    assert len(acked) > ROUNDS


# --- the flusher: what bounds a power loss -------------------------------------------------


def _persisted(shard: Path) -> int:
    """The newest update Edge has flushed into the segments of ``shard`` (each segment's
    ``segment.json`` records it at a flush; later updates are only in the WAL)."""
    versions = [
        json.loads(f.read_text())["version"] or 0 for f in shard.glob("segments/*/segment.json")
    ]
    return max(versions, default=-1)


async def _flushed(shard: Path, since: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _persisted(shard) > since:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_written_shards_are_flushed_after_the_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None, flush_interval_s=0.1)
    shard = tmp_path / "index" / "c" / "full"
    try:
        for _ in range(3):
            before = _persisted(shard)
            await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 5, DIM)))
            assert await _flushed(shard, before), "the written shard was never flushed"
    finally:
        await store.close()


async def test_without_an_interval_only_close_flushes(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    store = EdgeVectorStore(tmp_path / "index", optimize_threshold=None, flush_interval_s=None)
    shard = tmp_path / "index" / "c" / "full"
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 5, DIM)))
    before = _persisted(shard)
    await store.upsert("c", "full", full_points(rng, unit_vectors(rng, 5, DIM)))
    await asyncio.sleep(0.5)
    assert _persisted(shard) == before
    await store.close()
    assert _persisted(shard) > before


async def test_flushes_during_writes_and_optimizes_lose_nothing(tmp_path: Path) -> None:
    """Flushes every 10 ms while images are written and the shards optimized meanwhile
    (copied, rebuilt in a child, swapped): every point is there after a reopen."""
    rng = np.random.default_rng(9)
    root = tmp_path / "index"
    store = EdgeVectorStore(
        root,
        full_scan_threshold_kb=1,
        indexing_threshold_kb=1,
        optimize_threshold=60,
        flush_interval_s=0.01,
    )
    ids: list[str] = []
    try:
        for _ in range(40):
            images = full_points(rng, unit_vectors(rng, 4, DIM))
            await store.upsert("c", "full", images)
            for image in images:
                await store.upsert(
                    "c", "window", window_points(rng, image.id, unit_vectors(rng, 3, DIM))
                )
            ids += [p.id for p in images]
            await asyncio.sleep(0.005)
        await store.optimize()
    finally:
        await store.close()
    reopened = EdgeVectorStore(root, optimize_threshold=None)
    try:
        assert len(await reopened.retrieve("c", "full", ids)) == len(ids)
        assert await reopened.count("c", "window") == 3 * len(ids)
    finally:
        await reopened.close()
