"""What queuing a folder again has to do: its listing against what the index recorded.

Pure functions, used by ``IndexingService.queue_folder``. Each listed file is

- ``unchanged``: a record with its path, size and modification time exists (not queued);
- ``changed``: recorded, but its size or time differ, or the record has no time (a point
  from before times were recorded): queued; a worker that finds its content indexed
  already only updates the record;
- ``new``: not recorded: queued (the same: a copy of an indexed content costs no encoding).

With ``sync``, a recorded file under the folder that is not listed is *gone*: ``moved``
when a new file of the same size has the gone image's content (:func:`match_moves`; the
caller hashes the candidates :func:`move_candidates` names), else ``removed``. Only what
the listing could have listed counts: a file of another extension, or in a sub-folder of
a non-recursive queue, is not gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from imgsearch_common.payloads import FileRecord, ImagePayload


@dataclass(frozen=True)
class ListedFile:
    """A file of the listing: its path (as the workers read it), its path under the
    queued folder, and what ``stat`` said of it."""

    path: str
    name: str
    size: int
    mtime_ns: int

    def record(self) -> FileRecord:
        """The record of this file as a folder file (what a move attaches)."""
        return FileRecord(
            stored_path=self.path,
            original_path=self.path,
            name=self.name,
            source="folder",
            size=self.size,
            mtime_ns=self.mtime_ns,
        )


@dataclass(frozen=True)
class Recorded:
    """A file record of an indexed image, with the image's id and content hash."""

    image_id: str
    sha256: str | None
    record: FileRecord
    #: Whether the image's payload predates file records (``ImagePayload.files`` unset).
    legacy: bool = False


@dataclass
class FolderPlan:
    new: list[ListedFile] = field(default_factory=list)
    changed: list[ListedFile] = field(default_factory=list)
    unchanged: list[ListedFile] = field(default_factory=list)
    #: Recorded files in the folder's scope that the listing lacks (with ``sync`` only).
    gone: list[Recorded] = field(default_factory=list)
    #: The records of changed or gone files that come from points from before file records
    #: (``Recorded.legacy``): they need a ``paths`` entry before a write can find them.
    legacy: list[Recorded] = field(default_factory=list)

    @property
    def queued(self) -> list[ListedFile]:
        return [*self.new, *self.changed]


@dataclass(frozen=True)
class Move:
    """A gone file whose content is at a new path: the image gets the new path's record."""

    gone: Recorded
    to: ListedFile


def recorded_files(points: Iterable[tuple[str, ImagePayload]]) -> dict[str, list[Recorded]]:
    """``(image id, payload)`` of the indexed images → their folder files' records by
    stored path (a path in two images, a stale state a later write repairs, has two)."""
    found: dict[str, list[Recorded]] = {}
    for image_id, payload in points:
        legacy = not payload.files
        for record in payload.file_records():
            if record.source != "folder":
                continue
            found.setdefault(record.stored_path, []).append(
                Recorded(image_id, payload.sha256, record, legacy)
            )
    return found


def in_scope(path: str, root: str, *, recursive: bool, extensions: Sequence[str]) -> bool:
    """Whether listing ``root`` (recursively or not, with ``extensions``, lower case with a
    dot) would have listed ``path``."""
    parent = os.path.dirname(path)
    inside = parent == root or (recursive and parent.startswith(root.rstrip("/") + "/"))
    return inside and path.lower().endswith(tuple(extensions))


def classify(
    listed: Sequence[ListedFile],
    recorded: Mapping[str, Sequence[Recorded]],
    root: str,
    *,
    recursive: bool,
    extensions: Sequence[str],
    sync: bool,
) -> FolderPlan:
    """Each listed file as new, changed or unchanged; with ``sync``, the recorded files in
    the scope of ``root`` that are not listed, as gone (sorted by path)."""
    plan = FolderPlan()
    for file in listed:
        records = recorded.get(file.path)
        if not records:
            plan.new.append(file)
        elif len(records) == 1 and _same(records[0].record, file):
            plan.unchanged.append(file)
        else:
            plan.changed.append(file)
            plan.legacy.extend(r for r in records if r.legacy)
    if sync:
        present = {f.path for f in listed}
        for path in sorted(recorded):
            if path in present:
                continue
            if in_scope(path, root, recursive=recursive, extensions=extensions):
                plan.gone.extend(recorded[path])
                plan.legacy.extend(r for r in recorded[path] if r.legacy)
    return plan


def _same(record: FileRecord, file: ListedFile) -> bool:
    return record.mtime_ns is not None and (record.size, record.mtime_ns) == (
        file.size,
        file.mtime_ns,
    )


def move_candidates(plan: FolderPlan) -> list[ListedFile]:
    """The new files that may be a gone file moved: those of a gone file's size (whose
    image's content hash is known). The caller hashes them for :func:`match_moves`."""
    sizes = {g.record.size for g in plan.gone if g.sha256}
    return [f for f in plan.new if f.size in sizes]


def match_moves(plan: FolderPlan, hashes: Mapping[str, str]) -> list[Move]:
    """Gone files paired with a new file of the same content (``hashes``: path → SHA-256
    of the candidates); each new file is paired once, in listing order."""
    by_content: dict[str, list[ListedFile]] = {}
    for file in plan.new:
        sha = hashes.get(file.path)
        if sha is not None:
            by_content.setdefault(sha, []).append(file)
    moves: list[Move] = []
    for gone in plan.gone:
        same = by_content.get(gone.sha256) if gone.sha256 else None
        if same:
            moves.append(Move(gone, same.pop(0)))
    return moves
