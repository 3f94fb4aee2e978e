"""What the user reads: small pure functions over the API's schemas, tested exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imgsearch_common.schemas import (
    BatchQueued,
    BatchStatus,
    CollectionSummary,
    SearchResponse,
    SearchResult,
    SyncCounts,
)

BAR_WIDTH = 24


def printable(text: str) -> str:
    """Replace control characters so a server string cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_box(box: Sequence[int]) -> str:
    return ",".join(str(v) for v in box)


def best_box(result: SearchResult) -> str:
    """The highest-scoring matched box as ``x0,y0,x1,y1``, or ``-`` when there is none."""
    if not result.matched_boxes:
        return "-"
    best = max(result.matched_boxes, key=lambda b: b.score)
    return format_box(best.box)


def _render_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def format_table(results: Sequence[SearchResult], with_collection: bool = False) -> str:
    """Search results as a plain-text table (rank, score, match, regions, file, best box;
    ``with_collection``: the collection of each, after the file)."""
    if not results:
        return "no results"
    headers: tuple[str, ...] = ("#", "score", "match", "regions", "filename", "best box")
    rows: list[tuple[str, ...]] = [
        (
            str(rank),
            f"{r.score:.4f}",
            r.match_type,
            str(r.matched_regions),
            printable(r.metadata.filename) if r.metadata else r.id,
            best_box(r),
        )
        for rank, r in enumerate(results, start=1)
    ]
    if with_collection:
        headers = (*headers[:5], "collection", headers[5])
        rows = [
            (*row[:5], printable(r.collection), row[5])
            for row, r in zip(rows, results, strict=True)
        ]
    return _render_columns(headers, rows, right={0, 1, 3})


def format_model(model: Mapping[str, Any] | None) -> str:
    """A collection's model record as ``ViT-B-32/laion2b_s34b_b79k``, ``-`` when none."""
    if not model:
        return "-"
    name = printable(str(model.get("model", "?")))
    pretrained = model.get("pretrained")
    return f"{name}/{printable(str(pretrained))}" if pretrained else name


def format_collections(collections: Sequence[CollectionSummary]) -> str:
    """``GET /api/collections`` as a table: name, images, regions, model."""
    if not collections:
        return "no collections"
    rows = [
        (printable(c.name), str(c.images), str(c.windows), format_model(c.model))
        for c in collections
    ]
    return _render_columns(("collection", "images", "regions", "model"), rows, right={1, 2})


def format_search_footer(response: SearchResponse) -> str:
    """``"3 results in 41.2 ms (decode 2.0, encode 30.1)"``."""
    n = len(response.results)
    text = f"{n} result{'' if n == 1 else 's'} in {response.processing_time_ms:.1f} ms"
    if response.timings_ms:
        split = ", ".join(f"{printable(k)} {v:.1f}" for k, v in response.timings_ms.items())
        text += f" ({split})"
    return text


def format_progress(status: BatchStatus, elapsed: float, width: int = BAR_WIDTH) -> str:
    """One progress line: bar, processed/total, percent, failures, rate and ETA.

    "Processed" counts done and failed files alike: both are finished work. The rate is
    measured over ``elapsed`` seconds of watching, so it is the rate this client saw.
    """
    processed = status.done + status.failed
    total = status.total
    fraction = 1.0 if total <= 0 else min(processed / total, 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    rate = processed / elapsed if elapsed > 0 else 0.0
    if status.finished:
        eta = "done"
    elif rate > 0:
        eta = f"ETA {format_duration(max(total - processed, 0) / rate)}"
    else:
        eta = "ETA --:--"
    failed = f" ({status.failed} failed)" if status.failed else ""
    return f"[{bar}] {processed}/{total} {fraction * 100:5.1f}%{failed}  {rate:.1f} img/s  {eta}"


def format_counts(counts: SyncCounts) -> str:
    """What queuing a folder found: ``"2 new, 1 changed, 40 unchanged, 1 moved, 3 removed"``."""
    return (
        f"{counts.new} new, {counts.changed} changed, {counts.unchanged} unchanged, "
        f"{counts.moved} moved, {counts.removed} removed"
    )


def format_queued(queued: BatchQueued) -> str:
    """``"batch ID: 3 files queued in collection C (2 new, 1 changed, ...)"``."""
    return (
        f"batch {queued.batch_id}: {queued.queued} files queued in collection "
        f"{printable(queued.collection)} ({format_counts(queued)})"
    )


def format_summary(status: BatchStatus, elapsed: float) -> str:
    """What a finished (or abandoned) batch did, then each failed file with its reason."""
    processed = status.done + status.failed
    rate = processed / elapsed if elapsed > 0 else 0.0
    lines = [
        f"batch {status.batch_id} ({printable(status.collection)}): "
        f"{status.done} indexed, {status.failed} failed, {status.pending} pending "
        f"of {status.total} in {format_duration(elapsed)} ({rate:.1f} img/s)"
    ]
    if status.errors:
        lines.append("failed files:")
        lines.extend(
            f"  {printable(e.path)}: {printable(e.reason)}: {printable(e.message)}"
            for e in status.errors
        )
    unlisted = status.failed - len(status.errors)
    if unlisted > 0:
        lines.append(f"  ... and {unlisted} more not listed by the server")
    return "\n".join(lines)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) else "?"


def format_status(data: Mapping[str, Any]) -> str:
    """The ``/api/status`` answer as text. Missing parts show as ``?``, not as an error."""
    indexed = _mapping(data.get("indexed_images"))
    lines = [
        f"status: {printable(str(data.get('status', '?')))}",
        f"indexed: {_count(indexed.get('full_images'))} images, "
        f"{_count(indexed.get('partial_images'))} regions",
    ]
    collections = data.get("collections") or {}
    if isinstance(collections, Mapping) and collections:
        rows = [
            (
                printable(str(name)),
                _count(_mapping(counts).get("full_images")),
                _count(_mapping(counts).get("partial_images")),
            )
            for name, counts in sorted(collections.items())
        ]
        table = _render_columns(("collection", "images", "regions"), rows, right={1, 2})
        lines.extend("  " + row for row in table.splitlines())
    queue = data.get("queue")
    if isinstance(queue, Mapping):
        lines.append(
            f"queue: {_count(queue.get('pending'))} pending, "
            f"{_count(queue.get('dead_letters'))} dead letters"
        )
    return "\n".join(lines)
