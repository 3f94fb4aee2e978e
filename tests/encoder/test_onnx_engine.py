"""The ONNX Runtime engine: same vectors as torch on real photos' crops, the graph cache,
the app on ``ENCODER_ENGINE=onnx``, and the combinations refused at start.

The graphs are exported once per session (fp32 and int8, into a temporary DATA_DIR);
every other load in this file reuses them. Fidelity is measured with random weights
(seeded), which have no activation outliers: int8 on real CLIP weights must be measured
again (benchmarks/README.md).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch

from imgsearch_common.imaging import model_input
from imgsearch_devstack.photos import load_photos
from imgsearch_encoder import EncoderSettings
from imgsearch_encoder.model import (
    ClipEncoder,
    InputSpec,
    ModelLoadError,
    load_encoder,
    weights_hash,
)
from imgsearch_encoder.onnx_engine import (
    GRAPHS,
    MANIFEST,
    OnnxEncoder,
    cached_graphs,
    fingerprint,
    is_complete,
)

TEXTS = ["a cat on a sofa", "the moon", "", "x" * 400, "astronaut, rocket, flag", "🚀 ünïcode"]


def _settings(data_dir: Path, **overrides: Any) -> EncoderSettings:
    """The torch engine unless ``encoder_engine`` says otherwise (the reference); the graphs
    go to the session's ``ONNX_CACHE_DIR`` (tests/conftest.py), shared with the stacks."""
    values: dict[str, Any] = {
        "clip_model": "ViT-B-32",
        "clip_pretrained": "random",
        "clip_random_seed": 0,
        "device": "cpu",
        "data_dir": data_dir,
        "encoder_engine": "torch",
    }
    values.update(overrides)
    return EncoderSettings(**values)


@pytest.fixture(scope="session")
def onnx_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-data")


@pytest.fixture(scope="session")
def torch_engine(onnx_data_dir: Path) -> ClipEncoder:
    engine = load_encoder(_settings(onnx_data_dir))
    assert isinstance(engine, ClipEncoder)
    return engine


@pytest.fixture(scope="session")
def onnx_engines(onnx_data_dir: Path) -> dict[str, OnnxEncoder]:
    """fp32 and int8, each exported once per session (or loaded, when a stack of the
    session exported it first) into the session's ONNX_CACHE_DIR."""
    engines = {}
    for precision in ("fp32", "int8"):
        engine = load_encoder(
            _settings(onnx_data_dir, encoder_engine="onnx", encoder_precision=precision)
        )
        assert isinstance(engine, OnnxEncoder)
        engines[precision] = engine
    return engines


@pytest.fixture(scope="session")
def photo_crops() -> np.ndarray:
    """Each photo's full view and two windows (a quarter, a horizontal strip), as the
    workers cut them: ``model_input`` of the boxes. 60 crops."""
    crops = []
    for photo in load_photos().values():
        img = photo.convert("RGB")
        w, h = img.size
        for box in ((0, 0, w, h), (0, 0, w // 2, h // 2), (0, h // 3, w, 2 * h // 3)):
            crops.append(model_input(img.crop(box), 224))
    return np.stack(crops)


@pytest.fixture(scope="session")
def torch_vectors(torch_engine, photo_crops) -> np.ndarray:
    return torch_engine.encode_pixels(photo_crops)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.9999), ("int8", 0.99)])
def test_image_vectors_match_torch_on_photo_crops(
    precision: str, floor: float, torch_vectors, onnx_engines, photo_crops
) -> None:
    ours = onnx_engines[precision].encode_pixels(photo_crops)
    assert len(photo_crops) >= 40
    assert _cosines(ours, torch_vectors).min() >= floor


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.9999), ("int8", 0.99)])
def test_text_vectors_match_torch(precision: str, floor: float, torch_engine, onnx_engines) -> None:
    reference = torch_engine.encode_texts(TEXTS)
    ours = onnx_engines[precision].encode_texts(TEXTS)
    assert _cosines(ours, reference).min() >= floor


