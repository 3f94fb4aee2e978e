"""The pixel signature: a compact summary of an image's pixels, stored with its point.

The worker computes it at indexing time from the pixels it already decoded
(``imgsearch_worker.pipeline``) and stores it as the full point's ``signature``
(``payloads.ImagePayload``); the search API's duplicate finder reads it back
(``imgsearch_api.duplicates``) to *verify* candidate pairs without opening their files.
A model's similarity only proposes candidates: with random weights (or any weights)
two unrelated pictures can score high, while two copies of one picture always have the
same pixels, give or take re-encoding and resizing.

What it holds (1 045 bytes, base64 in the payload):

- ``thumb``: the whole picture squashed to ``THUMB_SIDE`` x ``THUMB_SIDE`` grey levels,
  each the mean of its block (computed in floating point, so a faint picture keeps its
  structure), standardised (zero mean, unit variance) and stored as int8 at
  ``1 / THUMB_STEPS`` of a standard deviation (±4 σ). A resized, re-encoded or
  brightened copy has nearly the same thumbnail; its correlation and that of its
  gradients are what near-duplicate verification compares.
- ``mean`` and ``std`` of the grey levels (0-255) before standardising: a flat picture
  (``std`` under ``FLAT_STD``) has no structure to compare.
- ``digest``: 16 bytes of BLAKE2b over the RGB pixels the signature was computed from
  and their size, and ``full``: whether those were the image's full-size pixels (a JPEG
  may be decoded at 1/2, 1/4 or 1/8 by DCT scaling, a large image shrunk before its
  windows are cut: such pixels stand for the full ones only nearly). Two files with equal
  full digests hold identical decoded pixels; equal reduced ones, very likely.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Side of the thumbnail (px): 32 x 32 = 1 024 grey levels.
THUMB_SIDE = 32
#: Quantisation of the standardised thumbnail: this many steps per standard deviation.
THUMB_STEPS = 32
#: A picture whose grey levels vary less than this (standard deviation, 0-255) is flat.
FLAT_STD = 1.0
VERSION = 1
_HEADER = struct.Struct("<BBeB16s")  # version, mean, std (float16), flags, digest
_FULL = 1
_SIZE = _HEADER.size + THUMB_SIDE * THUMB_SIDE


@dataclass(frozen=True)
class PixelSignature:
    #: ``(THUMB_SIDE, THUMB_SIDE)`` float32, standardised (zeros for a flat picture).
    thumb: np.ndarray
    mean: float
    std: float
    digest: bytes
    #: Whether ``digest`` is of the full-size pixels (False: of a DCT-scaled decode).
    full: bool

    @property
    def flat(self) -> bool:
        return self.std < FLAT_STD

    def encode(self) -> str:
        quantised = np.clip(np.rint(self.thumb * THUMB_STEPS), -127, 127).astype(np.int8)
        header = _HEADER.pack(
            VERSION,
            round(min(255.0, max(0.0, self.mean))),
            min(self.std, 60000.0),
            _FULL if self.full else 0,
            self.digest,
        )
        return base64.b64encode(header + quantised.tobytes()).decode("ascii")

    @classmethod
    def decode(cls, text: str | None) -> PixelSignature | None:
        """The signature ``encode`` wrote, or None for anything else (absent, another
        version, damaged)."""
        if not text:
            return None
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _SIZE:
            return None
        version, mean, std, flags, digest = _HEADER.unpack_from(raw)
        if version != VERSION or not np.isfinite(std) or std < 0:
            return None
        values = np.frombuffer(raw, dtype=np.int8, offset=_HEADER.size).astype(np.float32)
        thumb = (values / THUMB_STEPS).reshape(THUMB_SIDE, THUMB_SIDE)
        return cls(thumb, float(mean), float(std), bytes(digest), bool(flags & _FULL))


def thumbnail(img: Image.Image) -> tuple[np.ndarray, float, float]:
    """``img`` squashed to THUMB_SIDE² block means of its grey levels (float32), their
    mean and standard deviation; the thumbnail standardised (zeros when flat)."""
    grey = img.convert("L").convert("F").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
    values = np.asarray(grey, dtype=np.float32)
    mean, std = float(values.mean()), float(values.std())
    if std < FLAT_STD:
        return np.zeros_like(values), mean, std
    return (values - mean) / std, mean, std


def pixel_digest(img: Image.Image) -> bytes:
    """16 bytes of BLAKE2b over ``img``'s RGB pixels and its size."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.digest()


def pixel_signature(pixels: Image.Image, size: tuple[int, int]) -> PixelSignature:
    """The signature of an image of ``size`` (its full width and height) from ``pixels``:
    its decoded pixels, or a copy shrunk from them (the worker passes the copy it cuts
    windows from: a 16-megapixel PNG is hashed at a tenth of the cost, and block means
    barely differ). The digest is then of the shrunk pixels (``full`` False): equal
    digests call for a comparison of the files."""
    thumb, mean, std = thumbnail(pixels)
    return PixelSignature(thumb, mean, std, pixel_digest(pixels), pixels.size == tuple(size))
