"""Generated copies of real photos for the duplicates benchmark, and the truth about them.

The photos are the throughput benchmark's (``throughput_data.ensure_photos``: Debian's
wallpaper packages and the test photos), made *distinct* first: the packages ship some
pictures several times (one wallpaper at three resolutions, day and night or colour
variants of one design, portrait versions of landscape ones), which are near copies of
each other, not distinct photos. Those are dropped here by the rules below (looked at by
eye: the portrait plasma wallpapers, the ``-l`` half of each ``-d``/``-l`` pair, the colour
variants listed in ``VARIANTS``), and so are flat pictures (transparent overlays that
flatten to one colour: any two look the same).

Every kept photo is shrunk to ``BASE_LONG_SIDE`` (so a run indexes a few hundred images in
minutes on 2 cores) and written as JPEG (photos) or PNG (PNG and WebP sources); then each
gets its variants (:func:`generate`), each recorded with the part of the photo it shows
(``box``, fractions of the photo) and which files hold identical pixels:

- exact: a byte copy at another path; a lossless re-save (a JPEG with a comment inserted:
  the same coefficients; a PNG at another compression level); for JPEGs, a PNG of the
  decoded pixels;
- near: JPEG re-compression at quality 75 and 40, resizes to 1/2 and 1/4 (short side at
  least 120 px), brightness +12 %, saturation +30 % with contrast -10 %, and a combination
  (70 %, brightness -8 %, quality 60);
- contained: crops of 50, 25 and 12 % of the area (aspect ±25 %, random place), quality
  85, and a combination (30 %, resized to 60 %, quality 70).

:func:`relation` says what two files are to each other.
"""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance
from PIL.PngImagePlugin import PngInfo

from benchmarks.throughput_data import ensure_photos, list_photos
from imgsearch_common.imaging import open_image

BASE_LONG_SIDE = 1600
#: Colour or resolution variants of a picture kept under another name (content-hash
#: suffixes of ``throughput_data``'s file names), and name parts of whole families.
VARIANTS = ("e8f6167bafea", "b2f1fbe9ebf7", "Elephants_", "Ubuntu-Mate-Cold", "Ubuntu-Mate-Dark",
            "Ubuntu-Mate-Radioactive", "MATE-Stripes-Light")  # fmt: skip
#: A photo whose grey levels vary less than this (standard deviation) is flat.
MIN_STD = 2.0
Relation = Literal["exact", "near", "contained", "reverse", None]
Tier = Literal["base", "exact", "near", "contained"]


@dataclass(frozen=True)
class Generated:
    #: File name in the benchmark folder.
    name: str
    source: str
    variant: str
    tier: Tier
    #: The part of the source it shows, fractions ``(x0, y0, x1, y1)``.
    box: tuple[float, float, float, float]
    #: Files with the same value hold identical decoded pixels.
    pixels: str
    #: Files with the same value hold identical bytes (one image in the index).
    content: str


def _is_variant(name: str, width: int, height: int) -> bool:
    if any(v in name for v in VARIANTS) or "-l-4096" in name:
        return True
    # The plasma packages' portrait versions of their landscape wallpapers.
    return height > width and name[:1].isdigit()


def distinct_photos(cache: Path) -> list[tuple[str, Path]]:
    """The distinct photos: ``(key, path)``, sorted by key."""
    out = []
    for photo in list_photos(ensure_photos(cache)):
        if _is_variant(photo.path.name, photo.width, photo.height):
            continue
        out.append((photo.path.stem, photo.path))
    return out


def load_base(path: Path) -> Image.Image | None:
    """The photo as the index would see it, shrunk to BASE_LONG_SIDE; None when flat."""
    opened = open_image(path.read_bytes(), max_pixels=200_000_000)
    w, h = opened.size
    img = opened.decode(BASE_LONG_SIDE * min(w, h) / max(w, h))
    if max(img.size) > BASE_LONG_SIDE:
        img.thumbnail((BASE_LONG_SIDE, BASE_LONG_SIDE), Image.Resampling.LANCZOS)
    if float(np.asarray(img.convert("L"), np.float32).std()) < MIN_STD:
        return None
    return img


def split(keys: list[str]) -> tuple[list[str], list[str]]:
    """Calibration and held-out halves, by a hash of the key (stable across runs)."""
    calibration: list[str] = []
    held_out: list[str] = []
    for key in keys:
        digest = hashlib.sha256(key.encode()).digest()[0]
        (calibration if digest % 2 == 0 else held_out).append(key)
    return calibration, held_out


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png_bytes(img: Image.Image, level: int = 6, text: str | None = None) -> bytes:
    buf = io.BytesIO()
    info = PngInfo()
    if text:
        info.add_text("Comment", text)
    img.convert("RGB").save(buf, format="PNG", compress_level=level, pnginfo=info)
    return buf.getvalue()


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a COM segment after its SOI: other bytes, the same coefficients."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def _crop_box(rng: random.Random, area: float) -> tuple[float, float, float, float]:
    r = rng.uniform(0.8, 1.25)
    fw, fh = min(1.0, area**0.5 * r), min(1.0, area**0.5 / r)
    x0, y0 = rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh)
    return (x0, y0, x0 + fw, y0 + fh)


