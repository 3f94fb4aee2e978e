"""An image query costs bounded memory whatever its declared size (``MAX_QUERY_SIDE``,
``MAX_QUERY_PIXELS``), and boxes are still reported in the query's own pixels.

A valid 1-bit PNG of 10000 x 8000 px is about 10 KB on the wire; decoded to RGB it was
320 MB (Pillow keeps RGB at 4 bytes a pixel), then copied again for text removal,
enhancement and the query windows. Memory is measured as the growth of this process's
peak resident set during one request (``/proc/self/clear_refs`` resets the peak): Pillow
allocates outside tracemalloc's reach.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgsearch_common.imaging import decode_image
from imgsearch_common.windows import box_iou
from imgsearch_devstack import wait_batch
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.images import jpeg_bytes, search_image
from tests.support.inprocess import InProcessStack

pytestmark = [pytest.mark.slow]
COLLECTION = "query-bounds"
#: The memory tests search a collection nobody indexes into: re-scoring (which reads
#: indexed pictures) then has nothing to do, and what is measured is the query's cost.
EMPTY = "query-bounds-empty"
MB = 1024 * 1024


def one_bit_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG: black with a white square, a few KB compressed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    stride = (width + 7) // 8
    black = b"\x00" + b"\x00" * stride
    square = b"\x00" + b"\x00" * (stride // 4) + b"\xff" * (stride // 2)
    square += b"\x00" * (stride - len(square) + 1)
    rows = [square if height // 4 <= y < 3 * height // 4 else black for y in range(height)]
    raw = zlib.compress(b"".join(rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        found = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    assert found, field
    return int(found.group(1))


def _reset_peak() -> int:
    """Reset this process's peak resident set to the current one; that (kB)."""
    # Memory freed earlier may still be mapped, and reused without raising the resident
    # set: hand it back to the system first, so that reuse cannot hide a copy.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def _wait_until_idle(client: httpx.Client, timeout_s: float = 300.0) -> None:
    """The resident set is the whole process's: let the stack's workers finish the jobs
    earlier tests queued (each decodes a picture), and whatever else still runs settle,
    until half a second passes without the peak rising by 4 MB."""
    deadline = time.monotonic() + timeout_s
    while client.get("/api/status").json()["queue"]["pending"] > 0:
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.2)
    while True:
        before = _reset_peak()
        time.sleep(0.5)
        if _status_kb("VmHWM") - before < 4 * 1024:
            return
        assert time.monotonic() < deadline, "the process did not settle"


def peak_growth(
    client: httpx.Client, action: Callable[[], httpx.Response]
) -> tuple[httpx.Response, int]:
    """``action``'s answer, and how far this process's resident set rose above where it
    was, at its highest during ``action`` (bytes)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak")
    _wait_until_idle(client)
    before = _reset_peak()
    response = action()
    return response, (_status_kb("VmHWM") - before) * 1024


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client(timeout=120) as c:
        # EMPTY exists (a search of a collection that does not is 404) and holds nothing:
        # one forged point written, then deleted.
        point = image_point("99999999-0000-0000-0000-000000000001", "/nowhere/x.png", EMPTY)
        body = {"collection": EMPTY, "full": [point], "windows": []}
        assert c.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
        deleted = c.delete(f"/api/images/{point['id']}", params={"collection": EMPTY})
        assert deleted.status_code == 200, deleted.text
        yield c


def _warm_up(client: httpx.Client, width: int, height: int) -> None:
    """Every stage once on a small query of the same shape: a first run allocates what
    stays (the model's buffers; the text detector's arena grows once for each input shape
    it meets, and its inputs are at most 960 px), which is not a request's cost."""
    warm = jpeg_bytes(Image.effect_noise((width, height), 60).convert("RGB"))
    r = search_image(
        client, warm, collection=EMPTY, remove_text=True, enhance_image=True, match_mode="auto"
    )
    assert r.status_code == 200, r.text


def test_one_bit_png_bomb_costs_bounded_memory(client: httpx.Client) -> None:
    """10000 x 8000 px in 10 KB, with every option that used to copy it at full size."""
    bomb = one_bit_png(10_000, 8_000)
    assert len(bomb) < 64 * 1024
    _warm_up(client, 2_500, 2_000)

    r, growth = peak_growth(
        client,
        lambda: search_image(
            client,
            bomb,
            collection=EMPTY,
            remove_text=True,
            enhance_image=True,
            match_mode="auto",
            limit=3,
        ),
    )

    assert r.status_code in (200, 413), r.text
    if r.status_code == 413:
        assert r.json()["error"]["code"] == "image_too_large"
    assert growth < 100 * MB, f"the request grew the peak resident set by {growth / MB:.0f} MB"


