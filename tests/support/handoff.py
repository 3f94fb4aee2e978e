"""Points forged through the internal hand-off (``POST /internal/v1/upsert``, with the
token), as a stale point, an older deployment's or a token holder's would be: the API must
not take the file a payload names on trust."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.support.inprocess import API_INTERNAL_URL, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPSERT_URL = f"{API_INTERNAL_URL}/internal/v1/upsert"


def unit_vector(seed: int, dim: int = 512) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def image_point(
    image_id: str,
    stored: Path | str,
    collection: str,
    *,
    seed: int = 0,
    size: tuple[int, int] = (64, 64),
) -> dict[str, Any]:
    """A full-image point whose payload names ``stored`` as its file."""
    payload = {
        "stored_path": str(stored),
        "original_path": str(stored),
        "filename": os.path.basename(str(stored)) or "x",
        "file_size": 1,
        "indexed_at": 0.0,
        "width": size[0],
        "height": size[1],
        "collection": collection,
    }
    return {"id": image_id, "vector": unit_vector(seed), "payload": payload}


async def forge(
    client: httpx.AsyncClient, collection: str, points: list[dict[str, Any]]
) -> httpx.Response:
    """Hand ``points`` to the API the way a worker does (the internal listener, the
    token); the answer, unchecked."""
    body = {"collection": collection, "full": points, "windows": []}
    return await client.post(UPSERT_URL, json=body, headers=AUTH)
