"""The indexing pipeline's vectors equal open_clip's own for the same crops.

The worker's ``prepare_image`` (decode, EXIF, windows, uint8 model inputs) sends
its pixels to the running encoder; each vector is compared with open_clip's
``preprocess`` + ``encode_image`` of the same crop cut out with Pillow, on a model
built with the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from imgsearch_common.devstack import LocalStack
from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.imaging import decode_image
from imgsearch_worker.pipeline import prepare_image

pytestmark = [pytest.mark.e2e]


async def test_window_vectors_match_open_clip(stack: LocalStack, photos_dir: Path) -> None:
    path = photos_dir / "astronaut.jpg"
    prepared = prepare_image(
        str(path),
        image_size=224,
        max_bytes=10**8,
        max_pixels=10**8,
        scales=(0.75, 0.5),
        overlap=0.5,
        max_windows=16,
    )
    client = EncoderClient(stack.encoder_url, stack.config.internal_token)
    try:
        ours = await client.embed_pixels(prepared.pixels)
    finally:
        await client.aclose()

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    img = decode_image(path.read_bytes())
    crops = [img, *(img.crop(box) for box in prepared.boxes)]
    with torch.inference_mode():
        batch = torch.stack([preprocess(c) for c in crops])
        ref = torch.nn.functional.normalize(model.encode_image(batch), dim=-1).numpy()
    cosines = np.sum(ours * ref, axis=1)
    assert len(cosines) == 1 + len(prepared.boxes) == 14
    assert cosines.min() >= 0.999, cosines
