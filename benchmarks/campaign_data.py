"""The files the fault campaign and the load run index: small images cut from the real
photos (``imgsearch_devstack.photos``), each of its own content, and a handful of
deliberately bad files with the dead-letter reason each must get.

Pure apart from writing the files: the same ``seed`` gives the same bytes.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imgsearch_common.ids import content_hash

#: Long side of the cut images (px): small, so that a thousand of them index in minutes.
MIN_SIDE, MAX_SIDE = 160, 320
#: Share of the cut images written as PNG and as WebP (the rest are JPEGs).
PNG_SHARE, WEBP_SHARE = 0.1, 0.1


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    sha256: str
    width: int
    height: int


def cut_image(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random box of ``photo`` (a quarter of its short side at least, aspect ratio 0.6
    to 1.6), resized so that its long side is ``MIN_SIDE``–``MAX_SIDE`` px."""
    pw, ph = photo.size
    aspect = rng.uniform(0.6, 1.6)
    short = min(pw, ph)
    side = rng.uniform(0.25, 1.0) * short
    w = min(pw, max(8, round(side * aspect if aspect >= 1 else side)))
    h = min(ph, max(8, round(side / aspect if aspect < 1 else side)))
    x0 = rng.randrange(0, pw - w + 1)
    y0 = rng.randrange(0, ph - h + 1)
    box = photo.crop((x0, y0, x0 + w, y0 + h))
    long_side = rng.randint(MIN_SIDE, MAX_SIDE)
    scale = long_side / max(w, h)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return box.convert("RGB").resize(size, Image.Resampling.BICUBIC)


def encode(img: Image.Image, rng: random.Random) -> tuple[bytes, str]:
    """The image as JPEG (quality 75–95), PNG or WebP bytes, and its file extension."""
    buf = io.BytesIO()
    pick = rng.random()
    if pick < PNG_SHARE:
        img.save(buf, format="PNG")
        return buf.getvalue(), "png"
    if pick < PNG_SHARE + WEBP_SHARE:
        img.save(buf, format="WEBP", quality=rng.randint(70, 90))
        return buf.getvalue(), "webp"
    img.save(buf, format="JPEG", quality=rng.randint(75, 95))
    return buf.getvalue(), "jpg"


def write_corpus(
    photos: Mapping[str, Image.Image], folders: list[Path], count: int, seed: int
) -> list[CorpusFile]:
    """``count`` cut images spread in turn over ``folders``, all of distinct content."""
    rng = random.Random(seed)
    names = sorted(photos)
    seen: set[str] = set()
    out: list[CorpusFile] = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    while len(out) < count:
        name = rng.choice(names)
        img = cut_image(photos[name], rng)
        data, ext = encode(img, rng)
        sha = content_hash(data)
        if sha in seen:  # the same box of the same photo twice: draw again
            continue
        seen.add(sha)
        path = folders[len(out) % len(folders)] / f"{len(out):05d}-{name}.{ext}"
        path.write_bytes(data)
        out.append(CorpusFile(path, sha, img.width, img.height))
    return out


def lying_png(width: int, height: int) -> bytes:
    """A real 8 x 8 PNG whose header claims ``width`` x ``height`` (CRC fixed up): a
    decompression bomb as far as any header check can tell."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # Signature (8 bytes), IHDR length (4) and type (4), then width and height.
    struct.pack_into(">II", data, 16, width, height)
    crc = zlib.crc32(bytes(data[12:29]))  # type + the 13 bytes of IHDR data
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def write_bad_files(folder: Path, good_jpeg: bytes) -> dict[Path, str]:
    """Files no worker can index, and the dead-letter reason each must get."""
    folder.mkdir(parents=True, exist_ok=True)
    bad: dict[str, tuple[bytes, str]] = {
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 3], "corrupt_image"),
        "notes.png": (b"these are notes, not a picture\n" * 20, "unsupported_image"),
        "empty.webp": (b"", "empty_input"),
        "bomb.png": (lying_png(40_000, 40_000), "image_too_large"),
        # A JPEG's magic bytes and nothing a decoder recognises after them.
        "garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "unsupported_image"),
    }
    out: dict[Path, str] = {}
    for name, (data, reason) in bad.items():
        path = folder / name
        path.write_bytes(data)
        out[path] = reason
    return out
