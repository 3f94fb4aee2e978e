"""Duplicates, in tiers: ``GET /api/duplicates`` (``DuplicatesService``).

- **exact** — the same content. Image ids are content hashes, so two files with the same
  bytes are one image holding several files (``files``): each such image is a group.
  Different files whose decoded pixels are identical (a re-saved PNG, a JPEG whose
  metadata changed) are found by the pixel digest of their signatures
  (``imgsearch_common.signatures``) and, where a digest was taken from a DCT-scaled decode
  or two signatures are only nearly equal, confirmed pixel by pixel from the files.
- **near** — re-encoded, resized, lightly edited copies. Candidates come from the model
  (each image's nearest full views) and from the pixels (a band of the thumbnails' DCT
  hashes in common); each is verified on the signatures' thumbnails
  (``duplicate_checks.near_checks``): same aspect ratio, correlated grey levels *and*
  gradients. A group is a connected set of verified pairs.
- **contained** — one image is a crop of another. Each image's full vector is searched
  among the window points; the best windows' parents are looked at on the signatures
  first (``coarse_crop``), then in their files: the child located in the parent near the
  window's size, the box refined and the pixels there compared (``locate_crop``). A group
  is a parent and its verified crops, each with its box in the parent's pixels.

The model never decides alone: with random weights (or real ones) unrelated pictures
can score high, and copies can score lower than merely similar pictures.

Cost: one scan of the collection's full points (with vectors for near and contained),
one batched search per ``SEARCH_CHUNK`` images per tier, and for ``contained`` file
reads. Bounded by the admission (one scan at a time, ``DUPLICATES_QUEUE`` waiting, 503
with ``Retry-After`` beyond) and ``limit`` (a tier stops looking at ``limit`` groups); the
CPU work runs on a thread of its own, so searches keep the API's pool. Points written
before signatures existed are read from their files (``IndexedFiles``: only files under
``INDEX_ROOTS`` and the upload folder). Measured in benchmarks/README.md ("Duplicates").
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
from PIL import Image

from imgsearch_common.errors import ImgSearchError, UpstreamUnavailable
from imgsearch_common.imaging import OpenedImage, open_image
from imgsearch_common.payloads import ImagePayload, WindowPayload
from imgsearch_common.schemas import (
    DUPLICATE_TIERS,
    DuplicateEvidence,
    DuplicateGroup,
    DuplicateItem,
    DuplicatePair,
    DuplicatesResponse,
    DuplicateTier,
)
from imgsearch_common.signatures import PixelSignature, pixel_digest, pixel_signature
from imgsearch_common.vectorstore.base import Hit, VectorStore, iter_points
from imgsearch_common.windows import Box

from .admission import Gate
from .duplicate_checks import (
    COARSE_MIN_CORRELATION,
    FINE_LONG_SIDE,
    PIXELS_MIN_CORRELATION,
    CropMatch,
    ThumbTable,
    coarse_crop,
    flat_candidates,
    grey_copy,
    hash_candidates,
    image_hashes,
    locate_crop,
    near_checks,
    short_side_for,
)
from .files import IndexedFiles
from .library import require_collections
from .search.rescoring import RESCORE_MAX_FILE_BYTES
from .search.timings import Timings

if TYPE_CHECKING:
    from .settings import ApiSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Full views each image's vector brings as near candidates.
NEAR_NEIGHBOURS = 8
#: Window points each image's vector brings as contained candidates, and the parents
#: (one per set of copies, best window first) of those that are looked at.
CONTAINED_WINDOW_HITS = 32
CONTAINED_PARENTS = 4
#: Images per batched vector search, per task on the duplicates thread.
SEARCH_CHUNK = 64
WORK_CHUNK = 32
#: Decoded copies of files kept while one request runs (FINE_LONG_SIDE grey levels as
#: bytes: at most ~200 KB each, 75 MB in all).
DECODE_CACHE = 384
#: Pixel-by-pixel comparison only of images up to this many pixels.
PIXELS_MAX = 40_000_000
#: Long side (px) at which a signature is computed from a file (a point without one).
SIGNATURE_DECODE_SIDE = 128

Source = Literal["payload", "signature", "file"]


@dataclass
class Entry:
    """One image of the scanned collection."""

    id: str
    payload: ImagePayload
    #: ``(width, height)``, None when the point does not record a real one.
    size: tuple[int, int] | None
    signature: PixelSignature | None = None
    source: Source = "signature"


@dataclass(frozen=True)
class Edge:
    i: int
    j: int
    score: float
    evidence: DuplicateEvidence


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Scan:
    """What one request learnt of the collection, tier after tier."""

    collection: str
    entries: list[Entry]
    #: ``(n, dim)`` float32, rows of zeros where a point had no vector; None: not loaded.
    vectors: np.ndarray | None
    index: dict[str, int] = field(default_factory=dict)
    exact: list[Edge] = field(default_factory=list)
    near: list[Edge] = field(default_factory=list)
    #: Images joined by exact or near pairs (a crop is never looked for among them).
    same: UnionFind | None = None
    #: The signatures as a table (rows: entry indices ``rows``) and the pairs their
    #: hashes propose (row indices).
    table: ThumbTable | None = None
    rows: list[int] = field(default_factory=list)
    hash_pairs: set[tuple[int, int]] = field(default_factory=set)

    def thumbs(self) -> tuple[ThumbTable, list[int], set[tuple[int, int]]]:
        if self.table is None:
            self.rows = [
                k
                for k, e in enumerate(self.entries)
                if e.signature is not None and e.size is not None
            ]
            signatures = [s for k in self.rows if (s := self.entries[k].signature) is not None]
            sizes = [z for k in self.rows if (z := self.entries[k].size) is not None]
            self.table = ThumbTable.of(signatures, sizes)
            self.hash_pairs = hash_candidates(image_hashes(signatures), self.table.flat)
        return self.table, self.rows, self.hash_pairs


def duplicates_gate(settings: ApiSettings) -> Gate:
    """One scan at a time, ``DUPLICATES_QUEUE`` more waiting at most
    ``SEARCH_QUEUE_WAIT_S`` each; beyond, 503 + Retry-After."""
    return Gate(
        "duplicates",
        capacity=1,
        waiting=settings.duplicates_queue,
        wait_s=settings.search_queue_wait_s,
        refuse=lambda message, retry_after: UpstreamUnavailable(message, retry_after=retry_after),
    )


class DuplicatesService:
    def __init__(
        self,
        store: VectorStore,
        files: IndexedFiles,
        executor: Executor,
        *,
        max_pixels: int,
        admission: Gate | None = None,
    ) -> None:
        """``executor``: where the CPU work runs (the API gives it a thread of its own);
        ``admission``: how many scans run and wait at once (None: no limit)."""
        self.store = store
        self.files = files
        self.executor = executor
        self.max_pixels = max_pixels
        self.admission = admission

    async def find(
        self, collection: str, tiers: Sequence[DuplicateTier], limit: int
    ) -> DuplicatesResponse:
        await require_collections(self.store, [collection])
        admitted: AbstractAsyncContextManager[None] = (
            self.admission.slot() if self.admission is not None else nullcontext()
        )
        async with admitted:
            return await self._find(collection, tiers, limit)

    async def _find(
        self, collection: str, tiers: Sequence[DuplicateTier], limit: int
    ) -> DuplicatesResponse:
        wanted = [t for t in DUPLICATE_TIERS if t in tiers]
        timings = Timings()
        with timings.stage("load"):
            scan = await self._load(collection, with_vectors=wanted != ["exact"])
        with timings.stage("signatures"):
            await self._fill_signatures(scan)
        groups: list[DuplicateGroup] = []
        truncated = False
        with timings.stage("exact"):
            await self._exact(scan)
        if "exact" in wanted:
            found = _exact_groups(scan)
            truncated |= len(found) > limit
            groups += found[:limit]
        if "near" in wanted or "contained" in wanted:
            with timings.stage("near"):
                await self._near(scan)
        if "near" in wanted:
            found = _near_groups(scan)
            truncated |= len(found) > limit
            groups += found[:limit]
        if "contained" in wanted:
            with timings.stage("contained"):
                found, cut = await self._contained(scan, limit)
            truncated |= cut
            groups += found[:limit]
        return DuplicatesResponse(
            collection=collection,
            tiers=wanted,
            groups=groups,
            images=len(scan.entries),
            truncated=truncated,
            processing_time_ms=timings.total_ms(),
            timings_ms=timings.ms,
        )

    # --- loading ------------------------------------------------------------------------

    async def _load(self, collection: str, *, with_vectors: bool) -> Scan:
        entries: list[Entry] = []
        rows: list[np.ndarray | None] = []
        async for hit in iter_points(
            self.store, collection, "full", with_vectors=with_vectors, page=512
        ):
            payload = ImagePayload.read(hit.payload)
            if payload is None:
                continue
            signature = PixelSignature.decode(payload.signature)
            entries.append(Entry(hit.id, payload, payload.size, signature))
            if with_vectors:
                rows.append(None if hit.vector is None else np.asarray(hit.vector, np.float32))
        vectors = None
        if with_vectors:
            dim = next((len(r) for r in rows if r is not None), 0)
            vectors = np.zeros((len(rows), dim), dtype=np.float32)
            for k, row in enumerate(rows):
                if row is not None and len(row) == dim:
                    vectors[k] = row
        scan = Scan(collection, entries, vectors)
        scan.index = {e.id: k for k, e in enumerate(entries)}
        return scan

    async def _fill_signatures(self, scan: Scan) -> None:
        """A signature from its file for each image whose point has none (written before
        signatures were), where the file may be read."""
        missing = [e for e in scan.entries if e.signature is None and e.size is not None]
        for chunk in _chunks(missing, WORK_CHUNK):
            signatures = await self._run(partial(_each, self._signature_from_file, chunk))
            for entry, signature in zip(chunk, signatures, strict=True):
                if signature is not None:
                    entry.signature, entry.source = signature, "file"

    # --- exact ----------------------------------------------------------------------------

    async def _exact(self, scan: Scan) -> None:
        """Pairs of images whose decoded pixels are identical.

        Equal full-size digests say so at once. An image whose digest was taken from
        reduced pixels (a JPEG's DCT-scaled decode, the shrunk copy of a large picture),
        and that shares it with another, or whose signature is nearly that of another
        image of its size (a JPEG and its lossless PNG), is decoded at full size once and
        its full digest compared."""
        entries = scan.entries
        by_digest: dict[bytes, list[int]] = defaultdict(list)
        for k, e in enumerate(entries):
            if e.signature is not None and e.size is not None:
                by_digest[e.signature.digest].append(k)
        involved: set[int] = set()
        for members in by_digest.values():
            if len(members) > 1:
                involved.update(members)
        table, rows, hash_pairs = await self._run(scan.thumbs)
        for check in await self._run(partial(near_checks, table, sorted(hash_pairs))):
            a, b = rows[check.i], rows[check.j]
            if (
                check.correlation is not None
                and check.correlation >= PIXELS_MIN_CORRELATION
                and check.detail is not None
                and check.detail >= PIXELS_MIN_CORRELATION
                and entries[a].size == entries[b].size
            ):
                involved.update((a, b))
        full: dict[int, bytes] = {}
        to_read = []
        for k in sorted(involved):
            signature = entries[k].signature
            if signature is not None and signature.full:
                full[k] = signature.digest
            else:
                to_read.append(k)
        for chunk in _chunks(to_read, WORK_CHUNK):
            digests = await self._run(
                partial(_each, self._full_digest, [entries[k] for k in chunk])
            )
            full.update((k, d) for k, d in zip(chunk, digests, strict=True) if d is not None)
        was_read = set(to_read)
        by_pixels: dict[tuple[bytes, tuple[int, int] | None], list[int]] = defaultdict(list)
        for k, digest in full.items():
            by_pixels[(digest, entries[k].size)].append(k)
        confirmed: list[Edge] = []
        for members in by_pixels.values():
            for other in members[1:]:
                read = other in was_read or members[0] in was_read
                confirmed.append(_pixels_edge(members[0], other, "file" if read else "signature"))
        scan.exact = confirmed

    # --- near -----------------------------------------------------------------------------

    async def _near(self, scan: Scan) -> None:
        entries = scan.entries
        table, rows, hash_pairs = await self._run(scan.thumbs)
        row_of = {entry_index: r for r, entry_index in enumerate(rows)}
        candidates = hash_pairs | flat_candidates(table)
        clip: dict[tuple[int, int], float] = {}
        for (a, b), score in (await self._neighbours(scan, "full", NEAR_NEIGHBOURS)).items():
            if a in row_of and b in row_of:
                pair = (min(row_of[a], row_of[b]), max(row_of[a], row_of[b]))
                clip[pair] = score
                candidates.add(pair)
        exact = {(min(e.i, e.j), max(e.i, e.j)) for e in scan.exact}
        checks = await self._run(lambda: near_checks(table, sorted(candidates)))
        near: list[Edge] = []
        for check in checks:
            a, b = rows[check.i], rows[check.j]
            if not check.passed or (min(a, b), max(a, b)) in exact:
                continue
            sources = {entries[a].source, entries[b].source}
            evidence = DuplicateEvidence(
                check="thumbnail",
                clip_score=_rounded(clip.get((check.i, check.j))),
                correlation=_rounded(check.correlation),
                detail=_rounded(check.detail),
                source="file" if "file" in sources else "signature",
            )
            near.append(Edge(a, b, round(check.score, 4), evidence))
        scan.near = near
        same = UnionFind(len(entries))
        for edge in (*scan.exact, *near):
            same.union(edge.i, edge.j)
        scan.same = same

    async def _neighbours(
        self, scan: Scan, kind: Literal["full"], k: int
    ) -> dict[tuple[int, int], float]:
        """``(i, j) -> cosine`` of each image's ``k`` nearest full views (entry indices)."""
        out: dict[tuple[int, int], float] = {}
        if scan.vectors is None:
            return out
        for chunk in _chunks(list(range(len(scan.entries))), SEARCH_CHUNK):
            rows = [i for i in chunk if scan.vectors[i].any()]
            if not rows:
                continue
            hits = await self.store.search(
                scan.collection, kind, [scan.vectors[i] for i in rows], k + 1
            )
            for i, found in zip(rows, hits, strict=True):
                for hit in found:
                    j = scan.index.get(hit.id)
                    if j is not None and j != i:
                        pair = (min(i, j), max(i, j))
                        out[pair] = max(out.get(pair, -1.0), hit.score)
        return out

    # --- contained ------------------------------------------------------------------------

    async def _contained(self, scan: Scan, limit: int) -> tuple[list[DuplicateGroup], bool]:
        entries = scan.entries
        found: dict[int, list[tuple[int, CropMatch, Box, float, Source]]] = defaultdict(list)
        if scan.vectors is None:
            return [], False
        cache: OrderedDict[str, np.ndarray | None] = OrderedDict()
        truncated = False
        children = [i for i, e in enumerate(entries) if e.size is not None]
        for chunk in _chunks(children, SEARCH_CHUNK):
            rows = [i for i in chunk if scan.vectors[i].any()]
            if not rows:
                continue
            hits = await self.store.search(
                scan.collection, "window", [scan.vectors[i] for i in rows], CONTAINED_WINDOW_HITS
            )
            tasks: list[tuple[int, int, Box, float]] = []
            for child, window_hits in zip(rows, hits, strict=True):
                tasks += self._parents(scan, child, window_hits)
            for work in _chunks(tasks, WORK_CHUNK):
                results = await self._run(
                    partial(_each, partial(self._verify_crop, scan, cache=cache), work)
                )
                for (child, parent, window, score), result in zip(work, results, strict=True):
                    if result is not None:
                        match, source = result
                        found[parent].append((child, match, window, score, source))
            if len(found) >= limit:
                truncated = True
                break
        groups = [_contained_group(entries, p, crops) for p, crops in found.items()]
        groups.sort(key=lambda g: (-len(g.items), -max(p.score for p in g.pairs)))
        return groups, truncated or len(groups) > limit

    def _parents(
        self, scan: Scan, child: int, hits: Sequence[Hit]
    ) -> list[tuple[int, int, Box, float]]:
        """The parents to look at for ``child``: the images of its best windows, one per
        set of copies (a crop of one copy is a crop of each: the near tier lists them),
        at most CONTAINED_PARENTS, never the child or one of its copies."""
        same = scan.same
        best: dict[int, tuple[float, int, Box]] = {}
        for hit in hits:
            payload = WindowPayload.read(hit.payload)
            if payload is None:
                continue
            parent = scan.index.get(payload.parent_id)
            size = None if parent is None else scan.entries[parent].size
            if parent is None or parent == child or size is None:
                continue
            # The window's box within its image (a stale or forged one may lie outside,
            # or be reversed): none left, no prior to look near.
            x0, y0, x1, y1 = payload.box
            box = (max(0, x0), max(0, y0), min(size[0], x1), min(size[1], y1))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            cluster = same.find(parent) if same is not None else parent
            if same is not None and cluster == same.find(child):
                continue
            if cluster not in best or hit.score > best[cluster][0]:
                best[cluster] = (hit.score, parent, box)
        ranked = sorted(best.values(), key=lambda v: -v[0])[:CONTAINED_PARENTS]
        return [(child, parent, box, score) for score, parent, box in ranked]

    def _verify_crop(
        self,
        scan: Scan,
        task: tuple[int, int, Box, float],
        cache: OrderedDict[str, np.ndarray | None],
    ) -> tuple[CropMatch, Source] | None:
        """On the duplicates thread: is the child a crop of the parent? The signatures'
        first look, then the files'."""
        child, parent, window, _ = task
        c, p = scan.entries[child], scan.entries[parent]
        assert c.size is not None and p.size is not None
        if c.signature is not None and p.signature is not None:
            coarse = coarse_crop(c.signature, c.size, p.signature, p.size, window)
            if coarse is not None and coarse < COARSE_MIN_CORRELATION:
                return None
        child_pixels = self._grey(c, cache)
        parent_pixels = self._grey(p, cache)
        if child_pixels is None or parent_pixels is None:
            return None
        s = parent_pixels.shape[1] / p.size[0]
        prior = ((window[2] - window[0]) * s, (window[3] - window[1]) * s)
        match = locate_crop(child_pixels, parent_pixels, prior)
        if match is None or not match.passed:
            return None
        # A flat graphic (shapes on plain colour) can look like a crop of its own crop:
        # when the parent is found in the child as well, and better, the child is not
        # the crop (held-out benchmark: all 21 wrong pairs were of this kind).
        reverse = locate_crop(parent_pixels, child_pixels)
        if reverse is not None and reverse.passed and reverse.correlation >= match.correlation:
            return None
        x0, y0, x1, y1 = match.box
        box = (x0 / s, y0 / s, x1 / s, y1 / s)
        return CropMatch(box, match.correlation, match.detail, match.texture, match.area), "file"

    # --- files ----------------------------------------------------------------------------

    def _open(self, entry: Entry) -> OpenedImage | None:
        """The image's file, opened if the API may read it and it is still the indexed
        picture (same size); else None."""
        path = entry.payload.file_path
        try:
            opened = self.files.open(path)
            if opened is None:
                return None
            with opened.file as f:
                if os.fstat(f.fileno()).st_size > RESCORE_MAX_FILE_BYTES:
                    return None
                data = f.read(RESCORE_MAX_FILE_BYTES + 1)
            if len(data) > RESCORE_MAX_FILE_BYTES:
                return None
            image = open_image(data, max_pixels=self.max_pixels)
        except (OSError, ImgSearchError) as exc:
            log.info("duplicates: %s not read: %s", path, exc)
            return None
        return image if image.size == entry.size else None

    def _decode(self, entry: Entry, long_side: float) -> Image.Image | None:
        opened = self._open(entry)
        if opened is None:
            return None
        try:
            return opened.decode(short_side_for(opened.size, long_side) if long_side else 0)
        except ImgSearchError as exc:
            log.info("duplicates: %s not decoded: %s", entry.payload.file_path, exc)
            return None

    def _signature_from_file(self, entry: Entry) -> PixelSignature | None:
        assert entry.size is not None
        img = self._decode(entry, SIGNATURE_DECODE_SIDE)
        return None if img is None else pixel_signature(img, entry.size)

    def _full_digest(self, entry: Entry) -> bytes | None:
        """The digest of the image's full-size pixels, decoded from its file."""
        if entry.size is None or entry.size[0] * entry.size[1] > PIXELS_MAX:
            return None
        img = self._decode(entry, 0)
        return None if img is None else pixel_digest(img)

    def _grey(self, entry: Entry, cache: OrderedDict[str, np.ndarray | None]) -> np.ndarray | None:
        """The image's grey pixels, long side at most FINE_LONG_SIDE (cached)."""
        if entry.id in cache:
            cache.move_to_end(entry.id)
            kept = cache[entry.id]
        else:
            img = self._decode(entry, FINE_LONG_SIDE)
            kept = None if img is None else grey_copy(img).round().astype(np.uint8)
            cache[entry.id] = kept
            if len(cache) > DECODE_CACHE:
                cache.popitem(last=False)
        return None if kept is None else kept.astype(np.float32)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)


