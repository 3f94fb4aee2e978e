"""What the encoder returns equals what open_clip computes itself.

The pixels travel as ``imaging.model_input`` uint8 crops; the reference is
open_clip's own ``preprocess`` + ``encode_image`` on a model built with the same
seed, so this checks the wire format, the on-device normalisation and the seeding
at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch_common.imaging import model_input

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


async def test_pixels_equal_open_clip_preprocess_and_encode(
    encoder, embed_pixels, reference, astronaut: Image.Image, chelsea: Image.Image
) -> None:
    crops = [
        astronaut.crop((150, 40, 350, 240)),  # square
        astronaut.crop((20, 180, 470, 330)),  # wide: resize, then centre crop
        chelsea.crop((250, 10, 330, 290)),  # tall, and smaller than the model input
    ]
    size = encoder.app.state.encoder.image_size
    ours = await embed_pixels(encoder.client, np.stack([model_input(c, size) for c in crops]))

    theirs = np.stack([reference.encode_image(c) for c in crops])
    assert ours.shape == (3, 512)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = _cosines(ours, theirs)
    assert np.all(cos >= 0.999), cos
    # Order is kept: each crop is far closer to its own reference than random vectors are
    # to each other under these weights (about 0.65).
    assert cos.min() > _cosines(ours[[0, 1, 2]], theirs[[1, 2, 0]]).max()


async def test_texts_are_l2_normalised_and_equal_open_clip(encoder, auth, reference) -> None:
    texts = ["an astronaut in a white suit", "a cat", ""]
    response = await encoder.client.post("/v1/embed/texts", json={"texts": texts}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    vectors = np.asarray(body["embeddings"], dtype=np.float32)
    assert body["dim"] == 512
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(_cosines(vectors, reference.encode_texts(texts)) >= 0.999)
