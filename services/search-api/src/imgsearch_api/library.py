"""What the index holds, and taking things out of it: the collections with their counts,
deleting an image, dropping a collection (``routes/library.py``), and the one check of
every request that names a collection (:func:`require_collections`).

A request naming a collection that does not exist is answered 404 ``collection_not_found``,
whose message names the collections that do exist: a typo is then one look away from its
fix, where an empty answer would look like "nothing matched". The default collection is
the exception for reads: the seed's clients never name one, and a fresh install answers
their searches with no results until something is indexed.

Deleting an image takes its full point and its windows out of the collection; from then on
no search finds it (stage two re-scores only what stage one found), and its file is no
longer served, neither by id nor by name (``routes/pages.py``: only files a point names
are served). The file itself is left where it is: a folder's file is the user's, and an
upload's copy may be another collection's image too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from imgsearch_common.catalog import collection_model
from imgsearch_common.errors import CollectionNotFound, NotFound
from imgsearch_common.ids import DEFAULT_COLLECTION, validate_collection
from imgsearch_common.payloads import PARENT_ID
from imgsearch_common.schemas import (
    CollectionDropped,
    CollectionSummary,
    ImageDeleted,
)
from imgsearch_common.vectorstore.base import VectorStore
from imgsearch_common.vectorstore.writes import collection_lock

#: Most existing collections a ``collection_not_found`` message names (then "and N more").
MAX_NAMED = 50


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def not_found_message(missing: Sequence[str], existing: Sequence[str]) -> str:
    """``no collection 'x'; the collections are: 'a', 'b'`` (or ``there are no collections
    yet``); at most :data:`MAX_NAMED` of ``existing`` named."""
    head = (
        f"no collection {_quoted(missing)}"
        if len(missing) == 1
        else (f"no collections {_quoted(missing)}")
    )
    if not existing:
        return f"{head}; there are no collections yet"
    shown = _quoted(existing[:MAX_NAMED])
    more = len(existing) - MAX_NAMED
    return f"{head}; the collections are: {shown}" + (f" and {more} more" if more > 0 else "")


async def require_collections(
    store: VectorStore, names: Sequence[str], *, default_exists: bool = True
) -> None:
    """Each of ``names`` valid (else 400 ``invalid_collection``) and existing (else 404
    ``collection_not_found``). ``default_exists``: the default collection counts as an
    existing, empty one (reads); False where nothing would be done to it (a drop)."""
    for name in names:
        validate_collection(name)
    wanted = [n for n in names if not (default_exists and n == DEFAULT_COLLECTION)]
    if not wanted:
        return
    existing = await store.collections()
    missing = [n for n in dict.fromkeys(wanted) if n not in existing]
    if missing:
        raise CollectionNotFound(not_found_message(missing, existing))


def _image_id(text: str) -> str:
    """The canonical form of an image id (a UUID); 404 for anything else (no image has it)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise NotFound("no such image") from None


@dataclass(frozen=True)
class Library:
    store: VectorStore

    async def summaries(self) -> list[CollectionSummary]:
        """Every collection, sorted by name, with its counts."""
        names = await self.store.collections()
        return list(await asyncio.gather(*(self._summary(name) for name in names)))

    async def _summary(self, name: str) -> CollectionSummary:
        images, windows = await asyncio.gather(
            self.store.count(name, "full"), self.store.count(name, "window")
        )
        model = await collection_model(self.store, name)
        return CollectionSummary(
            name=name, images=images, windows=windows, model=model.model_dump() if model else None
        )

    async def delete_image(self, collection: str, image_id: str) -> ImageDeleted:
        """Take the image and its windows out of ``collection``; 404 when it holds neither
        (windows left without their image, by a delete that raced a write, go too)."""
        await require_collections(self.store, [collection])
        point_id = _image_id(image_id)
        # Between the collection's writes (``writes.py``), never inside one: a write merges
        # file records into the image it read, and must not bring a deleted one back.
        async with collection_lock(self.store, collection):
            full, windows = await asyncio.gather(
                self.store.retrieve(collection, "full", [point_id]),
                self.store.find(collection, "window", PARENT_ID, point_id, 1),
            )
            if not full and not windows:
                raise NotFound("no such image")
            await self.store.delete_image(collection, point_id)
        return ImageDeleted(id=point_id, collection=collection)

    async def drop(self, name: str) -> CollectionDropped:
        """Delete the collection, both kinds of points; 404 when it does not exist."""
        await require_collections(self.store, [name], default_exists=False)
        async with collection_lock(self.store, name):
            images, windows = await asyncio.gather(
                self.store.count(name, "full"), self.store.count(name, "window")
            )
            dropped = await self.store.drop_collection(name)
        if not dropped:
            # Dropped by another request since the check.
            raise CollectionNotFound(not_found_message([name], await self.store.collections()))
        return CollectionDropped(name=name, images=images, windows=windows)
