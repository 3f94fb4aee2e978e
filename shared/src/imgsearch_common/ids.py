"""Deterministic point ids: replaying a job writes the same points again; and the names of
collections.

An image's id is derived from its *content* (SHA-256 of the file bytes), so the
same file indexed twice, or a job delivered twice, yields the same points; a
window's id adds its box. Ids are UUIDs because both Qdrant back-ends accept them.

A *logical* collection name is what users type (:func:`validate_collection`: no '.').
A *physical* collection holds the points: the plain ``NAME`` (made by the first write
into ``NAME``, and every collection from before reindexing existed), or ``NAME.rN``
(N >= 1, filled by a reindex; ``NAME`` then becomes an alias of it). ``NAME.r0`` is a
second name of the plain ``NAME``: it names that collection even while ``NAME`` is an
alias of another one (a store's ``resolve`` answers it for a plain collection). The '.'
can never clash with a user's name.
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
_PHYSICAL_RE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,62})\.r(?P<n>0|[1-9][0-9]{0,8})")
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


def physical_name(name: str, n: int) -> str:
    """Revision ``n`` of the logical collection ``name``: ``NAME.rN`` (``NAME.r0``: the plain
    collection ``NAME``)."""
    validate_collection(name)
    if n < 0:
        raise ValueError(f"a revision is 0 or more, not {n}")
    return f"{name}.r{n}"


def logical_name(physical: str) -> str:
    """The logical name of a physical (or logical) collection name: ``cats.r2`` -> ``cats``."""
    match = _PHYSICAL_RE.fullmatch(physical)
    return match.group("name") if match else validate_collection(physical)


def revision(physical: str) -> int:
    """The ``N`` of ``NAME.rN``; 0 for a plain (logical) name."""
    match = _PHYSICAL_RE.fullmatch(physical)
    if match:
        return int(match.group("n"))
    validate_collection(physical)
    return 0


def validate_physical(name: str) -> str:
    """A name a vector store takes: a logical name or a physical ``NAME.rN``."""
    if _PHYSICAL_RE.fullmatch(name or ""):
        return name
    try:
        return validate_collection(name)
    except InvalidCollection:
        raise InvalidCollection(
            "collection names are 1-63 characters of letters, digits, '_' and '-', "
            "starting with a letter or digit (a reindexed one's may end in '.r' and a number)"
        ) from None