# --- groups ------------------------------------------------------------------------------------


def _item(entry: Entry, path: str | None = None) -> DuplicateItem:
    payload = entry.payload
    return DuplicateItem(
        id=entry.id,
        path=path if path is not None else payload.original_path,
        width=payload.width,
        height=payload.height,
        file_size=payload.file_size,
    )


def _original_paths(entry: Entry) -> list[str]:
    return list(dict.fromkeys(r.original_path for r in entry.payload.file_records()))


def _exact_groups(scan: Scan) -> list[DuplicateGroup]:
    """An image held by several files, and images of identical pixels, joined."""
    entries = scan.entries
    joined = UnionFind(len(entries))
    for edge in scan.exact:
        joined.union(edge.i, edge.j)
    members: dict[int, list[int]] = defaultdict(list)
    for k in range(len(entries)):
        members[joined.find(k)].append(k)
    by_root: dict[int, list[Edge]] = defaultdict(list)
    for edge in scan.exact:
        by_root[joined.find(edge.i)].append(edge)
    groups = []
    for root, images in members.items():
        if len(images) < 2 and len(_original_paths(entries[images[0]])) < 2:
            continue
        items: list[DuplicateItem] = []
        first_item: dict[int, int] = {}
        pairs: list[DuplicatePair] = []
        for k in images:
            paths = _original_paths(entries[k])
            first_item[k] = len(items)
            for n, path in enumerate(paths):
                items.append(_item(entries[k], path))
                if n:
                    pairs.append(
                        DuplicatePair(
                            a=first_item[k],
                            b=len(items) - 1,
                            score=1.0,
                            evidence=DuplicateEvidence(check="content", source="payload"),
                        )
                    )
        for edge in by_root[root]:
            pairs.append(_pair(first_item[edge.i], first_item[edge.j], edge))
        groups.append(DuplicateGroup(tier="exact", items=items, pairs=pairs))
    groups.sort(key=lambda g: (-len(g.items), g.items[0].path))
    return groups


