"""The test stacks run the encoder on its default engine, as a user's CPU machine would.

No stack of the suite sets ``ENCODER_ENGINE`` or ``ENCODER_PRECISION``: on a machine
without CUDA the default (``auto``) is ONNX Runtime, int8, with the graphs exported once
into the session's ``ONNX_CACHE_DIR`` (tests/conftest.py) and loaded from there by every
later encoder of the session.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from imgsearch_devstack import LocalStack
from tests.support.inprocess import InProcessStack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(torch.cuda.is_available(), reason="the default on CUDA is torch"),
]


def _graphs(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")}


def test_the_process_stack_runs_the_default_engine_from_the_sessions_cache(
    stack: LocalStack, onnx_cache_dir: Path
) -> None:
    assert not {"ENCODER_ENGINE", "ENCODER_PRECISION"} & set(stack.config.extra_env)
    health = httpx.get(f"{stack.encoder_url}/health").json()
    assert (health["engine"], health["precision"], health["device"]) == ("onnx", "int8", "cpu")
    # The encoder process found the session's cache in its environment.
    assert _graphs(onnx_cache_dir)
    assert not (stack.config.data_dir / "onnx").exists()


def test_the_in_process_stack_runs_the_default_engine(
    inprocess: InProcessStack, onnx_cache_dir: Path
) -> None:
    engine = inprocess.encoder_app.state.encoder
    assert (engine.engine, engine.precision) == ("onnx", "int8")
    assert engine.graphs is not None and engine.graphs.parent == onnx_cache_dir
    assert not (inprocess.data_dir / "onnx").exists()
