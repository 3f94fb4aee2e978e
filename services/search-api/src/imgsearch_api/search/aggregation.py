"""Score aggregation: turning vector hits into ranked images. Pure functions.

Three kinds of evidence can say that an indexed picture matches a query:

- **full**: the query's vector against the picture's full-image vector;
- **windows** (the public API's *partial matching*, ``match_mode=region``): the query
  against the picture's *windows*. Each hit belongs to a parent picture; a *window rule*
  (the setting ``PARTIAL_RULE``) turns a parent's window scores into one score:

  - ``"max"`` (default, :func:`best_window_score`): the best window's score. A query that
    is a part of a picture matches *one* window well; the other windows say nothing.
  - ``"baseline"`` (:func:`baseline_window_score`): the original system's rule,
    ``0.7·max + 0.3·mean + 0.1·frequency``, where *frequency* is the parent's share of all
    window hits of the query. Kept as the reference. The mean and the frequency bonus
    favour pictures with many mediocre windows (textures, documents) over the one picture
    that has the matching window: on the quality benchmark (random weights) it ranks the
    parent of a 10 % crop first less often than ``"max"`` (benchmarks/README.md).

  Rules that reward a second good window of the same parent (best + ½·second, or the best
  window overlapping the best) were measured too and gained nothing over ``"max"``.
- **contains** (query-side windows): windows cut from the *query* against full-image
  vectors, for queries that show an indexed picture somewhere inside them (a screenshot, a
  collage). :func:`aggregate_query_windows` keeps each picture's best query window and
  turns it into the box where the whole picture lies in the query.

:func:`merge_matches` gives each picture the best of its scores. :func:`apply_rescores`
folds in the second stage of the search, which re-scores the top pictures on freshly cut
boxes (see ``rescoring.py``): a better re-score replaces the score and the box it came from.
:func:`merge_collections` merges the ranked lists of several collections searched at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from imgsearch_common.schemas import MatchType
from imgsearch_common.windows import Box, centre_square, parent_box_in_query

W_MAX = 0.7
W_MEAN = 0.3
W_FREQ = 0.1
#: Boxes returned per result (best first).
MAX_BOXES = 3
WindowRule = Literal["max", "baseline"]
WINDOW_RULES: tuple[WindowRule, ...] = ("max", "baseline")


@dataclass(frozen=True)
class WindowHit:
    parent_id: str
    score: float
    box: Box


@dataclass
class WindowMatch:
    """What a picture's windows say: its score under the window rule, and the best boxes."""

    parent_id: str
    score: float
    max_score: float
    mean_score: float
    count: int
    #: ``(box, score)`` best first.
    boxes: list[tuple[Box, float]] = field(default_factory=list)
    #: The first box is stage two's, and the query was found there in the picture's
    #: pixels (``Rescore.verified``).
    verified: bool = False


@dataclass(frozen=True)
class QueryWindowHit:
    """A window of the query (``query_box``, query pixels) matched picture ``image_id``'s
    full-image vector."""

    image_id: str
    score: float
    query_box: Box


@dataclass(frozen=True)
class ContainsMatch:
    image_id: str
    score: float
    #: The best query window, and where the whole picture lies in the query (clipped).
    window: Box
    query_box: Box
    #: The part of the picture (its pixels) that ``query_box`` shows.
    image_box: Box
    #: Stage two found the picture at ``query_box`` in the query's pixels.
    verified: bool = False


@dataclass(frozen=True)
class RankedImage:
    image_id: str
    score: float
    full_score: float | None
    windows: WindowMatch | None
    contains: ContainsMatch | None = None

    @property
    def match_type(self) -> MatchType:
        """The public name of what matched (the original system's names for full-image and
        window matches: ``partial`` is its word for windows)."""
        if self.contains is not None and self.score == self.contains.score:
            return "contains"
        if self.windows is None:
            return "full"
        if self.full_score is None:
            return "partial_to_full"
        return "full_and_partial"


