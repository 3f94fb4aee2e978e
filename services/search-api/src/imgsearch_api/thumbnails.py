"""Thumbnails of indexed images (``GET /api/image/{id}/thumbnail``, ``routes/media.py``).

A result card needs a few hundred pixels, not a 12-megapixel original: a thumbnail is a
WebP of at most :data:`MAX_BYTES`, its long side 256 or 512 px (:class:`ThumbnailSize`; the
aspect kept, never enlarged), EXIF orientation applied (as indexing applies it, so boxes in
the original's pixels scale onto it), transparency kept.

Made once, then read from ``DATA_DIR/thumbnails/v{FORMAT_VERSION}/``. An image's id is
derived from its file's bytes (``imgsearch_common.ids``), so ``{id}-{size}.webp`` names one
picture for good, in every collection, and the ETag (:func:`etag`) can be strong. The bytes
are checked against the id before a thumbnail is made: a file changed since it was indexed
is not the indexed image (404) and must not be cached under its id. Files are written to a
temporary name and renamed (a reader never sees half a file); a cached file that is not a
whole WebP (a crash before the data reached the disk) counts as missing.

Making one costs a decode on the API's bounded CPU pool, which searches use too: a 4096 x
4096 JPEG is decoded at 1/8 scale by libjpeg's DCT scaling (about 0.2 s for the whole
request, ``make bench-thumbnails``), a PNG that size whole (1-2 s on a busy 2-core machine);
a picture with transparency is decoded whole as RGBA (4 bytes a pixel, within
``MAX_IMAGE_PIXELS``), as imaging.py's bounded decodes flatten it onto white.

A page of uncached results asks for a burst of them, so at most
:func:`thumbnail_concurrency` are made at once (half the pool's threads: the other half stays
free for searches), :data:`THUMBNAIL_QUEUE` more wait in line for at most
:data:`THUMBNAIL_WAIT_S` each, and beyond that the answer is 503 + ``Retry-After``; requests
for a thumbnail already being made wait for that one instead of making it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import ExifTags, Image, ImageOps

from imgsearch_common.errors import CorruptImage, ImgSearchError, NotFound, UpstreamUnavailable
from imgsearch_common.ids import content_hash, image_id
from imgsearch_common.imaging import ALLOWED_FORMATS, open_image

from .admission import Gate
from .files import OpenedFile
from .search.rescoring import RESCORE_MAX_FILE_BYTES

if TYPE_CHECKING:
    from .settings import ApiSettings

log = logging.getLogger(__name__)

#: Bump when the pictures change (size, format, quality): a new folder and new ETags, so
#: neither the cache nor a browser keeps serving the old ones.
FORMAT_VERSION = 1
#: The most bytes a thumbnail may have (the page loads dozens at once).
MAX_BYTES = 100_000
#: WebP qualities tried in turn until the picture fits in :data:`MAX_BYTES`. A photo fits
#: at the first (512 px: 20-70 KB); only pictures of fine noise need the others.
QUALITIES = (80, 60, 40)
#: Then each further try is this much smaller (long side), at the last quality.
SHRINK = 0.75
#: Largest source file read (as re-scoring reads).
MAX_SOURCE_BYTES = RESCORE_MAX_FILE_BYTES
#: Thumbnails waiting for their turn to be made, beyond those being made.
THUMBNAIL_QUEUE = 64
#: Longest one waits for its turn (s): a waiting request holds no thread, and a page of
#: big PNGs takes a while (about 2 s each at one at a time on a busy 2-core machine).
THUMBNAIL_WAIT_S = 120.0
#: Modes that carry transparency as a channel (others may carry a ``transparency`` key).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class ThumbnailSize(IntEnum):
    """The long side of a thumbnail, px: a result card, or a larger preview."""

    small = 256
    large = 512


def etag(image: str, size: int) -> str:
    """The strong ETag of a thumbnail: its image (content-derived), size and format."""
    return f'"{image}-{size}-v{FORMAT_VERSION}"'


def thumbnail_concurrency(cpu_threads: int) -> int:
    """Thumbnails made at once: half the CPU pool's threads (at least one)."""
    return max(1, cpu_threads // 2)


# --- making one (blocking: the CPU pool) ----------------------------------------------------


def make_thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """The WebP thumbnail of the picture ``data`` (long side at most ``size``, at most
    :data:`MAX_BYTES`). Raises what ``imgsearch_common.imaging`` raises for bad data."""
    return encode_webp(render(data, size, max_pixels))


def render(data: bytes, size: int, max_pixels: int) -> Image.Image:
    """The picture as a person sees it, its long side at most ``size`` px: RGB, or RGBA
    when it has transparency. Checked as every decode is (format, pixel count) first."""
    opened = open_image(data, max_pixels)
    if not _has_alpha(data):
        # A JPEG is decoded at a reduced DCT scale; no full-size RGB copy of anything.
        return opened.decode_bounded(size)
    return _decode_with_alpha(data, size)


def encode_webp(img: Image.Image, max_bytes: int = MAX_BYTES) -> bytes:
    """``img`` as WebP in at most ``max_bytes``: at the first of :data:`QUALITIES` that
    fits, else smaller and smaller at the last one (a 1 px picture always fits)."""
    for quality in QUALITIES:
        out = _webp(img, quality)
        if len(out) <= max_bytes:
            return out
    while True:
        width, height = img.size
        if width == height == 1:
            return out
        smaller = (max(1, round(width * SHRINK)), max(1, round(height * SHRINK)))
        img = img.resize(smaller, Image.Resampling.BICUBIC)
        out = _webp(img, QUALITIES[-1])
        if len(out) <= max_bytes:
            return out


def _webp(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    # No EXIF written: the pixels are already turned.
    img.save(buf, format="WEBP", quality=quality, alpha_quality=quality, method=4)
    return buf.getvalue()


@contextlib.contextmanager
def _pillow_errors() -> Iterator[None]:
    """Pillow's failures as ours. The bytes already passed ``open_image``'s checks (format,
    pixel count), so its decompression-bomb warning says nothing new."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise CorruptImage("the image data is truncated or corrupt") from exc


def _has_alpha(data: bytes) -> bool:
    """Whether the picture has transparency (read from its header)."""
    with _pillow_errors(), Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as img:
        return img.mode in _ALPHA_MODES or "transparency" in img.info


def _decode_with_alpha(data: bytes, size: int) -> Image.Image:
    """RGBA, shrunk to a long side of ``size`` (premultiplied, so transparent pixels'
    colours do not bleed into the edges), then turned as EXIF says."""
    with _pillow_errors(), Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as img:
        # Read before the pixels, as imaging.py reads it (a PNG's eXIf after them is
        # ignored), so that the picture is turned as the indexed one and its boxes are.
        orientation = Image.Image.getexif(img).get(ExifTags.Base.Orientation, 1)
        rgba = img.convert("RGBA")
    rgba.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    # Pillow's own table turns it, told that orientation (``getexif`` is cached).
    rgba.getexif()[ExifTags.Base.Orientation] = orientation
    return ImageOps.exif_transpose(rgba)


def _read_source(source: OpenedFile, expected_id: str) -> bytes:
    """The file's bytes, if they are still the picture indexed as ``expected_id``."""
    with source.file as f:
        if os.fstat(f.fileno()).st_size > MAX_SOURCE_BYTES:
            raise NotFound("no thumbnail: the image file is too large to read back")
        data = f.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES or image_id(content_hash(data)) != expected_id:
        raise NotFound("no thumbnail: the image file changed since it was indexed")
    return data


# --- the cache --------------------------------------------------------------------------------


class ThumbnailCache:
    """``{folder}/{id[:2]}/{id}-{size}.webp``. Blocking (file system): off the event loop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, image: str, size: int) -> Path:
        return self.folder / image[:2] / f"{image}-{size}.webp"

    def read(self, image: str, size: int) -> bytes | None:
        """The cached thumbnail, or None (missing, or not a whole WebP)."""
        try:
            data = self.path(image, size).read_bytes()
        except OSError:
            return None
        return data if _whole_webp(data) else None

    def write(self, image: str, size: int, data: bytes) -> None:
        """Store ``data`` under a temporary name, then rename it into place."""
        path = self.path(image, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def forget(self, image: str) -> None:
        """Remove every size of ``image`` (it is made again if it is asked for again)."""
        for size in ThumbnailSize:
            with contextlib.suppress(OSError):
                self.path(image, size).unlink()


def _whole_webp(data: bytes) -> bool:
    """RIFF....WEBP whose RIFF length is the file's."""
    return (
        len(data) >= 12
        and data[:4] == b"RIFF"
        and data[8:12] == b"WEBP"
        and int.from_bytes(data[4:8], "little") + 8 == len(data)
    )


# --- the service ------------------------------------------------------------------------------


class _ThumbnailGate(Gate):
    def _busy_message(self) -> str:
        return (
            f"too many thumbnails being made ({self.running} running, {self.waiting} "
            "waiting); retry later"
        )


def _server_busy(message: str, retry_after: int) -> ImgSearchError:
    return UpstreamUnavailable(message, retry_after=retry_after)


class Thumbnails:
    """Thumbnails from the cache, or made on the CPU pool (bounded, one at a time per
    picture) and cached."""

    def __init__(
        self,
        cache: ThumbnailCache,
        *,
        max_pixels: int,
        concurrency: int,
        queue: int = THUMBNAIL_QUEUE,
        wait_s: float = THUMBNAIL_WAIT_S,
    ) -> None:
        self.cache = cache
        self.max_pixels = max_pixels
        self.gate: Gate = _ThumbnailGate(
            "thumbnails", capacity=concurrency, waiting=queue, wait_s=wait_s, refuse=_server_busy
        )
        self._making: dict[tuple[str, int], asyncio.Future[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Thumbnails:
        folder = settings.data_dir / "thumbnails" / f"v{FORMAT_VERSION}"
        return cls(
            ThumbnailCache(folder),
            max_pixels=settings.max_image_pixels,
            concurrency=thumbnail_concurrency(settings.cpu_threads),
        )

    async def get(self, image: str, size: int, source: OpenedFile, pool: Executor) -> bytes:
        """The thumbnail of the indexed image ``image`` (a canonical id), whose file is
        ``source`` (opened; closed here). 404 when the file is no longer that picture or
        cannot be decoded within the server's bounds; 503 when too many are being made."""
        cached = await asyncio.to_thread(self.cache.read, image, size)
        key = (image, size)
        making = self._making.get(key)
        if cached is not None or making is not None:
            source.file.close()
            if cached is not None:
                return cached
        if making is None:
            making = asyncio.ensure_future(self._make(image, size, source, pool))
            self._making[key] = making
            making.add_done_callback(lambda done: self._made(key, done))
        # A caller that goes away leaves the others (and the cache) their thumbnail.
        return await asyncio.shield(making)

    async def forget(self, image: str) -> None:
        """Remove the cached thumbnails of ``image`` (deleted from a collection; one
        still indexed elsewhere gets them made again when asked)."""
        await asyncio.to_thread(self.cache.forget, image)

    def _made(self, key: tuple[str, int], done: asyncio.Future[bytes]) -> None:
        if self._making.get(key) is done:
            del self._making[key]
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have gone

    async def _make(self, image: str, size: int, source: OpenedFile, pool: Executor) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            async with self.gate.slot():
                return await loop.run_in_executor(pool, self._make_blocking, image, size, source)
        finally:
            source.file.close()  # already closed unless the pool refused the task

    def _make_blocking(self, image: str, size: int, source: OpenedFile) -> bytes:
        data = _read_source(source, image)
        try:
            thumbnail = make_thumbnail(data, size, self.max_pixels)
        except ImgSearchError as exc:
            log.info("no thumbnail of %s (%s): %s", image, source.path, exc.message)
            raise NotFound(f"no thumbnail: {exc.message}") from exc
        try:
            self.cache.write(image, size, thumbnail)
        except OSError as exc:  # a full disk: served anyway, made again next time
            log.warning("thumbnail of %s not cached: %s", image, exc)
        return thumbnail
