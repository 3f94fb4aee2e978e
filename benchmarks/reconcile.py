"""After a fault campaign: do the files, the index and the queue agree?

- **index** (:func:`reconcile_index`, once the search API has stopped and released the
  Edge index): every good file's content id is a full-image point whose payload names
  that content, and its windows are exactly the boxes its layout gives, each under its
  deterministic id. The shards' exact counts must equal what was found: then nothing
  else is there (no duplicate of an image, no phantom point of something never queued).
- **queue** (:func:`queue_state`, :func:`check_dead_letters`): nothing pending in the
  consumer group, the stream and the delayed set empty, and the dead letters exactly
  the deliberately bad files, each once, each with its reason.

Only the interfaces the services use are read: ``EdgeVectorStore`` (retrieve, count) and
the queue's Redis keys (``imgsearch_common.jobs``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from imgsearch_common.ids import image_id, window_id
from imgsearch_common.jobs import DEAD, DELAYED, GROUP, STREAM
from imgsearch_common.payloads import ImagePayload, WindowPayload
from imgsearch_common.vectorstore import EdgeVectorStore
from imgsearch_common.windows import Box, WindowLayout

from .campaign_data import CorpusFile

#: Ids per retrieve call.
_CHUNK = 512


@dataclass
class IndexCheck:
    files: int
    expected_windows: int
    full_points: int = 0  # the full shard's exact count
    window_points: int = 0
    missing: int = 0  # good files without their full point
    wrong_payload: int = 0  # full point found, payload not that file's
    missing_windows: int = 0
    wrong_window_payload: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def extra_full(self) -> int:
        """Full points beyond the files' own: duplicates or phantoms."""
        return self.full_points - (self.files - self.missing)

    @property
    def extra_windows(self) -> int:
        return self.window_points - (self.expected_windows - self.missing_windows)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.wrong_payload
            or self.missing_windows
            or self.wrong_window_payload
            or self.extra_full
            or self.extra_windows
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "expected_windows": self.expected_windows,
            "full_points": self.full_points,
            "window_points": self.window_points,
            "missing": self.missing,
            "duplicates_or_phantoms": self.extra_full,
            "wrong_payload": self.wrong_payload,
            "missing_windows": self.missing_windows,
            "extra_windows": self.extra_windows,
            "wrong_window_payload": self.wrong_window_payload,
            "ok": self.ok,
            "examples": self.examples[:20],
        }


def expected_windows(files: Sequence[CorpusFile], layout: WindowLayout) -> dict[str, list[Box]]:
    """Image id → the window boxes its layout gives (sizes as the files were written)."""
    return {image_id(f.sha256): layout.boxes(f.width, f.height) for f in files}


async def _reconcile(
    index_root: Path, collection: str, files: Sequence[CorpusFile], layout: WindowLayout
) -> IndexCheck:
    boxes = expected_windows(files, layout)
    check = IndexCheck(files=len(files), expected_windows=sum(len(b) for b in boxes.values()))
    store = EdgeVectorStore(index_root, optimize_threshold=None)
    try:
        check.full_points = await store.count(collection, "full")
        check.window_points = await store.count(collection, "window")
        by_id = {image_id(f.sha256): f for f in files}
        ids = list(by_id)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _CHUNK):
            for hit in await store.retrieve(collection, "full", ids[start : start + _CHUNK]):
                found[hit.id] = hit.payload
        for iid, f in by_id.items():
            payload = ImagePayload.read(found.get(iid))
            if iid not in found:
                check.missing += 1
                check.examples.append(f"missing: {f.path.name}")
            elif (
                payload is None
                or payload.sha256 != f.sha256
                or (payload.width, payload.height) != (f.width, f.height)
                or payload.windows != len(boxes[iid])
            ):
                check.wrong_payload += 1
                check.examples.append(f"payload of {f.path.name}: {found[iid]}")
        wanted = [(window_id(iid, box), iid, box) for iid, bs in boxes.items() for box in bs]
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start : start + _CHUNK]
            hits = await store.retrieve(collection, "window", [w[0] for w in part])
            got = {h.id: h.payload for h in hits}
            for wid, iid, box in part:
                if wid not in got:
                    check.missing_windows += 1
                    continue
                wp = WindowPayload.read(got[wid])
                if wp is None or wp.parent_id != iid or tuple(wp.box) != tuple(box):
                    check.wrong_window_payload += 1
                    check.examples.append(f"window {wid}: {got[wid]}")
    finally:
        await store.close()
    return check


def reconcile_index(
    index_root: Path, collection: str, files: Sequence[CorpusFile], layout: WindowLayout
) -> IndexCheck:
    """Compare the Edge index under ``index_root`` with ``files`` (no process may hold it)."""
    return asyncio.run(_reconcile(index_root, collection, files, layout))


@dataclass(frozen=True)
class QueueState:
    pending: int  # delivered, not acknowledged (the consumer group's pending list)
    stream: int  # entries in the stream (deleted once handled)
    delayed: int  # retries waiting
    dead_letters: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "stream": self.stream,
            "delayed": self.delayed,
            "dead_letters": len(self.dead_letters),
        }


def queue_state(redis_url: str) -> QueueState:
    r = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        try:
            pending = int(r.xpending(STREAM, GROUP)["pending"])
        except redis.ResponseError:  # no group: nothing was ever queued
            pending = 0
        stream = int(r.xlen(STREAM))
        delayed = int(r.zcard(DELAYED))
        dead = [json.loads(x) for x in r.lrange(DEAD, 0, -1)]
    finally:
        r.close()
    return QueueState(pending, stream, delayed, dead)


def check_dead_letters(
    dead: Sequence[Mapping[str, Any]], bad: Mapping[Path, str]
) -> dict[str, Any]:
    """Whether ``dead`` holds exactly one letter per file of ``bad``, with its reason."""
    paths = Counter(str(d.get("job", {}).get("path", "")) for d in dead)
    reasons = {str(d.get("job", {}).get("path", "")): d.get("reason") for d in dead}
    wanted = {str(p): r for p, r in bad.items()}
    unexpected = sorted(p for p in paths if p not in wanted)
    missing = sorted(p for p in wanted if p not in paths)
    twice = sorted(p for p, n in paths.items() if n > 1)
    wrong = sorted(
        f"{Path(p).name}: {reasons[p]} (expected {r})"
        for p, r in wanted.items()
        if p in reasons and reasons[p] != r
    )
    return {
        "letters": len(dead),
        "expected": len(wanted),
        "unexpected": [f"{Path(p).name}: {reasons[p]}" for p in unexpected],
        "missing": [Path(p).name for p in missing],
        "more_than_once": [Path(p).name for p in twice],
        "wrong_reason": wrong,
        "exact": not (unexpected or missing or twice or wrong),
    }
