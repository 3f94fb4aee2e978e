"""Model loading: seeded random weights across processes, and clear load errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pydantic
import pytest
import torch

from imgsearch_encoder import EncoderSettings
from imgsearch_encoder.model import ModelLoadError, load_encoder

#: A few tensors of both towers; equal hashes mean the same initialisation.
PROBE = ("visual.conv1.weight", "visual.proj", "token_embedding.weight", "text_projection")

_CHILD = """
import hashlib, json, sys
from imgsearch_encoder import EncoderSettings
from imgsearch_encoder.model import load_encoder

settings = EncoderSettings(
    clip_model="ViT-B-32", clip_pretrained="random", clip_random_seed=0, device="cpu",
    encoder_engine="torch",
)
state = load_encoder(settings).model.state_dict()
names = json.loads(sys.argv[1])
print(json.dumps({n: hashlib.sha256(state[n].numpy().tobytes()).hexdigest() for n in names}))
"""


def test_random_weights_are_identical_in_another_process(reference) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(PROBE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    theirs = json.loads(child.stdout.strip().splitlines()[-1])
    state = reference.model.state_dict()  # open_clip, seeded in this process
    ours = {n: hashlib.sha256(state[n].numpy().tobytes()).hexdigest() for n in PROBE}
    assert theirs == ours
    assert "RANDOM weights" in child.stderr  # the loud warning


@pytest.mark.parametrize(
    ("pretrained", "expected"),
    [
        ("/nonexistent/ViT-B-32.bin", "is not a file"),
        ("no-such-tag", "is neither a file nor a known tag"),
    ],
)
def test_unavailable_weights_say_how_to_fix_it(pretrained: str, expected: str) -> None:
    settings = EncoderSettings(clip_model="ViT-B-32", clip_pretrained=pretrained, device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        load_encoder(settings)
    message = str(caught.value)
    assert expected in message
    assert "openai" in message  # the known tags are listed
    assert "CLIP_PRETRAINED to the path of a local open_clip checkpoint file" in message
    assert "CLIP_PRETRAINED=random" in message


def test_unknown_model_name_is_refused() -> None:
    settings = EncoderSettings(clip_model="ViT-Z-99", clip_pretrained="random", device="cpu")
    with pytest.raises(ModelLoadError, match="not an open_clip model name"):
        load_encoder(settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused() -> None:
    settings = EncoderSettings(clip_pretrained="random", device="cuda")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_encoder(settings)


def test_a_request_limit_larger_than_the_queue_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="MAX_QUEUE_ITEMS"):
        EncoderSettings(max_queue_items=100, max_request_crops=256)


def test_batch_size_defaults_to_the_device_types_measured_best(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAX_BATCH_SIZE", raising=False)
    unset = EncoderSettings(clip_pretrained="random")
    assert unset.max_batch_size is None
    assert unset.batch_size_for("cpu") == 16
    assert unset.batch_size_for("cuda") == 256
    assert EncoderSettings(max_batch_size=5).batch_size_for("cuda") == 5
    monkeypatch.setenv("MAX_BATCH_SIZE", "")
    assert EncoderSettings().batch_size_for("cpu") == 16
