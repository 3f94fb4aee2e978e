"""Image decoding and model-input preprocessing.

Decoding is the first thing that touches untrusted bytes, so it is strict:

- only the formats in :data:`ALLOWED_FORMATS` are opened (Pillow otherwise
  tries dozens of parsers on whatever it is given);
- the pixel count is checked *before* the pixels are decoded (decompression
  bombs), and Pillow's own ``DecompressionBombWarning`` is turned into an error;
- truncated files are errors, not half-grey images;
- EXIF orientation is applied, so boxes refer to the image as a person sees it.

:func:`model_input` reproduces open_clip's eval ``preprocess`` up to the float
conversion (resize of the short side with bicubic filtering, centre crop) and
returns **uint8** pixels: that is what crosses the wire to the encoder, without
lossy re-encoding; the encoder only scales and normalises.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import CorruptImage, EmptyInput, ImageTooLarge, UnsupportedImage
from .windows import Box

#: Formats Pillow may open. Everything else is refused before any parser runs.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: File extensions indexed by default when a folder is queued.
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
)  # fmt: skip
DEFAULT_MAX_PIXELS = 80_000_000

# A truncated file must fail loudly rather than decode as a partly grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an RGB image with EXIF orientation applied.

    Raises :class:`EmptyInput`, :class:`UnsupportedImage`, :class:`CorruptImage`
    or :class:`ImageTooLarge`; never anything else for bad bytes.
    """
    if not data:
        raise EmptyInput("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            width, height = opened.size
            if width <= 0 or height <= 0:
                raise CorruptImage("the image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image has {width * height} pixels; the limit is {max_pixels}"
                )
            opened.load()
            img: Image.Image = ImageOps.exif_transpose(opened) or opened
            if img.mode != "RGB":
                img = _to_rgb(img)
    except (ImageTooLarge, CorruptImage):
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLarge("the image is too large to decode safely") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(
            "not an image, or not one of the supported formats: " + ", ".join(ALLOWED_FORMATS)
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        # Pillow reports truncated and malformed data with all of these.
        raise CorruptImage("the image data is truncated or corrupt") from exc
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white (what a viewer shows), then convert to RGB."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def resize_shortest(img: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is ``size`` px, bicubic — as torchvision's ``Resize(size)``."""
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return img
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    return img.resize((new_w, new_h), Image.Resampling.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to ``size`` x ``size`` — same rounding as torchvision's ``CenterCrop``."""
    width, height = img.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def model_input(img: Image.Image, size: int) -> np.ndarray:
    """open_clip's eval preprocessing up to uint8: ``(size, size, 3)`` uint8 RGB."""
    out = center_crop(resize_shortest(img, size), size)
    arr = np.asarray(out.convert("RGB"), dtype=np.uint8)
    return arr


def crops_to_model_inputs(img: Image.Image, boxes: Sequence[Box], size: int) -> np.ndarray:
    """Cut ``boxes`` from ``img`` and preprocess each: ``(len(boxes), size, size, 3)`` uint8."""
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = model_input(img.crop(box), size)
    return out