def test_batch_size_does_not_change_a_vector(onnx_engines, photo_crops) -> None:
    engine = onnx_engines["fp32"]
    alone = np.concatenate([engine.encode_pixels(photo_crops[i : i + 1]) for i in range(5)])
    together = engine.encode_pixels(photo_crops[:5])
    assert _cosines(alone, together).min() >= 0.99999


def test_the_engine_describes_itself(onnx_engines, onnx_data_dir: Path) -> None:
    for precision, engine in onnx_engines.items():
        assert (engine.engine, engine.precision, engine.dim, engine.image_size) == (
            "onnx",
            precision,
            512,
            224,
        )
        assert engine.dtype == {"fp32": "float32", "int8": "int8"}[precision]
        assert engine.gpu_memory_used() == 0
        cache = _settings(onnx_data_dir).onnx_cache_root
        assert engine.graphs is not None and engine.graphs.parent == cache
    with pytest.raises(ValueError, match="expected uint8 pixels"):
        onnx_engines["fp32"].encode_pixels(np.zeros((1, 224, 224, 3), dtype=np.float32))


def test_a_second_load_reuses_the_cached_graphs(
    onnx_engines, onnx_data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = onnx_engines["fp32"].graphs
    assert folder is not None and is_complete(folder, folder.name)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    caplog.set_level(logging.INFO, logger="imgsearch_encoder")
    again = load_encoder(_settings(onnx_data_dir, encoder_engine="onnx", encoder_precision="fp32"))
    assert isinstance(again, OnnxEncoder) and again.graphs == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not [r for r in caplog.records if "exporting" in r.getMessage()]
    # One folder per precision, no temporary folder left behind (the stacks of the session
    # may have cached other models' graphs beside them).
    names = {p.name for p in folder.parent.iterdir()}
    assert names >= {e.graphs.name for e in onnx_engines.values() if e.graphs}
    assert not [n for n in names if n.startswith(".")]
    again.close()


def test_the_fingerprint_follows_weights_precision_and_input(torch_engine) -> None:
    model = torch_engine.model
    spec = InputSpec(torch_engine.image_size, torch_engine.mean, torch_engine.std)

    def key(precision: str = "fp32", pretrained: str = "random") -> str:
        return fingerprint(
            weights_hash(model),
            model_name="ViT-B-32",
            pretrained=pretrained,
            precision=precision,
            spec=spec,
        )

    base = key()
    assert base == key()
    assert base != key(precision="int8")
    assert base != key(pretrained="other")
    weight = model.visual.proj
    kept = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = kept + 1.0
    try:
        changed = key()
    finally:
        with torch.no_grad():
            weight[0, 0] = kept
    assert changed != base


def test_the_model_fingerprint_names_the_weights_not_the_engine(
    torch_engine, onnx_engines, onnx_data_dir: Path
) -> None:
    """Every engine and precision of one model is the same model to a collection."""
    fingerprints = {torch_engine.fingerprint} | {e.fingerprint for e in onnx_engines.values()}
    assert len(fingerprints) == 1 and len(torch_engine.fingerprint) == 32
    other = load_encoder(_settings(onnx_data_dir, clip_random_seed=7))
    try:
        assert other.fingerprint != torch_engine.fingerprint
    finally:
        other.close()


def _counting_build(calls: list[Path]) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        calls.append(folder)
        for name in GRAPHS:
            (folder / name).write_bytes(b"graph " + name.encode())

    return build


def test_a_changed_fingerprint_builds_again(tmp_path: Path) -> None:
    calls: list[Path] = []
    first, built = cached_graphs(tmp_path, "key-a", _counting_build(calls))
    assert built and first == tmp_path / "key-a" and len(calls) == 1
    assert cached_graphs(tmp_path, "key-a", _counting_build(calls)) == (first, False)
    assert len(calls) == 1
    second, built = cached_graphs(tmp_path, "key-b", _counting_build(calls))
    assert built and second == tmp_path / "key-b" and len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key-a", "key-b"]


@pytest.mark.parametrize("damage", ["no manifest", "truncated graph", "other key", "bad json"])
def test_a_half_written_cache_folder_is_never_loaded(tmp_path: Path, damage: str) -> None:
    calls: list[Path] = []
    folder, _ = cached_graphs(tmp_path, "key", _counting_build(calls))
    if damage == "no manifest":
        (folder / MANIFEST).unlink()
    elif damage == "truncated graph":
        (folder / "image.onnx").write_bytes(b"gra")
    elif damage == "other key":
        manifest = json.loads((folder / MANIFEST).read_text())
        (folder / MANIFEST).write_text(json.dumps({**manifest, "fingerprint": "other"}))
    else:
        (folder / MANIFEST).write_text("{")
    assert not is_complete(folder, "key")
    again, built = cached_graphs(tmp_path, "key", _counting_build(calls))
    assert built and again == folder and len(calls) == 2
    assert is_complete(folder, "key")
    assert (folder / "image.onnx").read_bytes() == b"graph image.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_an_export_that_fails_leaves_nothing(tmp_path: Path) -> None:
    def crash(folder: Path) -> None:
        (folder / "image.onnx").write_bytes(b"half a gr")
        raise RuntimeError("killed mid-export")

    with pytest.raises(RuntimeError, match="killed mid-export"):
        cached_graphs(tmp_path, "key", crash)
    assert list(tmp_path.iterdir()) == []


def test_a_crashed_exports_temporary_folder_is_ignored(tmp_path: Path) -> None:
    # What a SIGKILL mid-export leaves: a temporary folder, never the key's own name.
    leftover = tmp_path / ".tmp-key-12345-abcd"
    leftover.mkdir()
    (leftover / "image.onnx").write_bytes(b"half")
    calls: list[Path] = []
    folder, built = cached_graphs(tmp_path, "key", _counting_build(calls))
    assert built and is_complete(folder, "key") and len(calls) == 1


def test_two_loaders_at_once_export_once(tmp_path: Path) -> None:
    # Two encoders starting together on one cache (the test stacks, two `make run`s): the
    # second waits for the first's export and loads it, instead of exporting again and
    # replacing the first's finished folder.
    calls: list[Path] = []
    slow = _counting_build(calls)
    started = threading.Event()

    def build(folder: Path) -> None:
        started.set()
        time.sleep(0.5)
        slow(folder)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cached_graphs, tmp_path, "key", build)
        assert started.wait(10)
        second = pool.submit(cached_graphs, tmp_path, "key", build)
        answers = sorted([first.result(), second.result()], key=lambda a: not a[1])
    assert answers == [(tmp_path / "key", True), (tmp_path / "key", False)]
    assert len(calls) == 1 and is_complete(tmp_path / "key", "key")
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_cold_export_says_it_is_exporting_and_how_long_it_took(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_encoder")
    calls: list[Path] = []
    cached_graphs(tmp_path, "key", _counting_build(calls), what="ViT-B-32 (random), int8")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("exporting ViT-B-32 (random), int8 to ONNX") for m in messages)
    assert any(re.search(r"exported ViT-B-32 \(random\), int8 in [0-9.]+ s", m) for m in messages)
    caplog.clear()
    cached_graphs(tmp_path, "key", _counting_build(calls), what="ViT-B-32 (random), int8")
    assert not [r for r in caplog.records if "export" in r.getMessage()]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_app_serves_the_onnx_engine(
    run_encoder,
    make_settings,
    embed_pixels,
    onnx_engines,
    onnx_data_dir,
    torch_vectors,
    photo_crops,
) -> None:
    settings = make_settings(
        encoder_engine="onnx", encoder_precision="fp32", data_dir=onnx_data_dir
    )
    async with run_encoder(settings) as running:
        health = (await running.client.get("/health")).json()
        assert (health["engine"], health["precision"], health["dtype"]) == (
            "onnx",
            "fp32",
            "float32",
        )
        assert (health["device"], health["dim"], health["image_size"]) == ("cpu", 512, 224)
        vectors = await embed_pixels(running.client, photo_crops[:7])
    assert _cosines(vectors, torch_vectors[:7]).min() >= 0.9999


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"encoder_engine": "onnx", "encoder_precision": "fp16"}, "needs ENCODER_ENGINE=torch"),
        ({"encoder_engine": "onnx", "encoder_precision": "bf16"}, "needs ENCODER_ENGINE=torch"),
        ({"encoder_engine": "torch", "encoder_precision": "int8"}, "needs ENCODER_ENGINE=onnx"),
        ({"encoder_engine": "tensorrt"}, "must be one of auto, torch, onnx"),
        ({"encoder_precision": "fp8"}, "must be one of fp32, int8, fp16, bf16"),
    ],
)
def test_combinations_that_do_not_apply_are_refused_by_the_settings(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        _settings(tmp_path, **overrides)


def test_the_settings_accept_any_case_and_empty_means_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path, encoder_engine=" ONNX ", encoder_precision="Int8")
    assert (settings.encoder_engine, settings.encoder_precision) == ("onnx", "int8")
    assert _settings(tmp_path, encoder_precision="").encoder_precision is None


