"""What a result is to its query, and the one box a page draws: the rule, in one place.

- ``same`` (image queries only): the result is the query's picture (the file itself, or
  a copy re-encoded, resized or converted). The model's full-image score must reach
  :data:`SAME_MIN_FULL` **and** the pixel signatures must agree, as the duplicate finder's
  near-duplicate check makes them agree (``duplicate_checks.near_checks``: same aspect
  ratio, grey levels and their gradients correlated on the 32 x 32 thumbnails). The
  model alone cannot tell: with random weights, different pictures reach 0.997 (measured
  below), and the signatures alone call the light and dark versions of one wallpaper the
  same. A point without a signature (indexed before them) is never ``same``.
  ``best_box``: the whole image, with the full-image score.
- ``contains_query``: the result's score is a region's (a window, or stage two's box, beat
  the whole image), the region is strictly smaller than the image, and, for an image
  query, stage two found the query's pixels there (``Rescore.verified``: the duplicate
  finder's crop check). A text query has no pixels: the region must reach
  :data:`TEXT_REGION_MIN` and beat the whole image by :data:`TEXT_REGION_GAIN`.
  ``best_box``: that region.
- ``in_query``: a ``contains`` match (the result appears inside the query) that stage two
  found in the query's pixels. ``best_box``: the part of the result the query shows.
- ``similar``: anything else; ``best_box`` is None (no outline on an unrelated result).

Measured (random weights, ``CLIP_PRETRAINED=random``, the default onnx engine; 39 indexed
pictures: the scikit-image and scikit-learn photos, 14 GNOME wallpapers at 2048 px, and a
stereo photo whose other view was a query; each picture queried as its own file, as
JPEG q85, at half size, as PNG, and as a 15 % crop). Full-image score of the query's own
picture: min 0.9979 (half size), 0.9990 (JPEG q85, the file itself), 0.9998 (PNG); of
every other picture: median 0.57, 99th percentile 0.9945, max 0.9973 (a near-flat
256 px wallpaper against a microscope image). Signature check: every copy passed
(grey correlation >= 0.978, gradients >= 0.952); of 5 967 pairs of different pictures,
16 passed, all light/dark versions of one wallpaper, whose full scores were 0.13-0.22.
Both together: every copy ``same``, no different picture ``same``. The crop check of
``contains_query``: 34 of 39 crops verified in their parent (the misses: flat and
line-art wallpapers, a clock), 4 of 1 482 other pictures (light/dark wallpaper twins);
of 24 collages holding a picture, 17 verified, 1 of 912 other pictures.
``SAME_MIN_FULL`` sits well under the copies' 0.998 because real weights score copies
lower than random ones do (a half-size copy: about 0.95-0.99); the pixels decide.
"""

from __future__ import annotations

from collections.abc import Mapping

from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import MatchedBox, ResultKind
from imgsearch_common.signatures import PixelSignature
from imgsearch_common.windows import Box

from ..duplicate_checks import ThumbTable, near_checks
from .aggregation import RankedImage
from .query import PreparedQuery

#: Least full-image score of a ``same`` result (see the module's measurements).
SAME_MIN_FULL = 0.95
#: A text query's ``contains_query`` region must score at least ``TEXT_REGION_MIN`` and
#: beat the whole image by ``TEXT_REGION_GAIN``: some window of almost any picture beats
#: the whole by a little. Measured with random weights: text scores are noise within about
#: +-0.05 (a window at 0.027 beat its image's -0.030), and without the floor every result
#: was outlined. Chosen, not measured (no real weights here): CLIP ViT-B-32 gives text
#: that matches a picture cosines of about 0.25-0.35, and a region holding the thing named
#: gains a few hundredths over the whole picture.
TEXT_REGION_MIN = 0.2
TEXT_REGION_GAIN = 0.02


def same_images(
    query: PreparedQuery | None,
    ranked: Mapping[str, RankedImage],
    payloads: Mapping[str, ImagePayload],
) -> set[str]:
    """The ids of ``ranked`` that are the query's picture (``same``): a full-image score
    of at least ``SAME_MIN_FULL`` and pixel signatures that pass the near-duplicate check.
    None for a text query."""
    if query is None or query.signature is None:
        return set()
    ids: list[str] = []
    signatures: list[PixelSignature] = [query.signature]
    sizes = [query.original_size or query.size]
    for image_id, r in ranked.items():
        payload = payloads.get(image_id)
        if r.full_score is None or r.full_score < SAME_MIN_FULL or payload is None:
            continue
        signature = PixelSignature.decode(payload.signature)
        if signature is None or payload.size is None:
            continue
        ids.append(image_id)
        signatures.append(signature)
        sizes.append(payload.size)
    if not ids:
        return set()
    checks = near_checks(ThumbTable.of(signatures, sizes), [(0, i + 1) for i in range(len(ids))])
    return {ids[c.j - 1] for c in checks if c.passed}


def result_kind(
    r: RankedImage, size: tuple[int, int] | None, *, same: bool, text_query: bool
) -> tuple[ResultKind, MatchedBox | None]:
    """The kind of ``r`` (a picture of ``size``) and its best box; ``same``: it passed
    :func:`same_images`."""
    if same and r.full_score is not None and size is not None:
        return "same", MatchedBox(box=[0, 0, *size], score=round(r.full_score, 6))
    cont = r.contains
    if r.match_type == "contains" and cont is not None:
        if cont.verified:
            return "in_query", MatchedBox(box=list(cont.image_box), score=round(cont.score, 6))
        return "similar", None
    win = r.windows
    if win is None or not win.boxes or r.score != win.score:
        return "similar", None
    if text_query and win.score < TEXT_REGION_MIN:
        return "similar", None
    gain = TEXT_REGION_GAIN if text_query else 0.0
    beat = r.full_score is None or win.score > r.full_score + gain
    box, score = win.boxes[0]
    if beat and _smaller(box, size) and (text_query or win.verified):
        return "contains_query", MatchedBox(box=list(box), score=round(score, 6))
    return "similar", None


def _smaller(box: Box, size: tuple[int, int] | None) -> bool:
    """Whether ``box`` is strictly smaller than the whole image of ``size``."""
    if size is None:
        return True
    w, h = size
    return (box[2] - box[0]) * (box[3] - box[1]) < w * h
