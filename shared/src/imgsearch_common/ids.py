"""Deterministic point ids: replaying a job writes the same points again.

An image's id is derived from its *content* (SHA-256 of the file bytes), so the
same file indexed twice, or a job delivered twice, yields the same points; a
window's id adds its box. Ids are UUIDs because both Qdrant back-ends accept them.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from .errors import InvalidCollection
from .windows import Box

_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-4e55-9a51-0c9f3d2b7a10")
#: Matched whole (``fullmatch``): ``$`` would let a trailing newline through.
_COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
DEFAULT_COLLECTION = "default"


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_id(sha256_hex: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"image:{sha256_hex}"))


def window_id(parent_image_id: str, box: Box) -> str:
    x0, y0, x1, y1 = box
    return str(uuid.uuid5(_NAMESPACE, f"window:{parent_image_id}:{x0},{y0},{x1},{y1}"))


def validate_collection(name: str) -> str:
    """Collection names become directory and collection names: keep them boring."""
    if not _COLLECTION_RE.fullmatch(name or ""):
        raise InvalidCollection(
            "collection names are 1-63 characters of letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    return name
