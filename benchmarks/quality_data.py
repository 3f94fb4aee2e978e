"""Photos and queries of the quality benchmark (``benchmarks.quality``).

Photos: the ones scikit-image and scikit-learn ship in their wheels
(``imgsearch_devstack.photos``), plus Debian's ``gnome-backgrounds`` and
``mate-backgrounds`` packages, fetched with ``apt-get download`` and unpacked with
``dpkg -x`` into a cache. Every photo is decoded the way the engine decodes it
(``imaging.decode_image``: transparency flattened onto white), featureless ones (a few
wallpapers are transparent overlays that flatten to plain white) and duplicate sizes of
one wallpaper are dropped, and the rest are downscaled to ``max_side`` on the long side.

Queries have a known right answer and a fixed seed per family:

- ``full``: the whole image, rotated ±5°, 90 % centre crop, resized to 50 %, colour jitter,
  JPEG quality 60;
- ``partial``: crops of 5, 10, 25 and 50 % of the area at random positions and aspect ratios
  (1:2 to 2:1), JPEG quality 75; the true box is known;
- ``contains``: an indexed image scaled down and pasted into a larger unrelated canvas (a
  synthetic screenshot or a collage of photos that are not indexed); the pasted box is known;
- ``distractor``: photos that are not indexed (whole, and 25 % / 10 % crops): any result above
  the no-match threshold is a false match.
"""

from __future__ import annotations

import io
import logging
import math
import random
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from imgsearch_common.imaging import decode_image

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

DEBIAN_PACKAGES = ("gnome-backgrounds", "mate-backgrounds")
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Wallpapers kept out of the index: distractors (unrelated to every indexed picture).
HELD_OUT_BACKGROUNDS = ("Aqua", "Garden", "Storm")
#: A photo whose mean per-channel standard deviation is below this is featureless.
MIN_PIXEL_STD = 6.0
#: Per-family seeds: the same queries on every run and in both modes.
SEEDS = {"full": 101, "partial": 202, "contains": 303, "distractor": 404}
PARTIAL_AREAS = (0.05, 0.10, 0.25, 0.50)


@dataclass
class PhotoSet:
    #: Indexed pictures, by name (file stem).
    indexed: dict[str, Image.Image]
    #: Pictures that are never indexed (distractor queries, collage canvases).
    distractors: dict[str, Image.Image]
    notes: list[str] = field(default_factory=list)


@dataclass
class Query:
    family: str
    #: Sub-family, e.g. ``"5%"`` for partial crops, ``"screenshot"`` for contains.
    group: str
    name: str
    data: bytes
    #: Name of the indexed picture that is the right answer (None: nothing should match).
    target: str | None
    #: Partial crops: the crop's true box in the target's pixels.
    box: Box | None = None
    #: Contains: where the target sits in the query's pixels.
    query_box: Box | None = None


# --- photos -------------------------------------------------------------------------------


def fetch_debian_backgrounds(cache: Path) -> Path | None:
    """Download and unpack the two wallpaper packages once; the unpacked root, or None.

    ``apt-get download`` needs the package lists (``apt-get update``) and network access to
    the Debian mirror; without them the benchmark runs on the wheel photos alone.
    """
    root = cache / "debian-root"
    marker = root / ".complete"
    if marker.exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        log.warning("apt-get/dpkg not found: no Debian wallpapers")
        return None
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        done = subprocess.run(  # noqa: S603 - fixed argument list
            ["apt-get", "download", *DEBIAN_PACKAGES],  # noqa: S607
            cwd=debs,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            break
        if attempt == 0:
            log.info("apt-get download failed (%s); running apt-get update", done.stderr.strip())
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)  # noqa: S607
    else:
        log.warning("apt-get download failed: %s", done.stderr.strip())
        return None
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)  # noqa: S603, S607
    marker.touch()
    return root


def wheel_photos() -> dict[str, Image.Image]:
    from imgsearch_devstack.photos import load_photos

    return {name: img.convert("RGB") for name, img in load_photos().items()}


def wheel_distractors() -> dict[str, Image.Image]:
    """Pictures in scikit-image's wheel that ``imgsearch_devstack.photos`` does not use."""
    import skimage.data

    def gray(arr: np.ndarray) -> Image.Image:
        a = np.asarray(arr, dtype=np.float64)
        a = (a - a.min()) / max(1e-9, float(a.max() - a.min())) * 255.0
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")

    faces = skimage.data.lfw_subset()[:60]  # 60 faces of 25x25 → a 6x10 contact sheet
    sheet = np.vstack([np.hstack(list(faces[r * 10 : (r + 1) * 10])) for r in range(6)])
    sheet_img = gray(sheet).resize((500, 300), Image.Resampling.BICUBIC)
    return {
        "motorcycle": Image.fromarray(skimage.data.stereo_motorcycle()[0]),
        "horse": gray(skimage.data.horse()),
        "phantom": gray(skimage.data.shepp_logan_phantom()),
        "faces": sheet_img,
    }