def _cut(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    return img.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def _scaled(img: Image.Image, f: float) -> Image.Image:
    return img.resize(
        (max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.LANCZOS
    )


def generate(
    key: str, img: Image.Image, folder: Path, rng: random.Random, *, variants: bool = True
) -> list[Generated]:
    """Write the base photo (and its variants) into ``folder``; what was written."""
    is_jpeg = not key.startswith("png:")
    stem = key.replace("png:", "")
    whole = (0.0, 0.0, 1.0, 1.0)
    base_bytes = _jpeg_bytes(img, 92) if is_jpeg else _png_bytes(img)
    ext = ".jpg" if is_jpeg else ".png"
    out: list[Generated] = []

    def write(
        variant: str, data: bytes, ext: str, tier: Tier, box: tuple[float, ...], pixels: str
    ) -> None:
        name = f"{stem}--{variant}{ext}"
        (folder / name).write_bytes(data)
        content = hashlib.sha256(data).hexdigest()
        out.append(Generated(name, stem, variant, tier, box, pixels, content))  # type: ignore[arg-type]

    write("base", base_bytes, ext, "base", whole, f"{stem}/base")
    if not variants:
        return out
    decoded = Image.open(io.BytesIO(base_bytes)).convert("RGB")  # what the files hold
    write("copy", base_bytes, ext, "exact", whole, f"{stem}/base")
    if is_jpeg:
        write(
            "comment", with_comment(base_bytes, b"re-saved"), ".jpg", "exact", whole, f"{stem}/base"
        )
        write("topng", _png_bytes(decoded), ".png", "exact", whole, f"{stem}/base")
    else:
        write("resaved", _png_bytes(decoded, 1, "re-saved"), ".png", "exact", whole, f"{stem}/base")
    for q in (75, 40):
        write(f"q{q}", _jpeg_bytes(decoded, q), ".jpg", "near", whole, f"{stem}/q{q}")
    write("half", _jpeg_bytes(_scaled(decoded, 0.5), 85), ".jpg", "near", whole, f"{stem}/half")
    if min(decoded.size) / 4 >= 120:
        quarter = _jpeg_bytes(_scaled(decoded, 0.25), 85)
        write("quarter", quarter, ".jpg", "near", whole, f"{stem}/quarter")
    bright = ImageEnhance.Brightness(decoded).enhance(1.12)
    write("bright", _jpeg_bytes(bright, 85), ".jpg", "near", whole, f"{stem}/bright")
    colour = ImageEnhance.Contrast(ImageEnhance.Color(decoded).enhance(1.3)).enhance(0.9)
    write("colour", _jpeg_bytes(colour, 85), ".jpg", "near", whole, f"{stem}/colour")
    combo = ImageEnhance.Brightness(_scaled(decoded, 0.7)).enhance(0.92)
    write("combo", _jpeg_bytes(combo, 60), ".jpg", "near", whole, f"{stem}/combo")
    for area in (0.5, 0.25, 0.12):
        box = _crop_box(rng, area)
        name = f"crop{round(area * 100)}"
        write(name, _jpeg_bytes(_cut(decoded, box), 85), ".jpg", "contained", box, f"{stem}/{name}")
    box = _crop_box(rng, 0.3)
    mixed = _jpeg_bytes(_scaled(_cut(decoded, box), 0.6), 70)
    write("cropmix", mixed, ".jpg", "contained", box, f"{stem}/cropmix")
    return out


def build(
    cache: Path, folder: Path, keys: list[str], *, with_variants: set[str], seed: int = 11
) -> list[Generated]:
    """Generate the photos ``keys`` (of :func:`distinct_photos`) into ``folder`` (emptied
    first); those in ``with_variants`` with their variants, the others alone (distinct
    photos)."""
    paths = dict(distinct_photos(cache))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out: list[Generated] = []
    for key in keys:
        img = load_base(paths[key])
        if img is None:
            continue
        rng = random.Random(f"{seed}:{key}")
        fmt_key = key if paths[key].suffix.lower() in (".jpg", ".jpeg") else f"png:{key}"
        out += generate(fmt_key, img, folder, rng, variants=key in with_variants)
    return out


def _inside(a: tuple[float, ...], b: tuple[float, ...], tol: float = 0.01) -> bool:
    """Box ``a`` lies within box ``b``."""
    return a[0] >= b[0] - tol and a[1] >= b[1] - tol and a[2] <= b[2] + tol and a[3] <= b[3] + tol


def _area(box: tuple[float, ...]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def relation(a: Generated, b: Generated) -> Relation:
    """What ``b`` is to ``a``: ``exact`` (identical pixels), ``near`` (both show the whole
    photo), ``contained`` (``b`` is a crop of ``a``), ``reverse`` (``a`` of ``b``), None."""
    if a.source != b.source:
        return None
    if a.pixels == b.pixels:
        return "exact"
    if _area(a.box) > 0.99 and _area(b.box) > 0.99:
        return "near"
    if _inside(b.box, a.box) and _area(b.box) <= 0.9 * _area(a.box):
        return "contained"
    if _inside(a.box, b.box) and _area(a.box) <= 0.9 * _area(b.box):
        return "reverse"
    return None


def pairs(files: list[Generated]) -> Iterator[tuple[Generated, Generated]]:
    by_source: dict[str, list[Generated]] = {}
    for f in files:
        by_source.setdefault(f.source, []).append(f)
    for members in by_source.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                yield a, b