def baseline_window_score(
    scores: Sequence[float],
    total_hits: int,
    *,
    w_max: float = W_MAX,
    w_mean: float = W_MEAN,
    w_freq: float = W_FREQ,
) -> float:
    """The original system's rule:
    ``w_max·max + w_mean·mean + w_freq·(len(scores) / total_hits)``."""
    if not scores:
        raise ValueError("at least one score is needed")
    if total_hits < len(scores):
        raise ValueError("total_hits counts every hit of the query, so it cannot be smaller")
    top = max(scores)
    mean = sum(scores) / len(scores)
    return w_max * top + w_mean * mean + w_freq * (len(scores) / total_hits)


def best_window_score(scores: Sequence[float]) -> float:
    """The best window's score."""
    if not scores:
        raise ValueError("at least one score is needed")
    return max(scores)


def aggregate_window_hits(
    hits: Sequence[WindowHit], *, rule: WindowRule = "max", max_boxes: int = MAX_BOXES
) -> dict[str, WindowMatch]:
    """Group window hits by parent image and score each parent with ``rule``."""
    if rule not in WINDOW_RULES:
        raise ValueError(f"unknown window rule {rule!r}; use one of {WINDOW_RULES}")
    by_parent: dict[str, list[WindowHit]] = defaultdict(list)
    for hit in hits:
        by_parent[hit.parent_id].append(hit)
    total = len(hits)
    out: dict[str, WindowMatch] = {}
    for parent, group in by_parent.items():
        scores = [h.score for h in group]
        ranked = sorted(group, key=lambda h: h.score, reverse=True)
        out[parent] = WindowMatch(
            parent_id=parent,
            score=best_window_score(scores)
            if rule == "max"
            else baseline_window_score(scores, total),
            max_score=ranked[0].score,
            mean_score=sum(scores) / len(scores),
            count=len(group),
            boxes=[(h.box, h.score) for h in ranked[:max_boxes]],
        )
    return out


def clip_box(box: Box, width: int, height: int) -> Box:
    """``box`` cut to the ``width`` x ``height`` frame (empty boxes collapse to a point)."""
    x0, y0 = min(max(box[0], 0), width), min(max(box[1], 0), height)
    x1, y1 = min(max(box[2], x0), width), min(max(box[3], y0), height)
    return (x0, y0, x1, y1)


def aggregate_query_windows(
    hits: Sequence[QueryWindowHit],
    picture_sizes: Mapping[str, tuple[int, int]],
    query_size: tuple[int, int],
) -> dict[str, ContainsMatch]:
    """Each picture's best query window, and the box where the whole picture lies in the query.

    A full-image vector describes the picture's centre square (what the model sees), so a
    query window that matches it shows that square: the picture's frame follows by the
    same scale and offset (:func:`~imgsearch_common.windows.parent_box_in_query`), clipped
    to the query. Pictures whose size is unknown get the query window itself as their box.
    """
    best: dict[str, QueryWindowHit] = {}
    for hit in hits:
        if hit.image_id not in best or hit.score > best[hit.image_id].score:
            best[hit.image_id] = hit
    out: dict[str, ContainsMatch] = {}
    for image_id, hit in best.items():
        size = picture_sizes.get(image_id)
        if size is None:
            out[image_id] = ContainsMatch(
                image_id, hit.score, hit.query_box, hit.query_box, hit.query_box
            )
            continue
        frame = parent_box_in_query(hit.query_box, centre_square(*size), size)
        shown = clip_box(frame, *query_size)
        fx = (frame[2] - frame[0]) / size[0]
        fy = (frame[3] - frame[1]) / size[1]
        seen = clip_box(
            (
                round((shown[0] - frame[0]) / fx),
                round((shown[1] - frame[1]) / fy),
                round((shown[2] - frame[0]) / fx),
                round((shown[3] - frame[1]) / fy),
            ),
            *size,
        )
        out[image_id] = ContainsMatch(image_id, hit.score, hit.query_box, shown, seen)
    return out


