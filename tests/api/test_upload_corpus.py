"""Upload corpus: hostile and odd files against ``POST /api/index/upload`` and
``POST /api/search/by-image``, on the in-process stack (real encoder, API, workers).

Every file either gets a 4xx in the common error shape on both routes, and nothing is
stored, or it is a valid image and is accepted *and seen as a person sees it*: its batch
finishes indexed, a search with an ordinary RGB rendering of what it shows (its
``reference``) finds it first as a near copy with the size a viewer shows, and a search
with the file itself answers 200 and finds it first. No request may be a 5xx or take more
than ``PROMPT_S``.

Images of extreme aspect ratio are first prepared in a subprocess with little memory
(:func:`_prepare_in_little_memory`): a preparation that needs gigabytes must fail there,
not in this process, which shares its machine.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imgsearch_common.ids import content_hash, image_id
from imgsearch_devstack import wait_batch
from imgsearch_devstack.photos import load_photos
from tests.support import odd_images as odd
from tests.support.inprocess import InProcessStack

pytestmark = [pytest.mark.slow]

COLLECTION = "uploadcorpus"
#: Longest one request may take (a search on this CPU takes about a second).
PROMPT_S = 60.0
#: A search with the reference must find the file at least this similar: a near copy
#: (re-encodings score about 0.99 with the test weights; a wrongly decoded file far less).
NEAR_COPY = 0.95
#: Address-space limit of the subprocess that prepares extreme images (bytes).
LITTLE_MEMORY = 1_000_000_000


@dataclass(frozen=True)
class Odd:
    label: str
    data: bytes
    #: The file name sent, as raw bytes of the multipart header.
    filename: bytes = b"x.png"
    #: Hostile: ``(status, code)`` of the upload's answer. None: a valid image.
    refused: tuple[int, str] | None = None
    #: Valid: what a person sees in the file.
    reference: Image.Image | None = None

    @property
    def image_id(self) -> str:
        return image_id(content_hash(self.data))


#: The parts of a photo the pictures are cut from, in turn: the whole, then its quarters.
_PARTS = ((0, 0, 1, 1), (0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1), (0.5, 0, 1, 0.5), (0, 0.5, 0.5, 1))


def _pictures() -> Iterator[Image.Image]:
    """Distinct small pictures (parts of the real photos), endlessly."""
    photos = [p.convert("RGB") for p in load_photos().values()]
    n = 0
    while True:
        photo = photos[n % len(photos)]
        x0, y0, x1, y1 = _PARTS[(n // len(photos)) % len(_PARTS)]
        w, h = photo.size
        part = photo.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))
        yield part.resize((64, 48), Image.Resampling.BICUBIC)
        n += 1


def _hostile(pic: Image.Image) -> list[Odd]:
    jpg = odd.encode(pic, "JPEG", quality=90)
    png = odd.encode(pic, "PNG")
    webp = odd.encode(pic, "WEBP")
    gif = odd.encode(pic, "GIF")
    unsupported = (415, "unsupported_image")
    corrupt = (422, "corrupt_image")
    too_large = (413, "image_too_large")
    return [
        Odd("empty", b"", refused=(400, "empty_input")),
        Odd("truncated JPEG", jpg[: len(jpg) // 3], b"t.jpg", corrupt),
        Odd("truncated PNG", png[: len(png) // 2], b"t.png", corrupt),
        Odd("truncated WebP", webp[: len(webp) // 2], b"t.webp", corrupt),
        Odd("truncated GIF", gif[: len(gif) // 2], b"t.gif", corrupt),
        Odd("GIF cut inside its header", gif[:20], b"t.gif", unsupported),
        Odd(
            "PNG with a broken CRC",
            png[:29] + b"\x00\x00\x00\x00" + png[33:],
            b"c.png",
            unsupported,
        ),
        Odd("SVG with an external entity (XXE)", odd.SVG_XXE, b"x.svg", unsupported),
        Odd("SVG named .png", odd.SVG_XXE, b"x.png", unsupported),
        Odd("XML billion laughs", odd.XML_LAUGHS, b"x.xml", unsupported),
        Odd("HTML named .gif", odd.HTML, b"x.gif", unsupported),
        Odd("a ZIP", odd.ZIP_TRAILER, b"x.zip", unsupported),
        Odd("PSD", odd.psd(), b"x.psd", unsupported),
        Odd("ICO", odd.encode(pic, "ICO"), b"x.ico", unsupported),
        Odd("TGA", odd.encode(pic, "TGA"), b"x.tga", unsupported),
        Odd("TIFF declaring 65535 IFD entries", odd.tiff_huge_ifd_count(), b"x.tif", unsupported),
        Odd("TIFF with 25000 junk tags", odd.tiff_many_junk_tags(), b"x.tif", corrupt),
        Odd("TIFF tag counting 2^31 values", odd.tiff_huge_tag_count(), b"x.tif", corrupt),
        Odd("PNG bomb 30000 x 30000", odd.png_bomb(30_000, 30_000), b"b.png", too_large),
        Odd("GIF with a 65535 x 65535 screen", odd.gif_huge_screen(), b"b.gif", too_large),
        Odd("TIFF bomb 100000 x 100000", odd.tiff_header(100_000, 100_000), b"b.tif", too_large),
        Odd("PNG with a 64 MB zTXt chunk", odd.png_with_text_bomb(pic), b"z.png", corrupt),
    ]


def _valid(pictures: Iterator[Image.Image]) -> list[Odd]:
    def case(
        label: str,
        make: Callable[[Image.Image], bytes],
        filename: bytes = b"x.png",
        seen: Callable[[Image.Image], Image.Image] = lambda pic: pic,
    ) -> Odd:
        pic = next(pictures)
        return Odd(label, make(pic), filename, reference=seen(pic))

    return [
        case("PNG named .jpg", lambda p: odd.encode(p, "PNG"), b"x.jpg"),
        case("JPEG named .gif", lambda p: odd.encode(p, "JPEG", quality=92), b"x.gif"),
        case("WebP named .txt", lambda p: odd.encode(p, "WEBP", lossless=True), b"x.txt"),
        case("GIF+JS polyglot", lambda p: odd.encode(p, "GIF") + odd.JS_TRAILER, b"x.gif"),
        case("PNG with a ZIP appended", lambda p: odd.encode(p, "PNG") + odd.ZIP_TRAILER),
        case("CMYK JPEG", lambda p: odd.encode(p.convert("CMYK"), "JPEG", quality=95), b"c.jpg"),
        case("16-bit grey PNG", odd.png16_grey, seen=lambda p: p.convert("L").convert("RGB")),
        case("48-bit RGB PNG", odd.png16_rgb),
        case("animated GIF", lambda p: odd.animated_gif([p, p.rotate(90), p.rotate(180)])),
        case("APNG", lambda p: odd.apng([p, p.rotate(90), p.rotate(180)])),
        case("progressive JPEG", lambda p: odd.encode(p, "JPEG", progressive=True), b"p.jpg"),
        case("palette PNG of 64 colours", lambda p: odd.encode(p.quantize(64), "PNG")),
        case(
            "palette PNG with a transparent colour",
            lambda p: odd.encode(p.quantize(64), "PNG", transparency=0),
            seen=lambda p: _on_white(p.quantize(64), 0),
        ),
        case("multi-page TIFF", lambda p: odd.encode(p, "TIFF", save_all=True, append_images=[p])),
        case("ICC profile garbage", odd.png_with_icc_garbage),
        case(
            "EXIF with 64000 bytes of garbage",
            lambda p: odd.jpeg_with_app1(p, b"Exif\x00\x00" + bytes(range(256)) * 250),
            b"e.jpg",
        ),
        case(
            "EXIF orientation 9",
            lambda p: odd.jpeg_with_app1(p, odd.exif_tiff([(0x0112, 3, 1, b"\x09\x00")])),
            b"e.jpg",
        ),
        case(
            "EXIF orientation as ASCII",
            lambda p: odd.jpeg_with_app1(p, odd.exif_tiff([(0x0112, 2, 2, b"6\x00")])),
            b"e.jpg",
        ),
        case(
            "EXIF description counting 2^31 characters",
            lambda p: odd.jpeg_with_app1(
                p, odd.exif_tiff([(0x010E, 2, 0x7FFFFFFF, struct.pack("<I", 100))])
            ),
            b"e.jpg",
        ),
        *(
            case(f"EXIF orientation {k}", lambda p, k=k: odd.exif_oriented_jpeg(p, k), b"o.jpg")
            for k in range(1, 9)
        ),
        _as_png("1 x 1", Image.new("RGB", (1, 1), (9, 99, 199))),
    ]


def _on_white(palette: Image.Image, index: int) -> Image.Image:
    """``palette`` as a viewer shows it with colour ``index`` transparent: white there."""
    mask = Image.fromarray(((np.asarray(palette) != index) * 255).astype(np.uint8))
    shown = Image.new("RGB", palette.size, (255, 255, 255))
    shown.paste(palette.convert("RGB"), mask=mask)
    return shown


def _as_png(label: str, pic: Image.Image, filename: bytes = b"x.png") -> Odd:
    return Odd(label, odd.encode(pic, "PNG"), filename, reference=pic)


def _strip(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    """An extreme strip: ``color`` ramping from dark to light along its length."""
    ramp = Image.linear_gradient("L")  # dark at the top, light at the bottom
    if size[0] > size[1]:
        ramp = ramp.transpose(Image.Transpose.TRANSPOSE)
    ramp = ramp.resize(size)
    return Image.merge("RGB", [ramp.point(lambda v, c=c: v * c // 255) for c in color])


#: Sizes of the extreme strips, each in a colour of its own (their centres, which the
#: model sees, must tell them apart).
EXTREME = [
    ((1, 65535), (255, 40, 40)),
    ((65535, 1), (40, 255, 40)),
    ((3, 40000), (40, 40, 255)),
    ((16, 65535), (255, 255, 40)),
]


def _extreme() -> list[Odd]:
    return [_as_png(f"{w} x {h}", _strip((w, h), color)) for (w, h), color in EXTREME]


def _named(pictures: Iterator[Image.Image]) -> list[tuple[Odd, str]]:
    """Valid images under hostile file names, and the name the index must show."""
    names: list[tuple[bytes, str]] = [
        (b"../../../../etc/cron.d/x.png", "x.png"),
        (b"..\\..\\windows\\system32\\x.png", "..\\..\\windows\\system32\\x.png"),
        (b"/var/www/html/x.png", "x.png"),
        (b"a\x00b.png", "a\x00b.png"),
        (b"x" * 4000 + b".png", "x" * 4000 + ".png"),
        ("фото 😀.png".encode(), "фото 😀.png"),
        (b"x.png;.php", "x.png;.php"),
        (b"x.php%00.png", "x.php%00.png"),
        (b"%2e%2e%2fx.png", "%2e%2e%2fx.png"),
        (b".png", ".png"),
        (b"CON.png", "CON.png"),
    ]
    return [
        (_as_png(f"file name {raw[:40]!r}", next(pictures), raw), shown) for raw, shown in names
    ]


@pytest.fixture(scope="module")
def client(inprocess: InProcessStack) -> Iterator[httpx.Client]:
    with inprocess.client(timeout=PROMPT_S) as c:
        yield c


@pytest.fixture(scope="module")
def pictures() -> Iterator[Image.Image]:
    return _pictures()


def _post(client: httpx.Client, url: str, body: bytes, content_type: str) -> httpx.Response:
    """The answer to a POST; a 500 when the app raised (in this process the transport
    re-raises what a server would have answered with a 500), naming the exception."""
    try:
        return client.post(url, content=body, headers={"Content-Type": content_type})
    except httpx.TimeoutException:
        raise
    except Exception as exc:
        return httpx.Response(500, text=f"the app raised {type(exc).__name__}: {exc}")


def _post_files(client: httpx.Client, case: Odd) -> httpx.Response:
    body, content_type = odd.multipart([(case.filename, case.data)], [("collection", COLLECTION)])
    return _post(client, "/api/index/upload", body, content_type)


def _search(
    client: httpx.Client, data: bytes, filename: bytes = b"q", **form: str
) -> httpx.Response:
    fields = [("collection", COLLECTION), ("limit", "3"), *form.items()]
    body, content_type = odd.multipart([], fields)
    # by-image takes one file, in the field "file".
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    boundary = content_type.split("boundary=")[1].encode()
    part = b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n"
    return _post(client, "/api/search/by-image", part + body, content_type)


def _error_shape(r: httpx.Response) -> str | None:
    """The error code of a 4xx in our shape; None if the answer is not one."""
    if not 400 <= r.status_code < 500:
        return None
    try:
        body = r.json()
    except ValueError:
        return None
    if set(body) != {"error"} or not body["error"].get("message"):
        return None
    return str(body["error"].get("code"))


def _stored_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_the_corpus_is_large(pictures: Iterator[Image.Image]) -> None:
    pic = next(pictures)
    hostile, valid = _hostile(pic), _valid(pictures)
    assert len(hostile) + len(valid) + len(_extreme()) + len(_named(pictures)) >= 50
    assert len({c.data for c in valid}) == len(valid)  # one image each


def test_hostile_files_are_refused_on_both_routes(
    client: httpx.Client, inprocess: InProcessStack, pictures: Iterator[Image.Image]
) -> None:
    uploads = inprocess.api_settings().uploads_path()
    before = _stored_files(uploads)
    cases = _hostile(next(pictures))
    wrong: list[str] = []
    for case in cases:
        assert case.refused is not None
        upload = _post_files(client, case)
        if (upload.status_code, _error_shape(upload)) != case.refused:
            wrong.append(f"upload {case.label}: {upload.status_code} {upload.text[:200]}")
        search = _search(client, case.data)
        if _error_shape(search) is None:
            wrong.append(f"by-image {case.label}: {search.status_code} {search.text[:200]}")
    assert wrong == [], f"{len(wrong)} of {2 * len(cases)} requests went wrong:\n" + "\n".join(
        wrong
    )
    assert _stored_files(uploads) - before == set()  # nothing of them was kept


def _accepted_and_seen(
    client: httpx.Client, cases: list[Odd], *, itself: bool = True
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Upload each case, wait for its batch, search with its reference (full-image vectors
    only: does the index hold what a person sees?) and, with ``itself``, with the file
    (the query side's decoding of it; full-image vectors too, which keeps the file's time
    under a minute here: re-scoring, which reads stored files back, runs in the searches
    with every option of :func:`test_extreme_aspect_ratios_are_accepted_and_seen`, over
    this collection): what went wrong, and each case's first result of the search by its
    reference."""
    wrong: list[str] = []
    tops: dict[str, dict[str, Any]] = {}
    batches: dict[str, str] = {}
    for case in cases:
        r = _post_files(client, case)
        if r.status_code != 202:
            wrong.append(f"upload {case.label}: {r.status_code} {r.text[:200]}")
        else:
            batches[case.label] = r.json()["batch_id"]
    indexed = []
    # Every batch first: searches while the workers index compete with them for the CPU.
    for case in cases:
        if case.label not in batches:
            continue
        status = wait_batch(client, batches[case.label], timeout=180)
        if (status.done, status.failed) != (1, 0):
            wrong.append(f"indexing {case.label}: {status.model_dump_json()[:300]}")
        else:
            indexed.append(case)
    for case in indexed:
        assert case.reference is not None
        searches = [
            ("reference", odd.encode(case.reference, "PNG"), {"use_partial_matching": "false"})
        ]
        if itself:
            searches.append(("itself", case.data, {"use_partial_matching": "false"}))
        for what, query, form in searches:
            r = _search(client, query, case.filename, **form)
            results = r.json().get("results", []) if r.status_code == 200 else []
            top: dict[str, Any] = results[0] if results else {}
            if top.get("id") != case.image_id or top["score"] < NEAR_COPY:
                shown = top.get("score"), top.get("id")
                wrong.append(f"search by {what} {case.label}: {r.status_code} top {shown}")
                continue
            if what == "reference":
                tops[case.label] = top
            size = (top["metadata"]["width"], top["metadata"]["height"])
            if size != case.reference.size:
                wrong.append(f"size {case.label}: {size}, a viewer shows {case.reference.size}")
    return wrong, tops