def _background_files(root: Path) -> list[Path]:
    files = sorted(
        p
        for p in (root / "usr/share/backgrounds").rglob("*")
        if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file()
    )
    stems = {p.stem for p in files}
    # "Elephants_3840x2160" is "Elephants" at another size: keep one.
    return [
        p
        for p in files
        if not (
            "_" in p.stem and p.stem.rsplit("_", 1)[0] in stems and "x" in p.stem.rsplit("_", 1)[1]
        )
    ]


def downscale(img: Image.Image, max_side: int) -> Image.Image:
    """At most ``max_side`` px on the long side (never enlarged)."""
    if max(img.size) <= max_side:
        return img
    out = img.copy()
    out.draft("RGB", (max_side, max_side))
    out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def _downscaled(path: Path, max_side: int, folder: Path) -> Image.Image:
    """``path`` decoded as the engine decodes it and downscaled, cached as PNG (decoding
    the 4096 px WebP wallpapers takes seconds each)."""
    cached = folder / f"{path.stem}.png"
    if cached.exists():
        with Image.open(cached) as img:
            return img.convert("RGB")
    small = downscale(decode_image(path.read_bytes(), max_pixels=200_000_000), max_side)
    folder.mkdir(parents=True, exist_ok=True)
    small.save(cached)
    return small


def featureless(img: Image.Image) -> bool:
    small = img.copy()
    small.thumbnail((256, 256))
    return float(np.asarray(small, dtype=np.float32).std(axis=(0, 1)).mean()) < MIN_PIXEL_STD


def load_photo_set(cache: Path, *, max_side: int, limit: int | None = None) -> PhotoSet:
    """The indexed photos and the distractors, downscaled; ``limit`` keeps a spread subset."""
    notes: list[str] = []
    indexed = wheel_photos()
    distractors = wheel_distractors()
    root = fetch_debian_backgrounds(cache)
    if root is None:
        notes.append("Debian wallpapers unavailable (apt-get download failed): wheel photos only")
    else:
        dropped = []
        for path in _background_files(root):
            img = _downscaled(path, max_side, cache / f"scaled-{max_side}")
            if featureless(img):
                dropped.append(path.name)
                continue
            (distractors if path.stem in HELD_OUT_BACKGROUNDS else indexed)[path.stem] = img
        if dropped:
            notes.append("featureless wallpapers dropped: " + ", ".join(sorted(dropped)))
    indexed = {name: downscale(img, max_side) for name, img in sorted(indexed.items())}
    distractors = {name: downscale(img, max_side) for name, img in sorted(distractors.items())}
    if limit is not None and limit < len(indexed):
        names = sorted(indexed)
        step = len(names) / limit
        indexed = {names[int(i * step)]: indexed[names[int(i * step)]] for i in range(limit)}
    return PhotoSet(indexed, distractors, notes)


