"""Data helpers of the vector-store tests: seeded random vectors and points."""

from __future__ import annotations

import uuid

import numpy as np

from imgsearch_common.vectorstore import PointRecord


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def new_id(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def full_points(
    rng: np.random.Generator, vectors: np.ndarray, **payload: object
) -> list[PointRecord]:
    return [
        PointRecord(id=new_id(rng), vector=v, payload={"filename": f"img{i}.jpg", **payload})
        for i, v in enumerate(vectors)
    ]


def window_points(
    rng: np.random.Generator, parent_id: str, vectors: np.ndarray
) -> list[PointRecord]:
    return [
        PointRecord(
            id=new_id(rng),
            vector=v,
            payload={"parent_id": parent_id, "box": [i, i, i + 10, i + 10]},
        )
        for i, v in enumerate(vectors)
    ]


def exact_top(index: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` most cosine-similar rows of ``index`` per query."""
    sims = queries @ index.T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]