def test_the_default_engine_is_onnx_int8_on_a_cpu_and_torch_on_cuda(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ENCODER_ENGINE", "ENCODER_PRECISION", "ONNX_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    unset = EncoderSettings(data_dir=tmp_path)
    assert (unset.encoder_engine, unset.encoder_precision) == ("auto", None)
    assert (unset.engine_for("cpu"), unset.engine_for("cuda")) == ("onnx", "torch")
    assert unset.onnx_cache_root == tmp_path / "onnx"
    # A precision only one engine has picks that engine, whatever the device.
    for precision, engine in (("int8", "onnx"), ("fp16", "torch"), ("bf16", "torch")):
        settings = EncoderSettings(encoder_precision=precision)
        assert (settings.engine_for("cpu"), settings.engine_for("cuda")) == (engine, engine)
    fp32 = EncoderSettings(encoder_precision="fp32")
    assert (fp32.engine_for("cpu"), fp32.engine_for("cuda")) == ("onnx", "torch")
    assert EncoderSettings(encoder_engine="torch").engine_for("cpu") == "torch"
    monkeypatch.setenv("ONNX_CACHE_DIR", str(tmp_path / "graphs"))
    assert EncoderSettings().onnx_cache_root == tmp_path / "graphs"
    monkeypatch.setenv("ONNX_CACHE_DIR", "")
    assert EncoderSettings(data_dir=tmp_path).onnx_cache_root == tmp_path / "onnx"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.asyncio(loop_scope="session")
async def test_the_app_on_the_default_settings_serves_onnx_int8_on_this_cpu(
    run_encoder, make_settings, embed_pixels, onnx_engines, torch_vectors, photo_crops, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="imgsearch_encoder")
    settings = make_settings(encoder_engine="auto", device="auto")
    async with run_encoder(settings) as running:
        health = (await running.client.get("/health")).json()
        assert (health["engine"], health["precision"], health["dtype"]) == ("onnx", "int8", "int8")
        assert health["device"] == "cpu"
        vectors = await embed_pixels(running.client, photo_crops[:7])
    assert _cosines(vectors, torch_vectors[:7]).min() >= 0.99
    assert any("engine onnx (ENCODER_ENGINE=auto)" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_without_cuda_is_refused_at_start(tmp_path: Path, precision: str) -> None:
    with pytest.raises(ModelLoadError, match=f"ENCODER_PRECISION={precision} does not apply"):
        load_encoder(_settings(tmp_path, encoder_precision=precision))


def test_the_onnx_engine_on_a_gpu_device_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"runs on the CPU|CUDA is not available"):
        load_encoder(_settings(tmp_path, encoder_engine="onnx", device="cuda"))
    assert not (tmp_path / "onnx").exists()
