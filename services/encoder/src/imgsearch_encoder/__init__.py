"""CLIP encoder service: crops and texts in, L2-normalised embeddings out.

Public surface: :func:`create_app` (the FastAPI app) and :class:`EncoderSettings`;
``python -m imgsearch_encoder`` (or ``imgsearch-encoder``) serves it.

Modules: ``settings`` (configuration), ``model`` (open_clip loading and the encode
calls), ``batcher`` (cross-request dynamic batching), ``metrics`` (Prometheus),
``app`` (HTTP API).
"""

from .app import create_app
from .settings import EncoderSettings

__all__ = ["EncoderSettings", "create_app"]
