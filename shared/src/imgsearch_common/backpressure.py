"""Reading a busy server's ``Retry-After``: how long a caller backs off.

A bounded queue that is full answers 429 (or 503) with ``Retry-After`` in seconds (the
encoder estimates it from its measured speed). Every client that honours it reads it
with :func:`retry_after_s`, so they agree on what an odd value means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import overload

#: Statuses that mean "this server's queue is full; ask again later".
BUSY_STATUSES = (429, 503)
#: Shortest back-off we take (s): a ``Retry-After: 0`` (or a negative one) must not turn
#: the caller into a busy loop against a server that just said it is overloaded.
MIN_RETRY_AFTER_S = 0.05
#: Longest back-off we honour (s): past this a caller is better off failing visibly (or
#: trying another replica) than sleeping on a server's estimate.
MAX_RETRY_AFTER_S = 30.0


@overload
def retry_after_s(headers: Mapping[str, str]) -> float | None: ...
@overload
def retry_after_s(headers: Mapping[str, str], default: float) -> float: ...
def retry_after_s(headers: Mapping[str, str], default: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds, clamped to
    [:data:`MIN_RETRY_AFTER_S`, :data:`MAX_RETRY_AFTER_S`]; ``default`` when it is absent or
    not a number (an HTTP-date is not understood either: our servers send seconds).

    ``headers`` is an ``httpx.Headers`` (case-insensitive) or any mapping. Whether the status
    calls for a back-off at all (:data:`BUSY_STATUSES`) is the caller's decision.
    """
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return default
    if math.isnan(value):
        return default
    return max(MIN_RETRY_AFTER_S, min(value, MAX_RETRY_AFTER_S))
