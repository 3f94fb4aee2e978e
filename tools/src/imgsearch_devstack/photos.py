"""Real photographs for a local stack's tests and benchmarks: the ones scikit-image and
scikit-learn ship in their wheels (both are development requirements, imported only when
the photos are asked for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: skimage.data photographs (and two graphics), by loader name.
SKIMAGE_NAMES = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
    "text", "microaneurysms", "colorwheel", "logo",
)  # fmt: skip


def load_photos() -> dict[str, Image.Image]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos: dict[str, Image.Image] = {}
    for name in SKIMAGE_NAMES:
        arr = np.asarray(getattr(skimage.data, name)())
        photos[name] = Image.fromarray(arr)
    sample = load_sample_images()
    for fname, arr in zip(sample.filenames, sample.images, strict=True):
        photos[Path(fname).stem] = Image.fromarray(arr)
    return photos


def write_photos(folder: Path) -> dict[str, Path]:
    """Write every photo to ``folder`` (JPEG for photos, PNG for graphics); name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, img in load_photos().items():
        if img.mode in ("RGBA", "LA", "P") or name in ("colorwheel", "logo"):
            path = folder / f"{name}.png"
            img.save(path)
        else:
            path = folder / f"{name}.jpg"
            img.convert("RGB").save(path, quality=92)
        out[name] = path
    return out