def test_valid_odd_files_are_accepted_and_seen_as_they_are(
    client: httpx.Client, pictures: Iterator[Image.Image]
) -> None:
    cases = _valid(pictures)
    wrong, _ = _accepted_and_seen(client, cases)
    assert wrong == [], f"{len(wrong)} problems with {len(cases)} valid files:\n" + "\n".join(wrong)


#: Prepares the file named by argv[1] as the worker does for indexing and as the API does
#: for a query's views, with at most LITTLE_MEMORY bytes of address space.
_PREPARE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from imgsearch_common.imaging import model_input, open_image
from imgsearch_common.windows import WindowLayout
from imgsearch_worker.pipeline import prepare_image
path = sys.argv[1]
prepared = prepare_image(
    path, image_size=224, max_bytes=1 << 30, max_pixels=80_000_000, layout=WindowLayout()
)
assert prepared.pixels.shape[1:] == (224, 224, 3), prepared.pixels.shape
with open(path, "rb") as f:
    query = open_image(f.read()).decode_bounded(2048)
assert model_input(query, 224).shape == (224, 224, 3)
"""


def _prepare_in_little_memory(case: Odd, folder: Path) -> str | None:
    """Why preparing ``case`` failed in a subprocess of little memory (None: it did not)."""
    path = folder / "extreme.png"
    path.write_bytes(case.data)
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE.format(limit=LITTLE_MEMORY), str(path)],
        capture_output=True,
        text=True,
        timeout=PROMPT_S,
        check=False,
    )
    return None if done.returncode == 0 else f"{case.label}: {done.stderr[-600:]}"


@pytest.mark.parametrize("case", _extreme(), ids=lambda c: c.label.replace(" ", ""))
def test_an_extreme_aspect_ratio_is_prepared_in_little_memory(case: Odd, tmp_path: Path) -> None:
    """A 1 x 65535 PNG is a few hundred bytes; cut as the model wants it (the short side
    resized to 224 px, then the centre) it would be 224 x 14.7 million pixels, 13 GB."""
    assert _prepare_in_little_memory(case, tmp_path) is None


def test_extreme_aspect_ratios_are_accepted_and_seen(client: httpx.Client, tmp_path: Path) -> None:
    cases = _extreme()
    # Never into this process (and its workers) if it would need gigabytes.
    failed = [f for f in (_prepare_in_little_memory(c, tmp_path) for c in cases) if f]
    assert failed == []
    wrong, _ = _accepted_and_seen(client, cases)
    # And through every step a query may take: text removal, enhancement, query windows.
    for case in cases:
        options = {"remove_text": "true", "enhance_image": "true", "match_mode": "auto"}
        r = _search(client, case.data, **options)
        if r.status_code != 200 or r.json()["results"][0]["id"] != case.image_id:
            wrong.append(f"search with every option {case.label}: {r.status_code} {r.text[:200]}")
    assert wrong == [], f"{len(wrong)} problems with {len(cases)} extreme images:\n" + "\n".join(
        wrong
    )


def test_hostile_file_names_are_only_names(
    client: httpx.Client, inprocess: InProcessStack, pictures: Iterator[Image.Image]
) -> None:
    """The name a file is uploaded under is shown as its name (its last component) and
    picks no more than the stored copy's extension: the copy lies in the upload folder,
    named by its content."""
    uploads = inprocess.api_settings().uploads_path()
    named = _named(pictures)
    wrong, tops = _accepted_and_seen(client, [case for case, _ in named], itself=False)
    for case, shown in named:
        top = tops.get(case.label)
        if top is not None and top["metadata"]["filename"] != shown:
            wrong.append(f"{case.label}: shown as {top['metadata']['filename'][:80]!r}")
        sha = content_hash(case.data)
        if not list((uploads / sha[:2]).glob(f"{sha}.*")):
            wrong.append(f"{case.label}: no copy in the upload folder")
    assert wrong == [], f"{len(wrong)} problems with {len(named)} file names:\n" + "\n".join(wrong)
