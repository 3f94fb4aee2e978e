"""Test images and image queries: JPEG bytes, a PNG decompression bomb, a by-image search."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
from PIL import Image


def jpeg_bytes(img: Image.Image, quality: int = 70) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def search_image(client: httpx.Client, data: bytes, **form: object) -> httpx.Response:
    """POST ``data`` to ``/api/search/by-image`` with ``form`` fields (booleans as the page
    sends them)."""
    fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()}
    return client.post(
        "/api/search/by-image", files={"file": ("q.jpg", data, "image/jpeg")}, data=fields
    )


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG header declaring width x height, with a tiny compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    raw = zlib.compress(row * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
