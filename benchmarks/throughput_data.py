"""Photos for the throughput benchmark: Debian's wallpaper packages, cached under DATA_DIR.

``apt-get download`` fetches the packages by name (no root needed for that step) and
``dpkg -x`` unpacks them; every unique JPEG, PNG and WebP of at least 0.2 megapixels is then
copied (by content hash, so the packages' many same-picture resolutions count once)
into ``<cache>/photos``. The skimage / scikit-learn photos the tests use are added as
small JPEGs, so the folder mixes 0.1 to 18 megapixels.

A machine without apt (the GPU device) gets the same folder carried in: point
``--photos DIR`` at it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

#: Wallpaper packages with large JPEGs (plasma: 5120x2880; mate: up to 5640x3172; ukui:
#: 3840x2400) and large WebP/PNG (gnome: 4096x4096 WebP).
PACKAGES = (
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
)
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
#: Wallpaper files under this many pixels are previews (plasma ships dozens of 400x250
#: screenshots); the test photos stand for the small pictures.
MIN_PIXELS = 200_000


@dataclass(frozen=True)
class Photo:
    path: Path
    format: str
    width: int
    height: int
    file_size: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def ensure_photos(cache: Path, *, log: bool = True) -> Path:
    """``<cache>/photos`` filled once; later calls reuse it."""
    folder = cache / "photos"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not any(debs.glob(f"{p}_*.deb"))]
    if missing:
        if shutil.which("apt-get") is None:
            raise RuntimeError(
                "apt-get is not available to fetch the wallpaper packages; "
                "pass --photos DIR with a folder of photos instead"
            )
        if log:
            print(f"fetching {', '.join(missing)} with apt-get download ...", flush=True)
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)  # noqa: S603,S607
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for deb in sorted(d for p in PACKAGES for d in debs.glob(f"{p}_*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), tmp], check=True)  # noqa: S603,S607
        _collect(Path(tmp), folder)
    _add_test_photos(folder)
    marker.touch()
    return folder


def _collect(src: Path, dst: Path) -> None:
    seen: set[str] = set()
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            with Image.open(path) as img:
                fmt, (w, h) = img.format, img.size
        except Exception:  # noqa: S112 - not an image (xml, svg, ...): skipped
            continue
        if fmt not in FORMATS or w * h < MIN_PIXELS:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        if digest in seen:
            continue
        seen.add(digest)
        name = f"{path.stem}-{w}x{h}-{digest}{FORMATS[fmt]}"
        shutil.copyfile(path, dst / name)


def _add_test_photos(dst: Path) -> None:
    try:
        from imgsearch_devstack.photos import load_photos
    except ImportError:  # skimage / sklearn absent (the device): wallpapers only
        return
    for name, img in load_photos().items():
        img.convert("RGB").save(dst / f"skimage-{name}.jpg", quality=92)


def list_photos(folder: Path, formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP")) -> list[Photo]:
    """Photos in ``folder`` of the given formats, sorted by name (a stable order)."""
    out = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            with Image.open(path) as img:
                fmt, (w, h) = img.format, img.size
        except Exception:  # noqa: S112
            continue
        if fmt in formats:
            out.append(Photo(path, str(fmt), w, h, path.stat().st_size))
    return out


def select(photos: list[Photo], limit: int | None) -> list[Photo]:
    """At most ``limit`` photos, spread evenly over the size range (small to 18 MP)."""
    if limit is None or limit >= len(photos):
        return photos
    by_size = sorted(photos, key=lambda p: (p.width * p.height, p.path.name))
    step = len(by_size) / limit
    return [by_size[int(i * step)] for i in range(limit)]


def describe(photos: list[Photo]) -> dict[str, object]:
    mp = sorted(p.megapixels for p in photos)
    formats: dict[str, int] = {}
    for p in photos:
        formats[p.format] = formats.get(p.format, 0) + 1
    return {
        "images": len(photos),
        "formats": formats,
        "megapixels_min": round(mp[0], 2) if mp else 0,
        "megapixels_median": round(mp[len(mp) // 2], 2) if mp else 0,
        "megapixels_max": round(mp[-1], 2) if mp else 0,
        "megapixels_total": round(sum(mp), 1),
        "at_least_12mp_jpeg": sum(1 for p in photos if p.format == "JPEG" and p.megapixels >= 12),
        "bytes_total": sum(p.file_size for p in photos),
    }


def export(photos: list[Photo], folder: Path, max_bytes: int) -> list[Photo]:
    """Copy a spread of ``photos`` (small to largest, large JPEGs kept) into ``folder``
    within ``max_bytes``: the folder carried to a machine without apt (the GPU device)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    big = [p for p in photos if p.format == "JPEG" and p.megapixels >= 12]
    big.sort(key=lambda p: p.file_size)
    others = select([p for p in photos if p not in big], 40)
    chosen: list[Photo] = []
    used = 0
    # Large JPEGs first, up to half the budget; then a spread of the others.
    for photo, budget in [*((p, max_bytes // 2) for p in big), *((p, max_bytes) for p in others)]:
        if used + photo.file_size <= budget:
            shutil.copyfile(photo.path, folder / photo.path.name)
            chosen.append(photo)
            used += photo.file_size
    return chosen


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput_data")
    parser.add_argument("--cache", type=Path, default=Path("data/bench/cache"))
    parser.add_argument("--export", type=Path, required=True, help="folder to fill")
    parser.add_argument("--max-mb", type=float, default=32.0)
    args = parser.parse_args(argv)
    photos = list_photos(ensure_photos(args.cache))
    chosen = export(photos, args.export, int(args.max_mb * 1024 * 1024))
    print(json.dumps(describe(chosen)))


if __name__ == "__main__":
    main()
