"""``python -m imgsearch_encoder``: serve the encoder on ENCODER_HOST:ENCODER_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import EncoderSettings


def main() -> None:
    settings = EncoderSettings()
    level = settings.log_level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    uvicorn.run(
        create_app(settings),
        host=settings.encoder_host,
        port=settings.encoder_port,
        log_level=level.lower(),
        # One process owns the model; scale with a GPU per process, not with workers.
        workers=1,
    )


if __name__ == "__main__":
    main()
