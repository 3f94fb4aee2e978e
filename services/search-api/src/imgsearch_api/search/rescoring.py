"""Stage two: re-scoring the best pictures on freshly cut boxes.

Indexed windows are coarse (at most ``MAX_WINDOWS`` per picture): a small crop only
half-fills its best window, and on a 2-core CPU there is no budget for the hundreds of
windows that would fit it. So, for each of the top ``RESCORE_TOP_K`` pictures of an image
query, the query is *located* in it (``locate.locate``: pixel correlation over sizes, then
a finer pass), the box found is cut from the picture's file, and all these boxes go to the
encoder in one call. A box that beats the picture's first-stage score replaces it, and
becomes the matched box. For a ``contains`` match it is the other way round: the picture
is located in the query, and the query's crop there is compared with the picture's own
view. The model decides, the correlation only proposes: a query that is not a copy of part
of a picture (another photo of the same thing) gets a poor box whose score loses to the
first stage's. When the located box wins and beats the first stage, it is then *verified*
in the pixels as the duplicate finder verifies a crop (``duplicate_checks.locate_crop``:
grey levels and their gradients at the box), which is what lets a result say "contains
your query" (``kinds``): the model's scores alone cannot (random weights give unrelated
pictures' windows 0.99). ``RESCORE_FRACTIONS`` adds boxes of the query's shape centred on
the best window. A picture whose file cannot be read (moved, or a server without the
files) keeps its first-stage score, and so does one whose file the API may not read (outside
``INDEX_ROOTS`` and the upload folder, or not a regular file: ``imgsearch_api.files``).

Cutting runs in the search API's thread pool, one picture per task.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.errors import ImgSearchError
from imgsearch_common.imaging import crops_to_model_inputs, model_input, open_image, scale_boxes
from imgsearch_common.payloads import ImagePayload
from imgsearch_common.windows import Box, box_iou, refine_boxes

from ..duplicate_checks import grey_copy, locate_crop
from ..files import IndexedFiles
from .aggregation import RankedImage, Rescore, clip_box
from .locate import locate
from .query import PreparedQuery

log = logging.getLogger(__name__)

#: Largest picture file re-scoring reads.
RESCORE_MAX_FILE_BYTES = 200 * 1024 * 1024
#: Re-scoring decodes JPEGs at a reduced scale that keeps this short side (a crop of 5 %
#: of the area then still has about 224 px).
RESCORE_DECODE_SIDE = 1024
#: A verified box: where the pixel check found the query (or the picture) overlaps the
#: re-scored box by at least this much.
VERIFY_MIN_IOU = 0.5


@dataclass
class CandidateBoxes:
    """The boxes stage two scores for one picture, as model inputs."""

    image_id: str
    #: Window matches: one model input per box. Contains: the picture's view, then one
    #: query crop per box.
    pixels: np.ndarray
    #: The picture's pixels each candidate stands for.
    boxes: list[Box]
    #: Contains: where the picture lies in the query, per candidate.
    query_boxes: list[Box]
    contains: bool = False
    #: The candidate ``locate`` found (its index in ``boxes``), None if it found none.
    located: int | None = None
    #: The picture's grey levels (``duplicate_checks.grey_copy``), for the verification,
    #: and their pixels per pixel of the picture's own (``boxes``).
    grey: np.ndarray | None = None
    grey_scale: float = 1.0


@dataclass(frozen=True)
class Rescorer:
    encoder: EncoderClient
    pool: Executor
    max_pixels: int
    #: ``RESCORE_FRACTIONS``.
    fractions: tuple[float, ...] = ()
    #: The only files read: a payload's path is not trusted.
    files: IndexedFiles = field(kw_only=True)

    async def rescore(
        self,
        vector: np.ndarray,
        top: Sequence[RankedImage],
        payloads: Mapping[str, ImagePayload],
        query: PreparedQuery,
        image_size: int,
    ) -> dict[str, Rescore]:
        """Cut candidate boxes from the top pictures (or, for contains matches, from the
        query), encode them in one call, keep each picture's best."""
        loop = asyncio.get_running_loop()
        jobs = []
        for r in top:
            payload = payloads.get(r.image_id)
            if payload is None or payload.size is None or not payload.file_path:
                continue
            jobs.append((r, payload.file_path, payload.size))
        if not jobs:
            return {}
        cut = await asyncio.gather(
            *(
                loop.run_in_executor(self.pool, self._candidates, r, path, size, query, image_size)
                for r, path, size in jobs
            )
        )
        kept = [c for c in cut if c is not None]
        if not kept:
            return {}
        vectors = await self.encoder.embed_pixels(np.concatenate([c.pixels for c in kept]))
        out: dict[str, Rescore] = {}
        to_verify: list[CandidateBoxes] = []
        stage_one = {r.image_id: r.score for r in top}
        at = 0
        for c in kept:
            n = len(c.pixels)
            block = vectors[at : at + n]
            at += n
            # Contains: the picture's own view first, then the query's crops.
            scores = block[1:] @ block[0] if c.contains else block @ vector
            best = int(np.argmax(scores))
            out[c.image_id] = Rescore(
                c.image_id,
                float(scores[best]),
                c.boxes[best],
                c.query_boxes[best] if c.contains else None,
            )
            # Only a located box that will replace the first stage's is worth verifying.
            if best == c.located and out[c.image_id].score > stage_one[c.image_id]:
                to_verify.append(c)
        if to_verify:
            query_grey = await loop.run_in_executor(self.pool, grey_copy, query.image)
            checks = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        self.pool, _verify, c, out[c.image_id], query_grey, query.image.width
                    )
                    for c in to_verify
                )
            )
            for c, verified in zip(to_verify, checks, strict=True):
                if verified:
                    out[c.image_id] = replace(out[c.image_id], verified=True)
        return out

    def _candidates(
        self,
        r: RankedImage,
        path: str,
        size: tuple[int, int],
        query: PreparedQuery,
        image_size: int,
    ) -> CandidateBoxes | None:
        """Model inputs of the candidate boxes for one picture, or None if its file is gone."""
        picture = self._read_picture(path, size)
        if picture is None:
            return None
        if r.contains is not None and r.score == r.contains.score:
            return _contains_candidates(r, picture, size, query, image_size)
        return self._window_candidates(r, picture, size, query, image_size)

    def _window_candidates(
        self,
        r: RankedImage,
        picture: Image.Image,
        size: tuple[int, int],
        query: PreparedQuery,
        image_size: int,
    ) -> CandidateBoxes | None:
        """Where is the query in the picture? The located box, and the query's shape
        around the best window at ``fractions`` of its area."""
        fx, fy = picture.width / size[0], picture.height / size[1]
        # The best window's box, or the whole picture for a full-image match.
        matched = r.windows.boxes[0][0] if r.windows and r.windows.boxes else (0, 0, *size)
        aspect = query.size[0] / query.size[1]
        fractions = self.fractions
        boxes = refine_boxes(matched, aspect, size[0], size[1], fractions) if fractions else []
        found = locate(query.image, picture)
        located: Box | None = None
        if found is not None:
            x0, y0, x1, y1 = found.box
            located = (round(x0 / fx), round(y0 / fy), round(x1 / fx), round(y1 / fy))
            located = clip_box(located, *size)
            if located[2] > located[0] and located[3] > located[1]:
                boxes.insert(0, located)
            else:
                located = None
        boxes = list(dict.fromkeys(boxes))
        if not boxes:
            return None
        scaled = scale_boxes(boxes, fx, fy) if picture.size != size else boxes
        pixels = crops_to_model_inputs(picture, scaled, image_size)
        grey = None if located is None else grey_copy(picture)
        return CandidateBoxes(
            r.image_id,
            pixels,
            boxes,
            [],
            located=None if located is None else 0,
            grey=grey,
            grey_scale=1.0 if grey is None else grey.shape[1] / size[0],
        )

    def _read_picture(self, path: str, size: tuple[int, int]) -> Image.Image | None:
        """An indexed picture's pixels (JPEG: decoded at a reduced scale that keeps at
        least ``RESCORE_DECODE_SIDE`` px on the short side), or None if it may not be read
        (``IndexedFiles``) or cannot be."""
        try:
            opened = self.files.open(path)
            if opened is None:
                log.info("re-scoring skipped %s: not a readable file under the roots", path)
                return None
            with opened.file as f:
                if os.fstat(f.fileno()).st_size > RESCORE_MAX_FILE_BYTES:
                    return None
                data = f.read(RESCORE_MAX_FILE_BYTES + 1)
            if len(data) > RESCORE_MAX_FILE_BYTES:
                return None  # grew since the check
            picture = open_image(data, max_pixels=self.max_pixels)
            if picture.size != size:
                return None  # the file changed since it was indexed
            return picture.decode(RESCORE_DECODE_SIDE)
        except (OSError, ImgSearchError) as exc:
            log.info("re-scoring skipped %s: %s", path, exc)
            return None