def _near_groups(scan: Scan) -> list[DuplicateGroup]:
    """Connected sets of near (and exact) pairs holding at least one near pair."""
    entries = scan.entries
    joined = UnionFind(len(entries))
    edges = [*scan.exact, *scan.near]
    for edge in edges:
        joined.union(edge.i, edge.j)
    by_root: dict[int, list[Edge]] = defaultdict(list)
    for edge in edges:
        by_root[joined.find(edge.i)].append(edge)
    groups = []
    for group_edges in by_root.values():
        if not any(e.evidence.check == "thumbnail" for e in group_edges):
            continue
        images = sorted({k for e in group_edges for k in (e.i, e.j)})
        position = {k: n for n, k in enumerate(images)}
        groups.append(
            DuplicateGroup(
                tier="near",
                items=[_item(entries[k]) for k in images],
                pairs=[_pair(position[e.i], position[e.j], e) for e in group_edges],
            )
        )
    groups.sort(key=lambda g: (-len(g.items), -min(p.score for p in g.pairs)))
    return groups


def _contained_group(
    entries: Sequence[Entry],
    parent: int,
    crops: Iterable[tuple[int, CropMatch, Box, float, Source]],
) -> DuplicateGroup:
    p = entries[parent]
    assert p.size is not None
    items = [_item(p)]
    pairs = []
    for child, match, window, score, source in sorted(crops, key=lambda c: -c[1].correlation):
        x0, y0, x1, y1 = match.box
        box = [
            max(0, round(x0)),
            max(0, round(y0)),
            min(p.size[0], round(x1)),
            min(p.size[1], round(y1)),
        ]
        items.append(_item(entries[child]))
        evidence = DuplicateEvidence(
            check="located",
            clip_score=_rounded(score),
            correlation=_rounded(match.correlation),
            detail=_rounded(match.detail),
            box=box,
            area=_rounded(match.area),
            window=list(window),
            source=source,
        )
        pairs.append(
            DuplicatePair(
                a=0, b=len(items) - 1, score=round(match.correlation, 4), evidence=evidence
            )
        )
    return DuplicateGroup(tier="contained", items=items, pairs=pairs)


def _pair(a: int, b: int, edge: Edge) -> DuplicatePair:
    return DuplicatePair(a=a, b=b, score=edge.score, evidence=edge.evidence)


def _pixels_edge(i: int, j: int, source: Source) -> Edge:
    return Edge(i, j, 1.0, DuplicateEvidence(check="pixels", source=source))


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


U = TypeVar("U")


def _each(fn: Callable[[U], T], items: Iterable[U]) -> list[T]:
    return [fn(item) for item in items]


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[k : k + size] for k in range(0, len(items), size)]
