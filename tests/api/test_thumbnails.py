"""Thumbnails (issue 12, item 1): ``GET /api/image/{id}/thumbnail?size=256|512``.

Real photos (scikit-image's), one pair indexed by the real workers through the in-process
stack, the others handed to a test app of their own through the internal hand-off with
the ids the workers give (the SHA-256 of the file's bytes), naming real files: what is
checked is the picture that comes back (its size, its orientation, its transparency, its
bytes), the caching (ETag, 304, the file under ``DATA_DIR/thumbnails``) and the bounds (a
burst of uncached thumbnails beside a search on a pool of one thread).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from imgsearch_api.admission import BoundedExecutor
from imgsearch_api.files import IndexedFiles
from imgsearch_api.thumbnails import (
    FORMAT_VERSION,
    MAX_BYTES,
    ThumbnailCache,
    Thumbnails,
    encode_webp,
    render,
)
from imgsearch_common.errors import NotFound, UpstreamUnavailable
from imgsearch_common.ids import content_hash, image_id
from imgsearch_common.imaging import open_image
from imgsearch_devstack import wait_batch
from imgsearch_devstack.photos import load_photos
from tests.support.handoff import forge, image_point
from tests.support.inprocess import InProcessStack, served

COLLECTION = "thumbs"
KEY = "thumbnail-test-key-3c1d"
#: The contract's bound (the browser test checks it too): 100 KB.
LIMIT = 100_000


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return load_photos()


def _id_of(path: Path) -> str:
    return image_id(content_hash(path.read_bytes()))


def _big_photo(photo: Image.Image, side: int = 4096, noise: float = 12.0) -> Image.Image:
    """``photo`` enlarged to ``side`` x ``side`` with sensor-like noise: a 16-megapixel
    picture whose detail does not all vanish when it is shrunk."""
    big = np.asarray(photo.convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    grain = np.random.default_rng(7).normal(0.0, noise, big.shape)
    return Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8))


def _cut_out(logo: Image.Image) -> Image.Image:
    """scikit-image's logo (opaque, on white) with its white made transparent."""
    rgb = np.asarray(logo.convert("RGB")).astype(int)
    alpha = np.where(rgb.min(axis=2) > 240, 0, 255).astype(np.uint8)
    out = logo.convert("RGBA")
    out.putalpha(Image.fromarray(alpha))
    return out


def _variant(photo: Image.Image, i: int, side: int) -> Image.Image:
    """``photo`` at ``side`` x ``side``, brightened by ``i`` levels: another picture."""
    arr = np.asarray(photo.convert("RGB").resize((side, side))).astype(int) + i
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _decoded(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"
    assert len(r.content) <= LIMIT, len(r.content)
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "WEBP"
    img.load()
    return img


def _code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


# --- through the real workers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(
    inprocess: InProcessStack,
    tmp_path_factory: pytest.TempPathFactory,
    photos: dict[str, Image.Image],
) -> Iterator[tuple[httpx.Client, dict[str, Path]]]:
    """A 2048 x 2048 JPEG and a 500 x 500 PNG with transparency, indexed as a folder by
    the in-process stack's workers."""
    folder = tmp_path_factory.mktemp("thumbnail-photos")
    files = {"big": folder / "astronaut.jpg", "logo": folder / "logo.png"}
    _big_photo(photos["astronaut"], 2048).save(files["big"], format="JPEG", quality=92)
    _cut_out(photos["logo"]).save(files["logo"])
    with inprocess.client() as client:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": COLLECTION})
        assert r.status_code == 202, r.text
        status = wait_batch(client, r.json()["batch_id"])
        assert (status.done, status.failed) == (2, 0), status
        yield client, files


