"""Queuing images for indexing: a folder on the server, uploaded files, or a URL.

The rules live here, behind thin routes (``routes/indexing.py``):

- a folder must be absolute (``~`` and ``~/...`` are the server user's home; ``~name`` is
  refused, so no answer tells which users exist), exist, and lie inside ``INDEX_ROOTS``
  (links resolved on both sides); with ``INDEX_ROOTS`` empty no folder may be queued. It is
  queued as one job per file with one of the requested extensions (matched without case),
  which must be image formats the workers decode (``DEFAULT_EXTENSIONS``; else 422), so a
  batch never lists other files. A folder, or a sub-folder, the server may not read stops
  the request (403): nothing is skipped silently;
- queuing a folder again is incremental (``folder_sync``): a file whose path, size and
  modification time match what the index recorded is not queued (``unchanged``); with
  ``sync`` the files under the folder that are gone are taken out of the index
  (``removed``), and one that moved within it (a new file of a gone file's size and
  content) only gets its new path (``moved``, no job). Points from before file records
  (no ``files``) get theirs the first time their folder is queued again;
- uploads and fetched URLs are checked (decoded) before anything is queued, so a bad file
  gets its 4xx at once; they are stored content-addressed under ``UPLOAD_DIR``, where the
  workers read them and from where the image is served back. Each store writes a file of
  its own and renames it onto the content-addressed name: identical uploads at once give
  one whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from imgsearch_common.errors import BadRequest, EmptyInput, Forbidden, ImgSearchError, NotFound
from imgsearch_common.ids import content_hash, validate_collection
from imgsearch_common.imaging import DEFAULT_EXTENSIONS, decode_image, dotted_extensions
from imgsearch_common.jobs import JobQueue
from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import BatchQueued, FolderIndexRequest, SyncCounts, UrlIndexRequest
from imgsearch_common.vectorstore import VectorStore, iter_points
from imgsearch_common.vectorstore.writes import attach_file, detach_file

from .folder_sync import FolderPlan, ListedFile, Move, classify, match_moves, move_candidates
from .folder_sync import recorded_files as recorded_files_of
from .url_fetch import SafeFetcher

log = logging.getLogger(__name__)

#: Most files in one upload request.
MAX_UPLOAD_FILES = 100
#: Job items: ``(path the workers read, source, name the user knows it by)``.
JobItem = tuple[str, str, str]

NO_ROOTS = (
    "no folder may be indexed: the server has no INDEX_ROOTS. Set INDEX_ROOTS to the folders "
    "that may be queued (':'-separated), or start it with `make run IMAGES_DIR=/path/to/photos`"
    "; uploads and URLs work without"
)
OUTSIDE_ROOTS = (
    "this folder is outside the folders the server may index (INDEX_ROOTS): add it, or a "
    "folder above it, to INDEX_ROOTS (with `make run`: IMAGES_DIR=...)"
)


class ExtensionRefused(ImgSearchError):
    """An extension outside the image formats the workers decode: 422, as a request body
    that does not validate."""

    status_code = 422
    code = "validation_error"
    permanent = True


def folder_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    """The requested extensions, lower case with a dot; the default list when none given.
    Only image formats the workers decode (``DEFAULT_EXTENSIONS``) may be asked for."""
    if not extensions:
        return DEFAULT_EXTENSIONS
    out = tuple(dict.fromkeys(e.lower() for e in dotted_extensions(extensions)))
    if not out:
        raise BadRequest("no usable file extension given")
    refused = [e for e in out if e not in DEFAULT_EXTENSIONS]
    if refused:
        shown = ", ".join(repr(e[:16]) for e in refused[:5])
        raise ExtensionRefused(
            f"only the image formats the server decodes may be queued: "
            f"{', '.join(DEFAULT_EXTENSIONS)} (not {shown})"
        )
    return out


def list_folder(root: Path, extensions: tuple[str, ...], recursive: bool) -> list[ListedFile]:
    """Image files under ``root``, sorted, named by their path under it, with their size
    and modification time (a file that cannot be stat'ed, a dangling link, has -1 for
    both: it is queued, and its job says what is wrong). A folder in the walk the server
    may not read: :class:`Forbidden` naming it."""
    found: list[str] = []

    def stop(exc: OSError) -> None:
        raise exc  # os.walk would skip the folder silently

    try:
        if recursive:
            for folder, dirs, files in os.walk(root, onerror=stop):
                dirs.sort()
                found.extend(
                    os.path.join(folder, f) for f in files if f.lower().endswith(extensions)
                )
        else:
            with os.scandir(root) as entries:
                found = [
                    e.path for e in entries if e.name.lower().endswith(extensions) and e.is_file()
                ]
    except PermissionError as exc:
        where = os.path.relpath(exc.filename, root) if isinstance(exc.filename, str) else "."
        what = "that folder" if where == "." else f"{where!r} in that folder"
        raise Forbidden(
            f"the server may not read {what} (permission denied): let the server's user read "
            "it, or queue only the folders it may read"
        ) from None
    except OSError as exc:
        raise BadRequest(f"the folder could not be listed ({exc.strerror or 'error'})") from None
    found.sort()
    return [_listed(p, os.path.relpath(p, root)) for p in found]


def _listed(path: str, name: str) -> ListedFile:
    try:
        st = os.stat(path)
    except OSError:
        return ListedFile(path, name, -1, -1)
    return ListedFile(path, name, st.st_size, st.st_mtime_ns)


def hash_file(path: str) -> tuple[str, int, int] | None:
    """``(SHA-256, size, st_mtime_ns)`` of a regular file (size and time from the open
    file, before the read); None when it cannot be read or is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.set_blocking(fd, True)
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as file:
            for chunk in iter(functools.partial(file.read, 1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest(), st.st_size, st.st_mtime_ns
    except OSError:
        return None
    finally:
        os.close(fd)


def _requested_path(path: str) -> str:
    """The path a request names, ``~`` expanded: absolute, or BadRequest."""
    if "\0" in path:
        raise BadRequest("the folder path contains a NUL character")
    if path == "~" or path.startswith("~/"):
        path = os.path.expanduser(path)  # the server user's home (unchanged if it has none)
    elif path.startswith("~"):
        raise BadRequest(
            "give the folder as an absolute path on the server (~user is not expanded)"
        )
    if not os.path.isabs(path):
        raise BadRequest("give the folder as an absolute path on the server")
    return path


def allowed_folder(path: str, index_roots: Sequence[Path]) -> Path:
    """The folder a request names, checked: absolute, inside ``index_roots`` (links
    resolved on both sides; none: no folder is allowed), an existing directory."""
    requested = _requested_path(path)
    if not index_roots:
        raise Forbidden(NO_ROOTS)
    root = Path(os.path.realpath(requested))
    allowed = [Path(os.path.realpath(r)) for r in index_roots]
    if not any(root == r or root.is_relative_to(r) for r in allowed):
        raise Forbidden(OUTSIDE_ROOTS)
    try:
        is_dir = stat.S_ISDIR(os.stat(root).st_mode)
    except PermissionError:
        raise Forbidden("the server may not read that folder (permission denied)") from None
    except OSError:
        is_dir = False
    if not is_dir:
        raise NotFound("no such folder on the server")
    return root


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask), read without setting
    the process-wide umask (which other threads would see change)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


def store_upload(upload_dir: Path, data: bytes, filename: str, max_pixels: int) -> str:
    """Check ``data`` is an image we accept, then store it content-addressed; its path."""
    decode_image(data, max_pixels=max_pixels)  # raises a 4xx error for bad input
    sha = content_hash(data)
    ext = os.path.splitext(filename)[1].lower()
    if ext not in DEFAULT_EXTENSIONS:
        ext = ".img"
    target = upload_dir / sha[:2] / f"{sha}{ext}"
    with contextlib.suppress(OSError):
        if os.stat(target).st_size == len(data):
            return str(target)  # stored before (a short one, of an older race, is rewritten)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A file of its own for each store (identical uploads may arrive at once), complete on
    # disk before it is renamed onto the content-addressed name: whichever rename comes
    # last replaces identical bytes, and no reader ever sees a partial file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), _new_file_mode())  # mkstemp's is 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return str(target)


@dataclass(frozen=True)
class IndexingService:
    queue: JobQueue
    fetcher: SafeFetcher
    #: Decoding checks and file writes run here, off the event loop.
    pool: Executor
    upload_dir: Path
    index_roots: tuple[Path, ...]
    max_pixels: int
    #: The index, compared with the folder at queue time (and written by ``sync``).
    store: VectorStore

    async def queue_folder(self, request: FolderIndexRequest) -> BatchQueued:
        collection = validate_collection(request.collection)
        extensions = folder_extensions(request.extensions)

        def listed() -> tuple[Path, list[ListedFile]]:
            root = allowed_folder(request.path, self.index_roots)
            return root, list_folder(root, extensions, request.recursive)

        root, files = await asyncio.to_thread(listed)
        if not files and not request.sync:
            raise BadRequest(f"no files with extensions {', '.join(extensions)} in that folder")
        plan = classify(
            files,
            recorded_files_of(await self._indexed(collection)),
            str(root),
            recursive=request.recursive,
            extensions=extensions,
            sync=request.sync,
        )
        await self._give_records(collection, plan)
        moves = await self._move(collection, plan)
        moved_to = {m.to.path for m in moves}
        moved_from = {m.gone.record.stored_path for m in moves}
        removed = 0
        for path in dict.fromkeys(g.record.stored_path for g in plan.gone):
            if path not in moved_from:
                await detach_file(self.store, collection, path)
                removed += 1
        new = [f for f in plan.new if f.path not in moved_to]
        counts = SyncCounts(
            new=len(new),
            changed=len(plan.changed),
            unchanged=len(plan.unchanged),
            moved=len(moves),
            removed=removed,
        )
        items = [(f.path, "folder", f.name) for f in (*new, *plan.changed)]
        label = f"{request.path} (sync)" if request.sync else request.path
        batch_id, count = await self.queue.create_batch(
            collection, items, counts=counts, label=label
        )
        if moves or removed:
            log.info("%s: %d moved, %d removed from %s", collection, len(moves), removed, root)
        return BatchQueued(
            batch_id=batch_id, queued=count, collection=collection, **counts.model_dump()
        )

    async def _indexed(self, collection: str) -> list[tuple[str, ImagePayload]]:
        """Every image of ``collection`` with its payload (one scroll of the index)."""
        out = []
        async for hit in iter_points(self.store, collection, "full"):
            payload = ImagePayload.read(hit.payload)
            if payload is not None:
                out.append((hit.id, payload))
        return out

    async def _give_records(self, collection: str, plan: FolderPlan) -> None:
        """Points from before file records, among those ``plan`` touches, get theirs (a
        ``paths`` entry): then a changed file's write, or a removal, finds them."""
        for recorded in plan.legacy:
            await attach_file(self.store, collection, recorded.image_id, recorded.record)

    async def _move(self, collection: str, plan: FolderPlan) -> list[Move]:
        """Gone files found again at new paths (same content): each image gets the new
        path's record, and loses the gone one. No job, no encoding."""
        candidates = move_candidates(plan)
        if not candidates:
            return []
        read = await asyncio.to_thread(lambda: {f.path: hash_file(f.path) for f in candidates})
        hashes = {path: found[0] for path, found in read.items() if found is not None}
        moves = []
        for move in match_moves(plan, hashes):
            found = read[move.to.path]
            assert found is not None
            _, size, mtime_ns = found
            seen = ListedFile(move.to.path, move.to.name, size, mtime_ns)
            if await attach_file(self.store, collection, move.gone.image_id, seen.record()):
                await detach_file(self.store, collection, move.gone.record.stored_path)
                moves.append(move)
        return moves

    async def queue_uploads(
        self, collection: str, files: Sequence[tuple[str, bytes]]
    ) -> BatchQueued:
        """``files``: ``(file name, content)`` of each uploaded file."""
        validate_collection(collection)
        if not files:
            raise EmptyInput("no file uploaded")
        if len(files) > MAX_UPLOAD_FILES:
            raise BadRequest(f"at most {MAX_UPLOAD_FILES} files per request")
        items: list[JobItem] = []
        for name, data in files:
            if not data:
                raise EmptyInput(f"{name}: the file is empty")
            try:
                path = await self._store(data, name)
            except ImgSearchError as exc:
                exc.message = f"{name}: {exc.message}"
                raise
            items.append((path, "upload", name))
        label = files[0][0] if len(files) == 1 else f"{len(files)} uploaded files"
        batch_id, count = await self.queue.create_batch(collection, items, label=label)
        return BatchQueued(batch_id=batch_id, queued=count, collection=collection)

    async def queue_url(self, request: UrlIndexRequest) -> BatchQueued:
        collection = validate_collection(request.collection)
        data = await self.fetcher.fetch(request.url)
        path = await self._store(data, request.url.split("?")[0])
        batch_id, count = await self.queue.create_batch(
            collection, [(path, "url", request.url)], label=request.url
        )
        return BatchQueued(batch_id=batch_id, queued=count, collection=collection)

    async def _store(self, data: bytes, filename: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, store_upload, self.upload_dir, data, filename, self.max_pixels
        )
