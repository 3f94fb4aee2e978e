"""The API's side of the model rule (``imgsearch_common.catalog``): a search, or an indexing
request, in a collection that another model filled is refused with 409 ``model_mismatch``
before any work — its vectors would be garbage to this encoder's, or of another size.

The workers' writes are checked too (``vectorstore.writes``), so an indexing request made
while the encoder does not answer is queued: the write refuses it if it must."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imgsearch_common.catalog import ModelRecord, check_model, collection_model
from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.errors import ImgSearchError
from imgsearch_common.ids import validate_collection
from imgsearch_common.vectorstore.base import VectorStore

log = logging.getLogger(__name__)


async def refuse_other_models(
    store: VectorStore, collections: Sequence[str], current: ModelRecord
) -> None:
    """409 when any of ``collections`` was filled by another model than ``current``."""
    for collection in collections:
        check_model(collection, await collection_model(store, collection), current)


async def check_indexing_model(store: VectorStore, encoder: EncoderClient, collection: str) -> None:
    """Before queuing into ``collection``: 409 when the encoder runs another model than the
    one that filled it; nothing when the encoder does not answer (the write decides)."""
    stored = await collection_model(store, validate_collection(collection))
    if stored is None:
        return
    try:
        info = await encoder.info()
    except ImgSearchError as exc:
        log.info("queuing into %r without the model check: %s", collection, exc.message)
        return
    check_model(collection, stored, info.model_record())