@pytest.mark.slow
def test_an_indexed_photo_has_small_cached_thumbnails(
    inprocess: InProcessStack, indexed: tuple[httpx.Client, dict[str, Path]]
) -> None:
    client, files = indexed
    image = _id_of(files["big"])
    url = f"/api/image/{image}/thumbnail"
    for size in (256, 512):
        r = client.get(url, params={"size": size, "collection": COLLECTION})
        assert _decoded(r).size == (size, size)
        assert r.headers["etag"] == f'"{image}-{size}-v{FORMAT_VERSION}"'
        assert r.headers["cache-control"] == "private, max-age=86400"
        assert r.headers["x-content-type-options"] == "nosniff"
        cached = inprocess.data_dir / "thumbnails" / f"v{FORMAT_VERSION}" / image[:2]
        assert (cached / f"{image}-{size}.webp").read_bytes() == r.content
        # The same bytes again (from the cache), and a 304 without a body for its ETag.
        again = client.get(url, params={"size": size, "collection": COLLECTION})
        assert (again.status_code, again.content) == (200, r.content)
        for tag in (r.headers["etag"], f"W/{r.headers['etag']}", f'"other", {r.headers["etag"]}'):
            same = client.get(
                url, params={"size": size, "collection": COLLECTION}, headers={"If-None-Match": tag}
            )
            assert (same.status_code, same.content) == (304, b""), tag
            assert same.headers["etag"] == r.headers["etag"]
            assert same.headers["cache-control"] == "private, max-age=86400"
        stale = client.get(
            url, params={"size": size, "collection": COLLECTION}, headers={"If-None-Match": '"x"'}
        )
        assert (stale.status_code, stale.content) == (200, r.content)
    # The default size is the card's.
    assert _decoded(client.get(url, params={"collection": COLLECTION})).size == (256, 256)


@pytest.mark.slow
def test_transparency_is_kept(indexed: tuple[httpx.Client, dict[str, Path]]) -> None:
    client, files = indexed
    with Image.open(files["logo"]) as original:
        assert original.mode == "RGBA"
        alpha = np.asarray(original.getchannel("A"))
    r = client.get(
        f"/api/image/{_id_of(files['logo'])}/thumbnail",
        params={"size": 256, "collection": COLLECTION},
    )
    thumb = _decoded(r)
    assert thumb.mode == "RGBA" and thumb.size == (256, 256)
    got = np.asarray(thumb.getchannel("A")).astype(int)
    want = np.asarray(Image.fromarray(alpha).resize((256, 256), Image.Resampling.BOX)).astype(int)
    assert (got == 0).any() and (got == 255).any()
    assert np.abs(got - want).mean() < 8


@pytest.mark.slow
def test_an_unknown_collection_or_image_is_a_404(
    indexed: tuple[httpx.Client, dict[str, Path]],
) -> None:
    client, files = indexed
    image = _id_of(files["big"])
    r = client.get(f"/api/image/{image}/thumbnail", params={"collection": "thubms"})
    assert (r.status_code, _code(r)) == (404, "collection_not_found")
    assert repr(COLLECTION) in r.json()["error"]["message"]  # names the existing ones
    r = client.get(f"/api/image/{image}/thumbnail", params={"collection": "../etc"})
    assert (r.status_code, _code(r)) == (400, "invalid_collection")
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "%2e%2e", image + "0"):
        r = client.get(f"/api/image/{unknown}/thumbnail", params={"collection": COLLECTION})
        assert (r.status_code, _code(r)) == (404, "not_found"), unknown


# --- an app of their own ------------------------------------------------------------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    app: Any
    photos: Path
    data: Path

    async def add(self, name: str, img: Image.Image, **save: Any) -> str:
        """Save ``img`` as ``name`` under the served folder and index it (hand-off), with
        the id a worker gives it; its id."""
        path = self.photos / name
        img.save(path, **save)
        image = _id_of(path)
        r = await forge(self.client, COLLECTION, [image_point(image, path, COLLECTION)])
        assert r.status_code == 200, r.text
        return image

    async def thumbnail(self, image: str, size: int = 256, **params: Any) -> httpx.Response:
        return await self.client.get(
            f"/api/image/{image}/thumbnail",
            params={"size": size, "collection": COLLECTION, **params},
        )


def _settings(inprocess: InProcessStack, tmp_path: Path, **overrides: Any) -> Any:
    (tmp_path / "photos").mkdir(exist_ok=True)
    return inprocess.api_settings(
        data_dir=tmp_path / "data",
        index_roots=[tmp_path / "photos"],
        rescore_top_k=0,
        api_key=KEY,
        **overrides,
    )


