"""Vector-store fixtures: both back-ends behind one fixture, real stores only.

``store`` runs every contract test twice: on a real Qdrant Edge index in ``tmp_path`` and on
qdrant-client's in-memory mode (no Qdrant server runs here; the HTTP path of the server
back-end is covered with a transport-level fake in ``test_vectorstore_server.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from imgsearch_common.vectorstore import (
    EdgeVectorStore,
    QdrantServerVectorStore,
    VectorStore,
)

BACKENDS = ["edge", "qdrant-memory"]


def make_store(backend: str, root: Path) -> VectorStore:
    if backend == "edge":
        # No automatic optimize in the contract tests: small shards, exact answers.
        return EdgeVectorStore(root / "index", optimize_threshold=None)
    return QdrantServerVectorStore(":memory:")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s = make_store(request.param, tmp_path)
    yield s
    await s.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
