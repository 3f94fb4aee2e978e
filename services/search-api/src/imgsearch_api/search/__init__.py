"""The search path, one room per step (see ``service`` for the order):

- ``query``       — the request in our terms; an image query prepared for the model;
- ``candidates``  — stage one: the index searched, the hits aggregated into ranked pictures;
- ``aggregation`` — **score aggregation**: pure functions from hits to ranked pictures;
- ``rescoring``   — stage two: the best pictures re-scored on freshly cut boxes;
- ``locate``      — where one picture lies in another (proposes stage two's boxes);
- ``results``     — ranked pictures → the public response;
- ``tuning``      — the settings that decide quality and cost, built once;
- ``service``     — :class:`SearchService`, which runs the steps in order.
"""

from .query import ImageSearch, SearchScope
from .service import SearchService
from .tuning import SearchTuning

__all__ = ["ImageSearch", "SearchScope", "SearchService", "SearchTuning"]