@pytest.fixture
async def api(inprocess: InProcessStack, tmp_path: Path) -> AsyncIterator[Api]:
    app = inprocess.create_api(_settings(inprocess, tmp_path))
    async with served(app) as client:
        yield Api(client, app, tmp_path / "photos", tmp_path / "data")


async def test_the_long_side_is_the_size_the_aspect_kept_never_enlarged(
    api: Api, photos: dict[str, Image.Image]
) -> None:
    wide = await api.add("wide.jpg", photos["coffee"].resize((1200, 800)), quality=90)
    tall = await api.add("tall.png", photos["chelsea"].resize((500, 1000)))
    small = await api.add("small.png", photos["rocket"].resize((120, 80)))
    assert _decoded(await api.thumbnail(wide, 256)).size == (256, 171)
    assert _decoded(await api.thumbnail(wide, 512)).size == (512, 341)
    assert _decoded(await api.thumbnail(tall, 512)).size == (256, 512)
    assert _decoded(await api.thumbnail(small, 512)).size == (120, 80)
    # What it shows is the photo: close to the photo shrunk the same way.
    got = np.asarray(_decoded(await api.thumbnail(wide, 256)).convert("RGB")).astype(int)
    want = photos["coffee"].resize((1200, 800)).resize((256, 171), Image.Resampling.LANCZOS)
    assert np.abs(got - np.asarray(want.convert("RGB")).astype(int)).mean() < 6


@pytest.mark.parametrize("size", ["300", "0", "-256", "abc", "", "1e9", "256; 512"])
async def test_only_the_two_sizes(api: Api, photos: dict[str, Image.Image], size: str) -> None:
    image = await api.add("a.jpg", photos["coffee"])
    r = await api.client.get(
        f"/api/image/{image}/thumbnail", params={"size": size, "collection": COLLECTION}
    )
    assert (r.status_code, _code(r)) == (422, "validation_error"), r.text


async def test_exif_orientation_is_applied(api: Api) -> None:
    """Stored 600 x 300, left half red, right half blue, with orientation 6 (a camera
    held upright): a person sees it 300 x 600, turned a quarter clockwise, red on top."""
    stored = Image.new("RGB", (600, 300), (220, 20, 20))
    stored.paste((20, 20, 220), (300, 0, 600, 300))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = await api.add("upright.jpg", stored, format="JPEG", quality=95, exif=exif.tobytes())
    thumb = _decoded(await api.thumbnail(image, 256)).convert("RGB")
    assert thumb.size == (128, 256)
    top, bottom = thumb.getpixel((64, 40)), thumb.getpixel((64, 216))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (top, bottom)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_transparent_picture_is_turned_as_indexing_turns_it(fmt: str, orientation: int) -> None:
    """The transparent path decodes on its own (imaging.py flattens onto white): turned
    by each of the 8 EXIF orientations as imaging.py's view of it (what the boxes refer
    to), its transparent half kept."""
    stored = Image.new("RGBA", (600, 300), (220, 20, 20, 255))
    stored.paste((20, 20, 220, 0), (300, 0, 600, 300))
    stored.paste((20, 220, 20, 255), (0, 0, 100, 50))  # a corner: flips show
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(
        buf, format=fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {})
    )
    view = open_image(buf.getvalue()).decode()  # RGB, on white
    got = render(buf.getvalue(), 256, 10**8)
    assert got.mode == "RGBA" and max(got.size) == 256
    assert (got.size[0] > got.size[1]) == (view.size[0] > view.size[1])
    assert got.getchannel("A").getextrema() == (0, 255)
    on_white = Image.alpha_composite(Image.new("RGBA", got.size, "white"), got).convert("RGB")
    want = np.asarray(view.resize(got.size), dtype=int)
    assert np.abs(np.asarray(on_white, dtype=int) - want).mean() < 3


async def test_a_gif_with_a_transparent_colour_keeps_it(api: Api) -> None:
    img = Image.new("P", (400, 200), 0)
    img.putpalette([0, 0, 0, 250, 200, 10] + [0] * 762)
    img.paste(1, (200, 0, 400, 200))
    image = await api.add("half.gif", img, format="GIF", transparency=0)
    thumb = _decoded(await api.thumbnail(image, 256))
    assert thumb.mode == "RGBA" and thumb.size == (256, 128)
    alpha = thumb.getchannel("A")
    assert alpha.getpixel((40, 64)) == 0 and alpha.getpixel((216, 64)) == 255


