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


#: Longest path the results table shows: longer ones keep their end (the file name whole).
PATH_WIDTH = 48

#: The API's ``kind`` of a result, in words.
KIND_WORDS = {
    "same": "same image",
    "contains_query": "contains your query",
    "in_query": "appears in your query",
    "similar": "similar",
}


def short_path(path: str, width: int = PATH_WIDTH) -> str:
    """``path`` in at most ``width`` characters by dropping leading folders (``.../b/c.jpg``);
    the file name is always shown whole, however long."""
    if len(path) <= width:
        return path
    parts = path.split("/")
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(tail) + len(".../") > width:
            break
        tail = f"{part}/{tail}"
    return f".../{tail}"


def result_path(result: SearchResult, width: int = PATH_WIDTH) -> str:
    """Where a result's image is: its ``original_path`` (shortened), ``(+N more)`` when
    the same content is at other paths too; its id when the server sent no metadata."""
    meta = result.metadata
    if meta is None:
        return result.id
    paths = list(dict.fromkeys([p for p in (meta.original_path, *meta.paths) if p]))
    if not paths:
        return printable(meta.filename) or result.id
    text = short_path(printable(paths[0]), width)
    return text + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else "")


def match_words(result: SearchResult, kind: object = None) -> str:
    """The API's ``kind`` in words when it sent one (a kind this client does not know is
    shown as it came); without one, the ``match_type`` as the server gave it."""
    if isinstance(kind, str) and kind:
        return KIND_WORDS.get(kind, printable(kind))
    return result.match_type


def format_table(
    results: Sequence[SearchResult],
    with_collection: bool = False,
    kinds: Sequence[object] | None = None,
) -> str:
    """Search results as a plain-text table (rank, score, match, regions, path, best box;
    ``with_collection``: the collection of each, after the path). ``kinds``: each result's
    ``kind`` as the server sent it (None where it sent none), the match column's words."""
    if not results:
        return "no results"
    kinds = list(kinds) if kinds is not None else []
    kinds += [None] * (len(results) - len(kinds))
    headers: tuple[str, ...] = ("#", "score", "match", "regions", "path", "best box")
    rows: list[tuple[str, ...]] = [
        (
            str(rank),
            f"{r.score:.4f}",
            match_words(r, kind),
            str(r.matched_regions),
            result_path(r),
            best_box(r),
        )
        for rank, (r, kind) in enumerate(zip(results, kinds, strict=False), start=1)
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


def format_progress(
    status: BatchStatus, elapsed: float, width: int = BAR_WIDTH, seen_before: int = 0
) -> str:
    """One progress line: bar, processed/total, percent, failures, rate and ETA.

    "Processed" counts done and failed files alike: both are finished work. The rate is
    measured over ``elapsed`` seconds of watching, so it is the rate this client saw; a
    batch joined half-way counts from the ``seen_before`` files processed when it was.
    """
    processed = status.done + status.failed
    total = status.total
    fraction = 1.0 if total <= 0 else min(processed / total, 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + "-" * (width - filled)
    rate = _rate(processed - seen_before, elapsed)
    if status.finished:
        eta = "done"
    elif rate > 0:
        eta = f"ETA {format_duration(max(total - processed, 0) / rate)}"
    else:
        eta = "ETA --:--"
    failed = f" ({status.failed} failed)" if status.failed else ""
    return f"[{bar}] {processed}/{total} {fraction * 100:5.1f}%{failed}  {rate:.1f} img/s  {eta}"


def _rate(processed: int, elapsed: float) -> float:
    return max(processed, 0) / elapsed if elapsed > 0 else 0.0


def format_interrupted(batch_id: str, status: BatchStatus | None, fate: str | None = None) -> str:
    """What Ctrl-C while following a batch leaves behind, in one message.

    ``fate``: what becomes of the batch, when the server stops too (``make run``); None:
    the server is not ours to stop, and the batch keeps running there.
    """
    where = ""
    if status is not None:
        where = f" ({status.done + status.failed} of {status.total} files processed)"
    fate = fate or "keeps running on the server"
    return (
        f"Stopped waiting: batch {batch_id}{where} {fate}. "
        f"Check it with: imgsearch batch {batch_id}"
    )


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


def format_summary(status: BatchStatus, elapsed: float | None, seen_before: int = 0) -> str:
    """What a batch did, then each failed file with its reason. ``elapsed``: how long this
    client watched it (with the rate since it had ``seen_before`` files processed); None:
    it did not (a look at a batch, not a follow)."""
    line = (
        f"batch {status.batch_id} ({printable(status.collection)}): "
        f"{status.done} indexed, {status.failed} failed, {status.pending} pending "
        f"of {status.total}"
    )
    if elapsed is not None:
        rate = _rate(status.done + status.failed - seen_before, elapsed)
        line += f" in {format_duration(elapsed)} ({rate:.1f} img/s)"
    elif not status.finished:
        line += " (running)"
    lines = [line]
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
