"""The search settings that decide quality and cost: one object, built in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgsearch_common.schemas import MatchMode
from imgsearch_common.windows import QUERY_WINDOW_MAX, QUERY_WINDOW_SCALES

from .aggregation import WindowRule

if TYPE_CHECKING:
    from ..settings import ApiSettings

MATCH_MODES: tuple[MatchMode, ...] = ("auto", "region", "contains")


@dataclass(frozen=True)
class SearchTuning:
    """See ``ApiSettings`` for what each one trades off."""

    #: Window hits fetched per query (``WINDOW_SEARCH_LIMIT``).
    window_search_limit: int = 200
    #: How a picture's window scores become one score (``PARTIAL_RULE``).
    window_rule: WindowRule = "max"
    #: Pictures re-scored in stage two (0 = off).
    rescore_top_k: int = 12
    #: Boxes with the query's shape centred on the matched window, besides the located one
    #: (fractions of the window's area; empty: the located box only).
    rescore_fractions: tuple[float, ...] = ()
    query_window_scales: tuple[float, ...] = QUERY_WINDOW_SCALES
    query_window_max: int = QUERY_WINDOW_MAX
    #: Applied when a request gives no ``min_score`` (None: keep everything).
    default_min_score: float | None = None
    #: Mode of image requests that name none.
    default_match_mode: MatchMode = "region"
    #: Image queries are shrunk to this long side before anything else (``MAX_QUERY_SIDE``).
    max_query_side: int = 2048
    #: Most pixels one query's decoding may hold (``MAX_QUERY_PIXELS``).
    max_query_pixels: int = 40_000_000

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> SearchTuning:
        return cls(
            window_search_limit=settings.window_search_limit,
            window_rule=settings.partial_rule,
            rescore_top_k=settings.rescore_top_k,
            rescore_fractions=tuple(settings.rescore_fractions),
            query_window_scales=tuple(settings.query_window_scales),
            query_window_max=settings.query_window_max,
            default_min_score=settings.default_min_score,
            default_match_mode=settings.default_match_mode,
            max_query_side=settings.max_query_side,
            max_query_pixels=settings.max_query_pixels,
        )
