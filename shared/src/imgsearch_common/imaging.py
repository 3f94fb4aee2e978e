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

Indexing needs far fewer pixels than a 12-megapixel photo has: every window ends up
``size`` px wide. :func:`open_image` + :meth:`OpenedImage.decode` let the caller ask for
"enough pixels that the smallest window keeps at least ``size`` px": a JPEG is then
decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (draft mode), which is several
times faster than a full decode and needs no resize. The decoded pixels are what every
crop is cut from, so the vectors still equal open_clip's own for those pixels.
:func:`prescale` optionally shrinks an image that is still much larger (PNG, WebP, huge
JPEGs) once, before its windows are cut; that changes crop pixels slightly (measured:
cosine >= 0.9999 against cutting from the decoded image; benchmarks/README.md).

Queries come from anyone, so :meth:`OpenedImage.decode_bounded` bounds what one costs: the
result's long side is at most ``max_side``, and a larger image never exists as a full-size
RGB copy. A JPEG is decoded at a reduced DCT scale; every other format can only be decoded
at full size in its own mode (1 byte a pixel for 1-bit, grey and palette images, 4 for
RGB), which is then reduced by an integer factor strip by strip before it becomes RGB.
``max_decoded_pixels`` refuses images whose full-size decode alone would cost too much.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from .errors import CorruptImage, EmptyInput, ImageTooLarge, UnsupportedImage
from .windows import Box

#: Formats Pillow may open. Everything else is refused before any parser runs.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: File extensions indexed by default when a folder is queued.
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
)  # fmt: skip
DEFAULT_MAX_PIXELS = 80_000_000


def dotted_extensions(values: Sequence[str]) -> list[str]:
    """``["jpg", " .PNG ", ""]`` -> ``[".jpg", ".PNG"]``: stripped, empty ones dropped, a
    leading dot added where missing. The case is kept: whether to lowercase is the caller's
    decision (the server matches file names case-insensitively)."""
    stripped = (value.strip() for value in values)
    return [value if value.startswith(".") else f".{value}" for value in stripped if value]


# A truncated file must fail loudly rather than decode as a partly grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False