def _contains_candidates(
    r: RankedImage,
    picture: Image.Image,
    size: tuple[int, int],
    query: PreparedQuery,
    image_size: int,
) -> CandidateBoxes | None:
    """Where does the picture lie in the query? The located box, and the query window's
    estimate; each compared with the picture's own view."""
    assert r.contains is not None
    frames = [r.contains.query_box]
    found = locate(picture, query.image)
    if found is not None:
        frames.insert(0, found.box)
    frames = list(dict.fromkeys(b for b in frames if b[2] > b[0] and b[3] > b[1]))
    if not frames:
        return None
    pixels = np.empty((1 + len(frames), image_size, image_size, 3), dtype=np.uint8)
    pixels[0] = model_input(picture, image_size)
    for i, frame in enumerate(frames):
        pixels[1 + i] = model_input(query.image.crop(frame), image_size)
    full = (0, 0, size[0], size[1])
    located = 0 if found is not None and frames[0] == found.box else None
    return CandidateBoxes(
        r.image_id,
        pixels,
        [full] * len(frames),
        frames,
        contains=True,
        located=located,
        grey=None if located is None else grey_copy(picture),
    )


def _verify(c: CandidateBoxes, rescore: Rescore, query_grey: np.ndarray, query_width: int) -> bool:
    """Whether the pixels confirm ``rescore``'s box: the duplicate finder's crop check
    (``locate_crop``, near the box's size) finds the query in the picture there (window
    matches), or the picture in the query (contains), overlapping the box by
    ``VERIFY_MIN_IOU``."""
    assert c.grey is not None
    if c.contains:
        assert rescore.query_box is not None
        template, parent, box = c.grey, query_grey, rescore.query_box
        scale = query_grey.shape[1] / query_width
    else:
        template, parent, box = query_grey, c.grey, rescore.box
        scale = c.grey_scale
    prior = ((box[2] - box[0]) * scale, (box[3] - box[1]) * scale)
    match = locate_crop(template, parent, prior)
    if match is None or not match.passed:
        return False
    x0, y0, x1, y1 = (round(v / scale) for v in match.box)
    return box_iou((x0, y0, x1, y1), box) >= VERIFY_MIN_IOU