async def test_a_huge_noisy_picture_still_fits_in_100_kb(
    api: Api, photos: dict[str, Image.Image]
) -> None:
    """4096 x 4096 of noise in 8-px blocks (it survives the shrinking: the worst a
    picture can do to WebP at 512 px), as JPEG and as PNG."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    noise = Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8)))
    cases = {
        "noise.jpg": (noise, {"quality": 95}),
        "noise.png": (noise, {"compress_level": 1}),
    }
    for name, (img, save) in cases.items():
        image = await api.add(name, img, **save)
        for size in (256, 512):
            r = await api.thumbnail(image, size)
            thumb = _decoded(r)  # within LIMIT
            assert len(r.content) <= MAX_BYTES <= LIMIT
            assert max(thumb.size) <= size and thumb.size[0] == thumb.size[1], name


def test_the_byte_bound_holds_for_the_worst_pictures() -> None:
    """Noise at the thumbnail's own resolution, with noisy transparency too: shrunk until
    it fits (a photo never gets there: 20-70 KB at the first quality)."""
    rng = np.random.default_rng(5)
    rgb = Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)))
    for img in (rgb, rgba):
        out = encode_webp(img)
        assert len(out) <= MAX_BYTES
        back = Image.open(io.BytesIO(out))
        assert back.mode == img.mode and 128 <= max(back.size) <= 512


async def test_a_missing_or_changed_file_is_a_404_not_a_stale_picture(
    api: Api, photos: dict[str, Image.Image]
) -> None:
    gone = await api.add("gone.jpg", photos["coffee"])
    changed = await api.add("changed.jpg", photos["chelsea"])
    (api.photos / "gone.jpg").unlink()
    photos["rocket"].save(api.photos / "changed.jpg")  # another picture under the name
    for image in (gone, changed):
        r = await api.thumbnail(image)
        assert (r.status_code, _code(r)) == (404, "not_found"), r.text
    assert not list(api.data.glob("thumbnails/**/*.webp"))
    # A cached thumbnail is not served once its file is gone either.
    kept = await api.add("kept.jpg", photos["astronaut"])
    assert (await api.thumbnail(kept)).status_code == 200
    (api.photos / "kept.jpg").unlink()
    assert (await api.thumbnail(kept)).status_code == 404


async def test_a_file_outside_the_served_folders_is_never_read(api: Api, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(outside)
    image = _id_of(outside)
    r = await forge(api.client, COLLECTION, [image_point(image, outside, COLLECTION)])
    assert r.status_code == 200, r.text
    r = await api.thumbnail(image)
    assert (r.status_code, _code(r)) == (404, "not_found")


async def test_a_broken_cache_file_is_made_again(api: Api, photos: dict[str, Image.Image]) -> None:
    image = await api.add("c.jpg", photos["coffee"])
    first = await api.thumbnail(image)
    path = api.data / "thumbnails" / f"v{FORMAT_VERSION}" / image[:2] / f"{image}-256.webp"
    path.write_bytes(first.content[: len(first.content) // 2])  # cut short by a crash
    again = await api.thumbnail(image)
    assert (again.status_code, again.content) == (200, first.content)
    assert path.read_bytes() == first.content
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


async def test_deleting_the_image_removes_its_thumbnails(
    api: Api, photos: dict[str, Image.Image]
) -> None:
    image = await api.add("d.jpg", photos["coffee"])
    for size in (256, 512):
        assert (await api.thumbnail(image, size)).status_code == 200
    folder = api.data / "thumbnails" / f"v{FORMAT_VERSION}" / image[:2]
    assert len(list(folder.iterdir())) == 2
    r = await api.client.delete(
        f"/api/images/{image}", params={"collection": COLLECTION}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 200, r.text
    assert list(folder.iterdir()) == []
    assert (await api.thumbnail(image)).status_code == 404


# --- bounds -----------------------------------------------------------------------------------


async def test_a_burst_of_uncached_thumbnails_leaves_room_for_searches(
    inprocess: InProcessStack, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    """One CPU thread: the pool holds 5 tasks, and takes more from nobody. Fifteen
    uncached thumbnails at once, and a search by image among them: the thumbnails are
    made one at a time, so every one is made, and the search's decoding finds room on
    the pool (without the bound, the burst overfilled it: 503 "CPU queue is full")."""
    settings = _settings(
        inprocess, tmp_path, cpu_threads=1, search_concurrency=1, search_queue_wait_s=60
    )
    app = inprocess.create_api(settings)
    async with served(app) as client:
        api = Api(client, app, tmp_path / "photos", tmp_path / "data")
        names = ["astronaut", "coffee", "chelsea", "rocket", "china"]
        ids = [
            await api.add(f"{n}-{i}.png", _variant(photos[n], i, 1024), compress_level=1)
            for i in range(3)
            for n in names
        ]
        query = io.BytesIO()
        photos["coffee"].save(query, format="PNG")

        async def search() -> httpx.Response:
            await asyncio.sleep(0.05)  # among the thumbnails, not before them
            files = {"file": ("q.png", query.getvalue(), "image/png")}
            return await client.post(
                "/api/search/by-image", files=files, data={"collection": COLLECTION}
            )

        answers = await asyncio.gather(*(api.thumbnail(i) for i in ids), search())
        statuses = [r.status_code for r in answers]
        assert statuses == [200] * len(answers), [r.text[:200] for r in answers if r.is_error]
        assert app.state.thumbnails.gate.idle


async def test_one_picture_asked_for_at_once_is_made_once(
    api: Api, photos: dict[str, Image.Image]
) -> None:
    writes: list[tuple[str, int]] = []

    class Counting(ThumbnailCache):
        def write(self, image: str, size: int, data: bytes) -> None:
            writes.append((image, size))
            super().write(image, size, data)

    thumbnails: Thumbnails = api.app.state.thumbnails
    thumbnails.cache = Counting(thumbnails.cache.folder)
    image = await api.add("once.png", _variant(photos["rocket"], 0, 1024), compress_level=1)
    answers = await asyncio.gather(*(api.thumbnail(image) for _ in range(8)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert writes == [(image, 256)]


async def test_beyond_the_line_a_thumbnail_is_refused_with_retry_after(
    tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    """One made at a time, none waiting: a second picture asked for meanwhile is a 503
    with ``Retry-After``; the first is made all the same."""
    folder = tmp_path / "photos"
    folder.mkdir()
    files = IndexedFiles.of([folder], tmp_path / "uploads")
    paths = []
    for n in ("astronaut", "chelsea"):
        path = folder / f"{n}.png"
        _variant(photos[n], 0, 1024).save(path, compress_level=1)
        paths.append(path)
    thumbnails = Thumbnails(
        ThumbnailCache(tmp_path / "cache"), max_pixels=80_000_000, concurrency=1, queue=0
    )
    pool = BoundedExecutor(1, 4)
    try:
        opened = [files.open(str(p)) for p in paths]
        pairs = zip(paths, opened, strict=True)
        asks = [thumbnails.get(_id_of(p), 256, o, pool) for p, o in pairs if o]
        answers = await asyncio.gather(*asks, return_exceptions=True)
        made = [a for a in answers if isinstance(a, bytes)]
        refused = [a for a in answers if isinstance(a, UpstreamUnavailable)]
        assert (len(made), len(refused)) == (1, 1), answers
        assert int(refused[0].headers["Retry-After"]) >= 1
        assert "thumbnails" in refused[0].message
    finally:
        pool.shutdown()


async def test_the_bytes_must_be_the_indexed_picture(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "a.png"
    Image.new("RGB", (32, 32), (9, 9, 9)).save(path)
    opened = IndexedFiles.of([folder], tmp_path / "up").open(str(path))
    assert opened is not None
    thumbnails = Thumbnails(ThumbnailCache(tmp_path / "cache"), max_pixels=10**6, concurrency=1)
    with ThreadPoolExecutor(1) as pool, pytest.raises(NotFound, match="changed since"):
        await thumbnails.get(image_id("0" * 64), 256, opened, pool)
    assert not (tmp_path / "cache").exists()