def write_photos(photos: dict[str, Image.Image], folder: Path) -> dict[str, str]:
    """JPEG quality 95 files in ``folder``; name → file name."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, img in photos.items():
        fname = f"{name}.jpg"
        img.convert("RGB").save(folder / fname, quality=95)
        out[name] = fname
    return out


# --- queries ------------------------------------------------------------------------------


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def random_box(rng: random.Random, width: int, height: int, area: float) -> Box:
    """A box of ``area`` (fraction of the image) with a random aspect ratio and position."""
    target = area * width * height
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    w = min(width, max(8, round(math.sqrt(target * aspect))))
    h = min(height, max(8, round(target / w)))
    w = min(width, max(8, round(target / h)))
    x0 = rng.randint(0, width - w)
    y0 = rng.randint(0, height - h)
    return (x0, y0, x0 + w, y0 + h)


def full_queries(photos: dict[str, Image.Image], seed: int = SEEDS["full"]) -> list[Query]:
    rng = random.Random(seed)
    out = []
    for name, img in photos.items():
        angle = rng.uniform(-5.0, 5.0)
        q = img.rotate(angle, resample=Image.Resampling.BICUBIC)
        w, h = q.size
        cw, ch = round(w * 0.9), round(h * 0.9)
        left, top = (w - cw) // 2, (h - ch) // 2
        q = q.crop((left, top, left + cw, top + ch))
        q = q.resize((max(1, cw // 2), max(1, ch // 2)), Image.Resampling.BICUBIC)
        q = ImageEnhance.Brightness(q).enhance(rng.uniform(0.85, 1.15))
        q = ImageEnhance.Contrast(q).enhance(rng.uniform(0.85, 1.15))
        q = ImageEnhance.Color(q).enhance(rng.uniform(0.85, 1.15))
        out.append(Query("full", "full", f"full:{name}", jpeg(q, 60), name))
    return out


def partial_queries(
    photos: dict[str, Image.Image],
    *,
    per_area: int,
    areas: Iterable[float] = PARTIAL_AREAS,
    seed: int = SEEDS["partial"],
) -> list[Query]:
    rng = random.Random(seed)
    out = []
    for area in areas:
        group = f"{round(area * 100)}%"
        for name, img in photos.items():
            for k in range(per_area):
                box = random_box(rng, img.width, img.height, area)
                data = jpeg(img.crop(box), 75)
                out.append(Query("partial", group, f"partial:{group}:{name}:{k}", data, name, box))
    return out


def screenshot_canvas(rng: random.Random, width: int, height: int) -> Image.Image:
    """A plain desktop-application look: flat background, bars, panels and 'text' lines."""
    dark = rng.random() < 0.5
    bg = (32, 34, 38) if dark else (246, 246, 248)
    fg = (200, 200, 205) if dark else (60, 60, 70)
    canvas = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(canvas)
    accent = tuple(rng.randint(40, 220) for _ in range(3))
    draw.rectangle((0, 0, width, 36), fill=accent)
    side = rng.randint(160, 260)
    draw.rectangle((0, 36, side, height), fill=tuple(max(0, c - 14) for c in bg))
    for y in range(60, height - 20, 26):
        draw.rectangle((16, y, 16 + rng.randint(60, side - 40), y + 9), fill=fg)
    for y in range(70, height - 20, 22):
        x0 = side + 24
        draw.rectangle((x0, y, x0 + rng.randint(80, width - x0 - 24), y + 8), fill=fg)
    return canvas


def collage_canvas(
    rng: random.Random, width: int, height: int, pool: list[Image.Image]
) -> Image.Image:
    """An unrelated photo filling the canvas, with a second one pasted on a corner."""
    base, other = rng.sample(pool, 2)
    canvas = base.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    tw = rng.randint(width // 5, width // 3)
    th = max(1, round(tw * other.height / other.width))
    tile = other.convert("RGB").resize((tw, th), Image.Resampling.BICUBIC)
    canvas.paste(tile, (rng.choice([0, width - tw]), rng.choice([0, height - th])))
    return canvas


def contains_queries(
    photos: dict[str, Image.Image],
    canvases: dict[str, Image.Image],
    *,
    seed: int = SEEDS["contains"],
    size: tuple[int, int] = (1280, 800),
) -> list[Query]:
    """Each indexed picture pasted (long side 35–60 % of the canvas's) into a canvas."""
    rng = random.Random(seed)
    pool = list(canvases.values())
    width, height = size
    out = []
    for i, (name, img) in enumerate(photos.items()):
        kind = "screenshot" if i % 2 == 0 or len(pool) < 2 else "collage"
        canvas = (
            screenshot_canvas(rng, width, height)
            if kind == "screenshot"
            else collage_canvas(rng, width, height, pool)
        )
        frac = rng.uniform(0.35, 0.6)
        scale = min(frac * width / img.width, frac * height / img.height, 1.0)
        pw, ph = max(8, round(img.width * scale)), max(8, round(img.height * scale))
        x0, y0 = rng.randint(0, width - pw), rng.randint(0, height - ph)
        canvas.paste(img.resize((pw, ph), Image.Resampling.BICUBIC), (x0, y0))
        out.append(
            Query(
                "contains",
                kind,
                f"contains:{kind}:{name}",
                jpeg(canvas, 80),
                name,
                query_box=(x0, y0, x0 + pw, y0 + ph),
            )
        )
    return out


def distractor_queries(
    distractors: dict[str, Image.Image], *, seed: int = SEEDS["distractor"]
) -> list[Query]:
    """Each distractor whole (resized to 60 %) and as a 25 % and a 10 % crop."""
    rng = random.Random(seed)
    out = []
    for name, img in distractors.items():
        small = img.resize((max(1, img.width * 6 // 10), max(1, img.height * 6 // 10)))
        out.append(Query("distractor", "whole", f"distractor:whole:{name}", jpeg(small, 75), None))
        for area in (0.25, 0.10):
            box = random_box(rng, img.width, img.height, area)
            group = f"{round(area * 100)}%"
            data = jpeg(img.crop(box), 75)
            out.append(Query("distractor", group, f"distractor:{group}:{name}", data, None))
    return out