def merge_matches(
    full_scores: Mapping[str, float],
    windows: Mapping[str, WindowMatch],
    *,
    limit: int,
    min_score: float | None = None,
    contains: Mapping[str, ContainsMatch] | None = None,
) -> list[RankedImage]:
    """One ranked list: an image scores the best of its full, window and contains scores.

    Ties are broken by image id so the order is deterministic. Images under
    ``min_score`` are dropped (the no-match rule).
    """
    contains = contains or {}
    ids = set(full_scores) | set(windows) | set(contains)
    ranked: list[RankedImage] = []
    for image_id in ids:
        full = full_scores.get(image_id)
        win = windows.get(image_id)
        cont = contains.get(image_id)
        candidates = [
            s
            for s in (full, win.score if win else None, cont.score if cont else None)
            if s is not None
        ]
        score = max(candidates)
        if min_score is not None and score < min_score:
            continue
        ranked.append(RankedImage(image_id, score, full, win, cont))
    ranked.sort(key=lambda r: (-r.score, r.image_id))
    return ranked[:limit]


@dataclass(frozen=True)
class Rescore:
    """Stage two's best freshly cut box for a picture, and its score against the query.

    Window matches: ``box`` is the box of the picture (its pixels) that matches the query.
    Contains matches: ``query_box`` is where the picture lies in the query (query pixels),
    and ``box`` the part of the picture shown there.
    """

    image_id: str
    score: float
    box: Box
    query_box: Box | None = None
    #: The box was verified in the pixels, as the duplicate finder verifies a crop
    #: (``duplicate_checks.locate_crop``): the query found in the picture there (window
    #: matches), or the picture in the query (contains).
    verified: bool = False


def apply_rescores(
    ranked: Sequence[RankedImage],
    rescores: Mapping[str, Rescore],
    *,
    limit: int,
    min_score: float | None = None,
) -> list[RankedImage]:
    """Fold stage-two re-scores into the ranking.

    A picture's re-score counts only when it beats the score it had. A window re-score
    becomes the picture's window score and its box the first matched box (the first
    stage's boxes follow); a contains re-score becomes its contains score and box. Then
    re-sorted (ties by id), ``min_score`` applied, cut to ``limit``.
    """
    out: list[RankedImage] = []
    for r in ranked:
        new = rescores.get(r.image_id)
        if new is not None and new.score > r.score:
            if new.query_box is not None:
                window = r.contains.window if r.contains else new.query_box
                contains = ContainsMatch(
                    r.image_id, new.score, window, new.query_box, new.box, new.verified
                )
                r = replace(r, score=new.score, contains=contains)
            else:
                old = r.windows
                kept = [b for b in (old.boxes if old else []) if b[0] != new.box]
                windows = WindowMatch(
                    parent_id=r.image_id,
                    score=new.score,
                    max_score=max(new.score, old.max_score if old else new.score),
                    mean_score=old.mean_score if old else new.score,
                    count=old.count if old else 0,
                    boxes=[(new.box, new.score), *kept][:MAX_BOXES],
                    verified=new.verified,
                )
                r = replace(r, score=new.score, windows=windows)
        if min_score is None or r.score >= min_score:
            out.append(r)
    out.sort(key=lambda r: (-r.score, r.image_id))
    return out[:limit]


class Found(NamedTuple):
    """A ranked picture and the collection it was found in."""

    collection: str
    ranked: RankedImage


def merge_collections(ranked: Mapping[str, Sequence[RankedImage]], *, limit: int) -> list[Found]:
    """The ranked lists of several collections (collection -> its list) as one, best
    first, cut to ``limit``. Scores of one model compare across collections; ties are
    broken by image id, then by collection name, so the order does not depend on the order
    the collections were named in. One content in two collections is two results."""
    merged = [Found(name, r) for name, found in ranked.items() for r in found]
    merged.sort(key=lambda f: (-f.ranked.score, f.ranked.image_id, f.collection))
    return merged[:limit]
