"""An out-of-process optimize dies with the store's process.

After a SIGKILL of the index owner its optimize child must not live on: the next start
deletes the copy that child writes into, and may start another optimize of the same shard
beside it (found by ``make chaos``; HARDENING.md, section 4).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: Fills a shard and optimizes it out of process; prints READY before the optimize.
_OWNER = """
import asyncio, sys
import numpy as np
from imgsearch_common.vectorstore import EdgeVectorStore, PointRecord

async def main() -> None:
    store = EdgeVectorStore(sys.argv[1], optimize_threshold=None, indexing_threshold_kb=1)
    rng = np.random.default_rng(0)
    for start in range(0, 40_000, 5_000):
        vectors = rng.standard_normal((5_000, 128)).astype(np.float32)
        await store.upsert("c", "window", [
            PointRecord(
                f"00000000-0000-4000-8000-{start + i:012d}", v,
                {"parent_id": "p", "box": [0, 0, 1, 1]},
            )
            for i, v in enumerate(vectors)
        ])
    print("READY", flush=True)
    await store.optimize()

asyncio.run(main())
"""


def _optimize_children(work: Path) -> list[int]:
    """Pids of the processes whose command line names ``work`` (the optimize copy)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(work).encode() in part for part in cmdline) and b"-c" in cmdline:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_the_optimize_child_dies_with_the_index_owner(tmp_path: Path) -> None:
    root = tmp_path / "index"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "READY"
        work = root / "c" / ".window.optimizing"
        deadline = time.monotonic() + 60
        children: list[int] = []
        while not children and time.monotonic() < deadline:
            children = [p for p in _optimize_children(work) if p != owner.pid]
            time.sleep(0.05)
        assert children, "the optimize child never started"
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in children), "the optimize child outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if owner.stdout is not None:
            owner.stdout.close()
        for pid in _optimize_children(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