#: EXIF orientations that swap width and height (rotations by 90 and 270 degrees).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
#: JPEG DCT scaling factors libjpeg offers (decoded size = ceil(size / factor)).
_JPEG_SCALES = (8, 4, 2, 1)
#: What undoes each EXIF orientation (as ``ImageOps.exif_transpose`` does).
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Modes that :meth:`OpenedImage.decode_bounded` reduces as they are (the others are
#: converted strip by strip, and only the reduced strips are kept).
_REDUCIBLE_MODES = ("L", "RGB")
#: 16-bit greyscale (PNG, TIFF): Pillow converts these to 8 bits by clipping at 255, not
#: by scaling, so a 16-bit picture would come out nearly white
#: (https://github.com/python-pillow/Pillow/issues/3011); :func:`_eight_bit` scales them.
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")
#: The model's view of an image longer than this many times its short side is resampled
#: from the part the centre crop keeps only (:func:`model_input`).
_WHOLE_RESIZE_MAX_ASPECT = 8
#: About this many bytes of converted pixels per strip.
_STRIP_BYTES = 4 * 1024 * 1024


@contextlib.contextmanager
def _decoding_errors() -> Iterator[None]:
    """Translate Pillow's many failure modes into our hierarchy."""
    try:
        with warnings.catch_warnings():
            # Pillow warns of metadata it skips (corrupt EXIF, tags larger than the file)
            # and decodes on: the pixels are not at fault, and what is accepted must not
            # depend on the process's warning filters (the tests make warnings errors).
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
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


class OpenedImage:
    """An image whose header was read and checked, not yet decoded.

    :attr:`size` is the size a person sees (EXIF orientation applied), known before any
    pixel is decoded, so window boxes can be placed first and the decode sized for them.
    """

    def __init__(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if not data:
            raise EmptyInput("the image is empty")
        with _decoding_errors():
            self._img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            width, height = self._img.size
            if width <= 0 or height <= 0:
                raise CorruptImage("the image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image has {width * height} pixels; the limit is {max_pixels}"
                )
            if self._img.format == "PNG":
                # Pillow's PNG getexif() decodes the whole image to look for an eXIf
                # chunk after the pixel data: a header check must not decode. What the
                # chunks before the pixel data say (where writers put eXIf) is used.
                exif = Image.Image.getexif(self._img)
            else:
                exif = self._img.getexif()
            orientation = exif.get(ExifTags.Base.Orientation, 1)
        self.format: str = self._img.format or ""
        self._orientation = orientation
        transposed = orientation in _TRANSPOSING_ORIENTATIONS
        self.size: tuple[int, int] = (height, width) if transposed else (width, height)

    def reduction_for(self, min_short_side: float) -> int:
        """The JPEG DCT scale :meth:`decode` would use: the largest of 1, 2, 4, 8 that
        keeps the short side at least ``min_short_side`` px (always 1 for other formats)."""
        if self.format != "JPEG" or min_short_side <= 0:
            return 1
        room = min(self.size) / min_short_side
        return next((s for s in _JPEG_SCALES if s <= room), 1)

    def decode(self, min_short_side: float = 0) -> Image.Image:
        """Decode to RGB with EXIF orientation applied.

        With ``min_short_side`` > 0 a JPEG is decoded at the smallest DCT scale whose
        short side is still at least that many px (other formats: full size). The result's
        size over :attr:`size` is the scale of the decoded pixels.
        """
        with _decoding_errors():
            scale = self.reduction_for(min_short_side)
            if scale > 1:
                width, height = self._img.size  # as stored (before orientation)
                self._img.draft(None, (width // scale, height // scale))
            self._img.load()
            # The orientation read with the header, so that the pixels match ``size``.
            img = self._oriented(self._img)
            if img.mode != "RGB":
                img = _to_rgb(img)
        return img

    def decoded_pixels(self, min_short_side: float = 0) -> int:
        """Pixels the decoder holds at once for :meth:`decode` at ``min_short_side``: the
        DCT-scaled size of a baseline JPEG, the full size of anything else (a progressive
        JPEG keeps the whole image's coefficients until its last scan)."""
        width, height = self.size
        scale = 1 if self._img.info.get("progressive") else self.reduction_for(min_short_side)
        return math.ceil(width / scale) * math.ceil(height / scale)

    def decode_bounded(
        self, max_side: int, min_short_side: float = 0, max_decoded_pixels: int | None = None
    ) -> Image.Image:
        """Decode to RGB with EXIF orientation applied and the long side at most
        ``max_side`` px, without ever holding a full-size RGB copy of a larger image.

        An image within ``max_side`` is :meth:`decode` d (``min_short_side`` as there). A
        larger JPEG is decoded at the smallest DCT scale that keeps ``min_short_side`` px
        on the short side (0: as many as the result will have), then shrunk; any other
        format is decoded in its own mode, reduced by an integer factor (converted to RGB
        strip by strip where its mode needs it) and shrunk to ``max_side`` (bicubic).
        :class:`ImageTooLarge` when the decode would hold more than ``max_decoded_pixels``
        pixels (:meth:`decoded_pixels`). The image is consumed: decode it once.
        """
        if max_side < 1:
            raise ValueError("max_side must be positive")
        width, height = self.size
        long_side = max(width, height)
        # No decode needs a short side larger than the result will have.
        room = min(width, height) * min(1.0, max_side / long_side)
        keep = min(min_short_side, room) if min_short_side > 0 else room
        if max_decoded_pixels is not None and self.decoded_pixels(keep) > max_decoded_pixels:
            raise ImageTooLarge(
                f"the image has {width * height} pixels; a query may decode at most "
                f"{max_decoded_pixels}"
            )
        if long_side <= max_side:
            return self.decode(min_short_side)
        # A JPEG is DCT-scaled (a fraction of the full size); the rest decoded whole.
        img = self.decode(keep) if self.format == "JPEG" else self._reduced(long_side // max_side)
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return img if img.mode == "RGB" else img.convert("RGB")

    def _reduced(self, factor: int) -> Image.Image:
        """The full-size decode reduced by ``factor`` (box filter), orientation applied,
        as L or RGB. Of the full size only the decoded image in its own mode is held."""
        with _decoding_errors():
            self._img.load()
            src = self._img
            if src.mode in _REDUCIBLE_MODES:
                small = src.reduce(factor) if factor > 1 else src
            else:
                # Converting first would make a full-size RGB copy: convert a strip at a
                # time, each a multiple of ``factor`` rows so the reduction's blocks never
                # straddle two strips (the result equals reducing the whole image).
                width, height = src.size
                rows = max(1, _STRIP_BYTES // (4 * width) // factor) * factor
                small = Image.new(
                    "L" if src.mode in ("1", "L") else "RGB",
                    (-(-width // factor), -(-height // factor)),  # as reduce() rounds
                )
                for top in range(0, height, rows):
                    strip = _flat(src.crop((0, top, width, min(height, top + rows))))
                    small.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
            if small is not src:
                src.close()  # the full-size pixels go now, not when the caller lets go
            return self._oriented(small)

    def _oriented(self, img: Image.Image) -> Image.Image:
        """``img`` turned as the orientation read with the header says (``img`` itself
        when it needs no turn), so that the pixels match :attr:`size`."""
        fix = _ORIENTATION_FIX.get(self._orientation)
        return img.transpose(fix) if fix is not None else img


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> OpenedImage:
    """Read and check the header (format, pixel count); decode later with ``decode``.

    Raises :class:`EmptyInput`, :class:`UnsupportedImage`, :class:`CorruptImage` or
    :class:`ImageTooLarge`.
    """
    return OpenedImage(data, max_pixels)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an RGB image with EXIF orientation applied, at full size.

    Raises :class:`EmptyInput`, :class:`UnsupportedImage`, :class:`CorruptImage`
    or :class:`ImageTooLarge`; never anything else for bad bytes.
    """
    return open_image(data, max_pixels).decode()


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit greyscale as 8-bit greyscale (each level's high byte); other modes as they
    are. ``I;16B`` and friends have no ``point``: they go through 32-bit ``I`` first."""
    if img.mode not in _SIXTEEN_BIT_GREY:
        return img
    return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white (what a viewer shows), then convert to RGB."""
    img = _eight_bit(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _flat(img: Image.Image) -> Image.Image:
    """``img`` as L (1-bit, grey: a quarter of RGB's memory) or as RGB on white."""
    img = _eight_bit(img)
    if img.mode in ("1", "L"):
        return img.convert("L")
    return _to_rgb(img)


def _shortest_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The size :func:`resize_shortest` gives a ``width`` x ``height`` image."""
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return width, height
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def resize_shortest(img: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is ``size`` px, bicubic — as torchvision's ``Resize(size)``."""
    new_size = _shortest_size(*img.size, size)
    if new_size == img.size:
        return img
    return img.resize(new_size, Image.Resampling.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to ``size`` x ``size`` — same rounding as torchvision's ``CenterCrop``."""
    width, height = img.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def model_input(img: Image.Image, size: int) -> np.ndarray:
    """open_clip's eval preprocessing up to uint8: ``(size, size, 3)`` uint8 RGB.

    An image longer than ``_WHOLE_RESIZE_MAX_ASPECT`` times its short side is not resized
    whole: a 1 x 65535 strip (a few hundred bytes of PNG) would become 224 x 14.7 million
    pixels, 13 GB. Only the part the centre crop keeps is resampled, at the same scale
    (``Image.resize(box=...)``); Pillow then runs its two passes over other pixels, so the
    result may differ from open_clip's by a few levels. Other images: open_clip's exactly.
    """
    width, height = img.size
    if max(width, height) > _WHOLE_RESIZE_MAX_ASPECT * min(width, height):
        out = _centre_view(img, size)
    else:
        out = center_crop(resize_shortest(img, size), size)
    arr = np.asarray(out.convert("RGB"), dtype=np.uint8)
    return arr


def _centre_view(img: Image.Image, size: int) -> Image.Image:
    """What ``center_crop(resize_shortest(img, size), size)`` shows, resampled from the
    part of ``img`` it covers."""
    width, height = img.size
    new_w, new_h = _shortest_size(width, height, size)
    left = round((new_w - size) / 2.0)
    top = round((new_h - size) / 2.0)
    fx, fy = width / new_w, height / new_h
    box = (left * fx, top * fy, (left + size) * fx, (top + size) * fy)
    return img.resize((size, size), Image.Resampling.BICUBIC, box=box)


def crops_to_model_inputs(img: Image.Image, boxes: Sequence[Box], size: int) -> np.ndarray:
    """Cut ``boxes`` from ``img`` and preprocess each: ``(len(boxes), size, size, 3)`` uint8."""
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = model_input(img.crop(box), size)
    return out


def scale_boxes(boxes: Sequence[Box], fx: float, fy: float) -> list[Box]:
    """Boxes in one image's pixels → the same boxes in a resized copy's pixels."""
    return [
        (round(x0 * fx), round(y0 * fy), round(x1 * fx), round(y1 * fy)) for x0, y0, x1, y1 in boxes
    ]


def prescale(img: Image.Image, short_side: int) -> Image.Image:
    """Shrink ``img`` once (bicubic) so its short side is ``short_side`` px; never enlarges.

    Cutting many windows from the shrunk image costs a fraction of resizing each window
    from full size. ``reducing_gap=3`` lets Pillow box-reduce by an integer factor first
    when the factor is large (Pillow documents the result as indistinguishable from a
    plain bicubic resize at that gap).
    """
    width, height = img.size
    short = min(width, height)
    if short <= short_side:
        return img
    factor = short_side / short
    size = (max(1, math.floor(width * factor + 0.5)), max(1, math.floor(height * factor + 0.5)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
