"""Small helpers both back-ends share: argument checks, vector conversion, and how a
collection name is resolved to where its points live.

:func:`upsert_vectors` and :func:`search_queries` are the argument contract of
``upsert`` and ``search`` (the contract suite runs it against both back-ends), written
once so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import BadRequest
from ..ids import logical_name, revision, validate_collection, validate_physical
from .base import KINDS, Hit, Kind, PointRecord


def check_target(collection: str, kind: Kind) -> None:
    """Validate a collection name, logical or physical (InvalidCollection), and a kind."""
    validate_physical(collection)
    if kind not in KINDS:
        # A programming error, not a client's: the services only pass the two literals.
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def check_find(collection: str, kind: Kind, key: str, value: str) -> None:
    """A ``find``'s checked arguments: the target, a non-empty key, a string value."""
    check_target(collection, kind)
    if not key:
        raise ValueError("a payload key must not be empty")
    if not isinstance(value, str):
        # Programming errors, like a bad kind: the callers pass the keys of ``payloads``.
        raise TypeError(f"find matches string values, not {type(value).__name__}")


def upsert_vectors(
    collection: str, kind: Kind, points: Sequence[PointRecord]
) -> tuple[list[list[float]], int]:
    """An upsert's checked arguments: each point's vector as a list, and their one dimension.

    ``([], 0)`` for no points (nothing to write, but the target is checked all the same);
    mixed or empty vectors are a bad request (:func:`common_dim`).
    """
    check_target(collection, kind)
    if not points:
        return [], 0
    vectors = [vector_list(p.vector) for p in points]
    return vectors, common_dim(vectors)


def search_queries(
    collection: str, kind: Kind, vectors: Sequence[Sequence[float] | np.ndarray]
) -> list[list[float]]:
    """A search's checked arguments: the target, and the query vectors as lists."""
    check_target(collection, kind)
    return vector_lists(vectors)


def vector_list(vector: Sequence[float] | np.ndarray) -> list[float]:
    """One vector as a list of Python floats (what both Qdrant bindings take)."""
    if isinstance(vector, np.ndarray):
        if vector.ndim != 1:
            raise ValueError(f"a vector must be 1-D, got shape {vector.shape}")
        out: list[float] = vector.tolist()
        return out
    return [float(x) for x in vector]


def vector_lists(vectors: Sequence[Sequence[float] | np.ndarray] | np.ndarray) -> list[list[float]]:
    """Several vectors as lists; a 2-D array converts in one ``tolist`` call."""
    if isinstance(vectors, np.ndarray):
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
        out: list[list[float]] = vectors.tolist()
        return out
    return [vector_list(v) for v in vectors]


def common_dim(vectors: Sequence[Sequence[float]]) -> int:
    """The one dimension of a non-empty batch; mixed or empty vectors are a bad request."""
    dim = len(vectors[0])
    if dim == 0 or any(len(v) != dim for v in vectors):
        raise BadRequest("all vectors of a request must have the same, non-zero dimension")
    return dim


def dimension_error(detail: str) -> BadRequest:
    return BadRequest(f"vector dimension does not match the collection ({detail})")


def in_request_order(hits: Sequence[Hit], ids: Sequence[str]) -> list[Hit]:
    """Retrieved points in the order their ids were asked for (stores answer in their own)."""
    rank = {point_id.lower(): i for i, point_id in reversed(list(enumerate(ids)))}
    return sorted(hits, key=lambda h: rank.get(h.id.lower(), len(rank)))


# --- names: logical, physical, stored ---------------------------------------------------------


def storage_of(name: str, aliases: Mapping[str, str]) -> str:
    """Where the points of ``name`` live (a back-end's own collection name): ``NAME.r0`` ->
    the plain ``NAME``; ``NAME.rN`` as is; a logical name through its alias, else plain.
    ``aliases`` maps logical names to stored names (``NAME.rN``)."""
    validate_physical(name)
    if name != logical_name(name):
        return logical_name(name) if revision(name) == 0 else name
    return aliases.get(name, name)


def physical_of(storage: str) -> str:
    """The physical name callers see for a stored collection (a plain one is ``NAME.r0``)."""
    return f"{storage}.r0" if storage == logical_name(storage) else storage


def check_alias(logical: str, physical: str) -> str:
    """A switch's checked arguments; the stored name it makes ``logical`` read (its plain
    collection itself for ``NAME.r0``)."""
    validate_collection(logical)
    validate_physical(physical)
    if logical_name(physical) != logical:
        # A programming error: only a reindex switches, and always to its own revision.
        raise ValueError(f"{logical!r} can only point at its own revisions, not {physical!r}")
    return storage_of(physical, {})