def _palette_png(width: int, height: int) -> bytes:
    img = Image.new("P", (width, height), 0)
    img.putpalette([20, 40, 60, 240, 200, 10] + [0, 0, 0] * 254)
    img.paste(1, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_large_palette_png_within_the_cap_is_shrunk_without_an_rgb_copy(
    client: httpx.Client,
) -> None:
    """24 MP, accepted: decoded in its own mode (1 byte a pixel, 24 MB) and reduced before
    it becomes RGB; one full-size RGB copy would be 96 MB. Measured against the same
    picture at 1500 x 1000 (the same query windows, text-detector input and batches
    downstream, so the encoder's share and first-run costs cancel out), best of two."""
    big, small = _palette_png(6_000, 4_000), _palette_png(1_500, 1_000)

    def search(data: bytes) -> Callable[[], httpx.Response]:
        return lambda: search_image(
            client,
            data,
            collection=EMPTY,
            remove_text=True,
            enhance_image=True,
            match_mode="auto",
        )

    for data in (small, big):  # first runs: caches for new shapes, not the request's cost
        assert search(data)().status_code == 200
    growth: dict[str, list[int]] = {"small": [], "big": []}
    for _ in range(2):
        for name, data in (("small", small), ("big", big)):
            r, grew = peak_growth(client, search(data))
            assert r.status_code == 200, r.text
            growth[name].append(grew)

    excess = min(growth["big"]) - min(growth["small"])
    seen = {k: [round(v / MB) for v in vs] for k, vs in growth.items()}
    assert excess < 64 * MB, f"24 MP cost {excess / MB:.0f} MB more than 1.5 MP (MB: {seen})"


@pytest.fixture(scope="module")
def indexed(client: httpx.Client, photos_dir: Path) -> dict[str, Path]:
    names = ["astronaut", "coffee", "chelsea", "rocket"]
    paths = {n: photos_dir / f"{n}.jpg" for n in names}
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths.values()]
    r = client.post("/api/index/upload", files=files, data={"collection": COLLECTION})
    assert r.status_code == 202, r.text
    status = wait_batch(client, r.json()["batch_id"])
    assert (status.done, status.failed) == (len(names), 0), status
    return paths


def test_query_box_of_a_query_larger_than_the_bound_is_in_its_own_pixels(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    """A 4800 x 3200 screenshot-like PNG is worked on at 2048 px; the picture pasted in it
    is still reported where it is in the uploaded pixels."""
    photo = decode_image(indexed["astronaut"].read_bytes())
    canvas = Image.new("RGB", (4_800, 3_200), (236, 238, 242))
    canvas.paste(photo.resize((1_680, 1_680)), (2_400, 1_000))
    truth = (2_400, 1_000, 4_080, 2_680)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")

    r = search_image(client, buf.getvalue(), collection=COLLECTION, match_mode="contains", limit=3)

    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["metadata"]["filename"] == "astronaut.jpg"
    assert top["match_type"] == "contains"
    assert box_iou(tuple(top["query_box"]), truth) >= 0.5, (top["query_box"], truth)


def test_region_boxes_of_a_large_query_are_in_the_pictures_pixels(
    client: httpx.Client, indexed: dict[str, Path]
) -> None:
    """A half of a picture, enlarged 8 times (long side over the bound): the matched box is
    the half, in the indexed picture's pixels."""
    photo = decode_image(indexed["chelsea"].read_bytes())
    half = photo.crop((0, 0, photo.width // 2, photo.height))
    big = half.resize((half.width * 8, half.height * 8), Image.Resampling.BICUBIC)
    assert max(big.size) > 2048

    r = search_image(client, jpeg_bytes(big, 90), collection=COLLECTION, limit=3)

    assert r.status_code == 200, r.text
    results = r.json()["results"]
    ranked = [x["metadata"]["filename"] for x in results]
    assert "chelsea.jpg" in ranked, ranked
    box = tuple(results[ranked.index("chelsea.jpg")]["matched_boxes"][0]["box"])
    assert box_iou(box, (0, 0, photo.width // 2, photo.height)) >= 0.5, box
