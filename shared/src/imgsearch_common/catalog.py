"""Which model filled a collection: the record each physical collection keeps, and the
one rule that never lets two models' vectors meet.

A CLIP model's vectors mean nothing to another model (another size, or the same size and
garbage similarities), so every physical collection records the model of its first write
(:class:`ModelRecord`, kept by the vector store: ``VectorStore.get_record``/``put_record``).
A later write, a search or an indexing request made with another encoder is refused with
:class:`ModelMismatch` (409) naming both models, and ``imgsearch reindex`` moves the
collection to the new model (``imgsearch_api.reindex``).

Two encoders are the same model when their *fingerprints* are equal: a hash of the model's
name, its pretrained source, its input size and its weights (the encoder computes it at
load and names it in ``/health`` and in the ``X-Model-Fingerprint`` header of each embed
answer). The engine and the precision are not part of it: ONNX int8 vectors of a model are
its torch fp32 vectors within the fidelity bound (``tests/encoder/test_onnx_engine.py``),
so a collection indexed with one may be searched with the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ImgSearchError

if TYPE_CHECKING:  # the encoder imports this module, and has no vector store
    from .vectorstore.base import VectorStore

#: Header of the encoder's embed answers: the fingerprint of the model that made them.
FINGERPRINT_HEADER = "X-Model-Fingerprint"
#: Key of the model in a collection's record (the record may grow other keys).
RECORD_KEY = "model"


class ModelMismatch(ImgSearchError):
    """The collection was filled by another model than the encoder's."""

    status_code = 409
    code = "model_mismatch"
    permanent = True


class ModelChanged(ModelMismatch):
    """An encoder answered with another model than the caller expected: it was restarted
    with other weights since the caller read its ``/health``. Worth a retry (the caller
    reads the model again), unlike a collection filled by another model."""

    permanent = False


class ModelRecord(BaseModel):
    """The model that filled a collection (or that an encoder runs)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str = Field(min_length=1, max_length=200)
    pretrained: str = Field(max_length=500)
    image_size: int = Field(ge=1)
    dim: int = Field(ge=1)
    fingerprint: str = Field(min_length=1, max_length=128)

    def describe(self) -> str:
        """``ViT-B-32 (laion2b_s34b_b79k, 224 px, 512-d, weights 3f2a…)``: for messages."""
        return (
            f"{self.model} ({self.pretrained or 'no weights'}, {self.image_size} px, "
            f"{self.dim}-d, weights {self.fingerprint[:12]})"
        )

    def record(self) -> dict[str, Any]:
        """This model as a collection's record."""
        return {RECORD_KEY: self.model_dump()}

    @classmethod
    def of_record(cls, record: Mapping[str, Any] | None) -> Self | None:
        """The model a collection's record names; None for no record, or one that does not
        name a model (a collection from before records: it is adopted by its next write)."""
        if not record or not isinstance(record.get(RECORD_KEY), Mapping):
            return None
        try:
            return cls.model_validate(record[RECORD_KEY])
        except ValidationError:
            return None


def model_fingerprint(model: str, pretrained: str, image_size: int, weights_sha256: str) -> str:
    """The fingerprint of a model: what an encoder names in ``/health``."""
    facts = f"{model}\n{pretrained}\n{image_size}\n{weights_sha256}"
    return hashlib.sha256(facts.encode()).hexdigest()[:32]


def check_model(collection: str, stored: ModelRecord | None, current: ModelRecord) -> None:
    """Refuse to mix ``current``'s vectors with the ones of ``collection`` (filled by
    ``stored``; None: a collection with no record, which any model may fill)."""
    if stored is None or stored.fingerprint == current.fingerprint:
        return
    raise ModelMismatch(
        f"collection {collection!r} was indexed with {stored.describe()}, but the encoder runs "
        f"{current.describe()}: search it with the model that filled it, or move it to the "
        f"new model with `imgsearch reindex --collection {collection}` "
        f"(POST /api/collections/{collection}/reindex)"
    )


async def claim_collection(
    store: VectorStore, collection: str, model: ModelRecord | None
) -> ModelRecord | None:
    """Before vectors of ``model`` are written into ``collection``: refuse them when another
    model filled it (:class:`ModelMismatch`), and record ``model`` on the first write. The
    collection's model is returned. ``model`` None: a writer from before fingerprints, not
    checked. Callers serialise the writes of one collection (``vectorstore.writes``), so
    two first writes cannot both record."""
    record = await store.get_record(collection)
    stored = ModelRecord.of_record(record)
    if model is None:
        return stored
    check_model(collection, stored, model)
    if stored is None:
        await store.put_record(collection, {**(record or {}), **model.record()})
    return model


async def collection_model(store: VectorStore, collection: str) -> ModelRecord | None:
    """The model that filled ``collection`` (None: empty, or from before records)."""
    return ModelRecord.of_record(await store.get_record(collection))
