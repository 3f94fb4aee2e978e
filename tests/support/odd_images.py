"""Hostile and odd image files, built byte by byte where Pillow would not write them.

Each builder returns the file's bytes. Valid odd images come with what a person sees in
them (``reference``: an ordinary RGB picture), so a test can check that the server saw the
same thing; hostile ones are not images, or not ones we decode, or lie about their size.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from tests.support.images import png_bomb

__all__ = ["png_bomb"]

#: The transpose that stores an upright picture under each EXIF orientation (the inverse
#: of what a viewer applies to show it).
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG of already-filtered ``rows`` (each starting with its filter byte)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png16_grey(picture: Image.Image) -> bytes:
    """``picture`` as a 16-bit greyscale PNG (each 8-bit level v stored as v * 257)."""
    grey = np.asarray(picture.convert("L"), dtype=np.uint16) * 257
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in grey)
    return raw_png(picture.width, picture.height, 16, 0, rows)


def png16_rgb(picture: Image.Image) -> bytes:
    """``picture`` as a 48-bit RGB PNG."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.uint16) * 257
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    return raw_png(picture.width, picture.height, 16, 2, rows)


def exif_oriented_jpeg(picture: Image.Image, orientation: int) -> bytes:
    """A JPEG that shows ``picture`` upright when its EXIF ``orientation`` is applied."""
    fix = _STORE_FOR_ORIENTATION[orientation]
    stored = picture.transpose(fix) if fix is not None else picture
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored.convert("RGB"), "JPEG", quality=92, exif=exif.tobytes())
    # The check of the check: Pillow's own viewer-side transpose gives the picture back.
    with Image.open(io.BytesIO(data)) as shown:
        assert ImageOps.exif_transpose(shown).size == picture.size
    return data


def jpeg_with_app1(picture: Image.Image, app1: bytes) -> bytes:
    """A JPEG whose first segment after SOI is an APP1 of ``app1`` (at most 65533 bytes)."""
    data = encode(picture.convert("RGB"), "JPEG", quality=90)
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return data[:2] + segment + data[2:]


def exif_tiff(entries: Sequence[tuple[int, int, int, bytes]]) -> bytes:
    """An EXIF APP1 body: ``Exif\\0\\0`` and a little-endian TIFF with one IFD of
    ``(tag, type, count, value-or-offset 4 bytes)`` entries, taken as written."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]
    ifd += struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def gif_huge_screen(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height`` around one 1 x 1 frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    lzw = b"\x02\x02\x44\x01\x00"  # min code size 2, one sub-block, pixel 0
    return header + palette + frame + lzw + b"\x3b"


def tiff_header(width: int, height: int, extra: Sequence[tuple[int, int, int, int]] = ()) -> bytes:
    """A little-endian baseline TIFF (8-bit grey, one strip of 1 byte) declaring
    ``width`` x ``height``; ``extra`` entries ``(tag, type, count, value)`` are added."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0),  # strip offset, patched below
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 1),
        *extra,
    ]
    entries.sort()
    ifd_size = 2 + 12 * len(entries) + 4
    strip_at = 8 + ifd_size
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = strip_at
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    body += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + body + b"\x00"


def tiff_huge_ifd_count() -> bytes:
    """A TIFF whose first IFD declares 65535 entries and holds 3."""
    head = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 65535)
    return head + b"\x00\x01\x04\x00\x01\x00\x00\x00\x10\x00\x00\x00" * 3


def tiff_many_junk_tags(count: int = 65000) -> bytes:
    """A TIFF with ``count`` IFD entries of private tags besides its own (each 12 bytes)."""
    extra = [(40000 + i, 4, 1, i) for i in range(min(count, 25000))]
    return tiff_header(8, 8, extra)


def tiff_huge_tag_count() -> bytes:
    """A TIFF with one tag whose value count claims 2^31 LONGs beyond the file's end."""
    return tiff_header(8, 8, [(33432, 4, 0x7FFFFFFF, 0x7FFFFFF0)])


def psd() -> bytes:
    """A Photoshop file header (1 channel, 8 x 8, 8-bit grey) and its empty sections."""
    head = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"\x00" * 6, 1, 8, 8, 8, 1)
    return head + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"\x00" * 64


def apng(frames: Sequence[Image.Image]) -> bytes:
    return encode(frames[0], "PNG", save_all=True, append_images=list(frames[1:]), duration=100)


def animated_gif(frames: Sequence[Image.Image]) -> bytes:
    return encode(frames[0], "GIF", save_all=True, append_images=list(frames[1:]), duration=50)


def png_with_text_bomb(picture: Image.Image) -> bytes:
    """A PNG with a zTXt chunk that inflates to 64 MB before the pixel data."""
    data = encode(picture.convert("RGB"), "PNG")
    bomb = b"Comment\x00\x00" + zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)
    return data[:33] + png_chunk(b"zTXt", bomb) + data[33:]


def png_with_icc_garbage(picture: Image.Image) -> bytes:
    info = PngImagePlugin.PngInfo()
    return encode(picture.convert("RGB"), "PNG", pnginfo=info, icc_profile=b"\x00garbage" * 512)


ZIP_TRAILER = (
    b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00"
    b"\x05\x00\x00\x00\x05\x00\x00\x00evil1hello"
    b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00\x33\x00\x00\x00\x27\x00\x00\x00\x00\x00"
)
JS_TRAILER = b"*/=1;alert(document.domain);/*"
SVG_XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&xxe;</text></svg>'
)
#: "Billion laughs": ten levels of ten references each.
XML_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + b"".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10))
    + b"]>\n<lolz>&lol9;</lolz>"
)
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"


def multipart(
    files: Sequence[tuple[bytes, bytes]], fields: Sequence[tuple[str, str]] = ()
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``files`` (``(raw file name, content)`` as the
    field ``files``) and ``fields``, with the file names' bytes as given (httpx escapes
    control characters in them); ``(body, content type)``."""
    boundary = b"odd-images-boundary-7f3a"
    parts = []
    for name, content in files:
        head = b'Content-Disposition: form-data; name="files"; filename="' + name + b'"'
        parts.append(head + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + content)
    for key, value in fields:
        head = f'Content-Disposition: form-data; name="{key}"'.encode()
        parts.append(head + b"\r\n\r\n" + value.encode())
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"
