"""The payload contract: what the index stores beside each vector, and what a worker hands
to the index owner.

One type per point kind, written by the worker (``imgsearch_worker.points``) and read by the
search API, the vector-store back-ends and the benchmarks; the field names are the stored
JSON keys, so points written before these types existed read back unchanged.

- :class:`ImagePayload` — a ``"full"`` point: the public :class:`ImageMetadata` plus what
  only the server needs (where the file is on its disk, its content hash, its window count).
  One image is one content: every file holding it in the collection is one
  :class:`FileRecord` of its ``files`` (two copies of a photo are one image, two records).
- :class:`WindowPayload` — a ``"window"`` point: its image's point id and its box.
- :class:`UpsertRequest` — the internal hand-off (``POST /internal/v1/upsert``, see
  docs/CONTRACTS.md): full-image and window points of one or more images;
  :class:`AttachRequest` (``POST /internal/v1/attach``): one more file of an indexed image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .catalog import ModelRecord
from .schemas import ImageMetadata
from .windows import Box

#: Key of a window payload that names its image's point id. The stores keep a keyword
#: index on it and delete an image's windows by filtering on it.
PARENT_ID = "parent_id"
#: Keys of an image payload that ``GET /images/{name}`` finds images by: the name it was
#: indexed under (:attr:`ImagePayload.name`) and its file name. New full-image shards and
#: collections keep a keyword index on each; older ones are scanned.
NAME = "name"
FILENAME = "filename"
IMAGE_NAME_KEYS: tuple[str, ...] = (NAME, FILENAME)
#: Key of an image payload listing the ``stored_path`` of each of its files (an array):
#: ``find(collection, "full", PATHS, path)`` answers the images holding that file.
PATHS = "paths"
#: The payload keys each kind of point (a vector store's ``Kind``) keeps a keyword index on.
#: Shards and collections created before a key was added have no index on it: scanned.
INDEXED_KEYS: dict[str, tuple[str, ...]] = {
    "window": (PARENT_ID,),
    "full": (*IMAGE_NAME_KEYS, PATHS),
}

_M = TypeVar("_M", bound=BaseModel)
#: A point id as the ids module makes them (canonical UUID text).
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class FileRecord(BaseModel):
    """One file holding an image's content: what the index knows of it (and what tells, at
    the next queue of its folder, whether it changed)."""

    model_config = ConfigDict(frozen=True)

    #: What the server reads: the folder file itself, or an upload's content-addressed copy.
    #: Not checked here: a record reads back whatever a stored point says (the serving rule,
    #: ``imgsearch_api.files``, decides what is read); a new one is (:class:`AttachRequest`).
    stored_path: str
    #: What the user knows: the folder file's path, an upload's name, a URL.
    original_path: str
    #: The name it was indexed under (see :attr:`ImagePayload.name`).
    name: str
    source: str = "folder"
    size: int = Field(ge=0)
    #: The file's ``st_mtime_ns`` when the worker read it (``fstat`` of the open file);
    #: None for uploads, URLs and points from before it was recorded.
    mtime_ns: int | None = None

    @property
    def filename(self) -> str:
        """The file name it shows: its name's last part, else its stored file's."""
        return os.path.basename(self.name) or os.path.basename(self.stored_path)


class ImagePayload(ImageMetadata):
    """Payload of an image's full-image point.

    The seed's fields (``filename``, ``original_path``, ``stored_path``, ``name``,
    ``source``, ``file_size``) are the first file record's; :meth:`with_files` keeps them so.
    """

    model_config = ConfigDict(frozen=True)

    #: Where the server reads the file: the folder file itself, or the content-addressed
    #: copy of an upload or a fetched URL. Unset on points from before it was recorded:
    #: :attr:`file_path` falls back to ``original_path`` then.
    stored_path: str | None = None
    sha256: str | None = None
    #: How many window points the image has.
    windows: int | None = None
    #: The name the image was indexed under: a folder file's path under the indexed folder
    #: (``2024/summer/cat.jpg``), an upload's file name; what ``GET /images/{name}`` finds
    #: it by. Unset on points from before it was recorded: :attr:`indexed_name` falls back
    #: to ``filename`` then.
    name: str | None = None
    #: Every file holding this content in this collection, first = the seed's fields.
    #: Unset on points from before several files were recorded: :meth:`file_records`.
    files: list[FileRecord] | None = None
    #: Here, unlike in the public :class:`ImageMetadata`: the ``stored_path`` of every
    #: record (a keyword index: ``find(collection, "full", "paths", path)``).
    paths: list[str] = Field(default_factory=list)
    #: The pixel signature the worker computed from the decoded pixels
    #: (``signatures.PixelSignature``, encoded); unset on points from before it was.
    signature: str | None = None

    @property
    def file_path(self) -> str:
        """The file the server serves and re-scores this image from."""
        return self.stored_path or self.original_path

    @property
    def indexed_name(self) -> str:
        """The name ``GET /images/{name}`` serves this image under."""
        return self.name or self.filename

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)``, or None when the stored size is not a real one."""
        return (self.width, self.height) if self.width > 0 and self.height > 0 else None

    def file_records(self) -> list[FileRecord]:
        """The files holding this image: ``files``, or for a point from before they were
        recorded, the one its seed fields describe (``mtime_ns`` unknown)."""
        if self.files:
            return list(self.files)
        return [
            FileRecord(
                stored_path=self.file_path,
                original_path=self.original_path,
                name=self.indexed_name,
                source=self.source,
                size=self.file_size,
            )
        ]

    def with_files(self, records: Iterable[FileRecord]) -> Self:
        """This payload holding ``records`` (at least one), the seed's fields the first's."""
        files = list(records)
        if not files:
            raise ValueError("an image payload needs at least one file record")
        first = files[0]
        return self.model_copy(
            update={
                "files": files,
                "paths": [r.stored_path for r in files],
                "stored_path": first.stored_path,
                "original_path": first.original_path,
                "name": first.name,
                "filename": first.filename,
                "source": first.source,
                "file_size": first.size,
            }
        )

    def metadata(self) -> ImageMetadata:
        """What a search result shows of the image: the original system's fields and every
        file's ``original_path`` (``paths``, first = ``original_path``), none of the
        server-side ones."""
        shown = self.model_dump(include=set(ImageMetadata.model_fields) - {"paths"})
        paths = list(dict.fromkeys(r.original_path for r in self.file_records()))
        return ImageMetadata.model_validate({**shown, "paths": paths})

    @classmethod
    def read(cls, payload: Mapping[str, Any] | None) -> Self | None:
        """The payload of a stored point, or None when it is missing or not one of ours."""
        return _read(cls, payload)


class WindowPayload(BaseModel):
    """Payload of a window point: its image and its box in the image's pixels."""

    model_config = ConfigDict(frozen=True)

    parent_id: str = Field(min_length=1)
    #: ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive (see ``imgsearch_common.windows``).
    box: Box

    @classmethod
    def read(cls, payload: Mapping[str, Any] | None) -> Self | None:
        """The payload of a stored point, or None when it is missing or not one of ours."""
        return _read(cls, payload)


def merge_records(old: Iterable[FileRecord], new: Iterable[FileRecord]) -> list[FileRecord]:
    """``old`` with each of ``new`` in: a record of the same ``stored_path`` replaced where
    it stood, another one appended."""
    merged = {r.stored_path: r for r in old}
    for record in new:
        merged[record.stored_path] = record
    return list(merged.values())


def _read(model: type[_M], payload: Mapping[str, Any] | None) -> _M | None:
    if not payload:
        return None
    try:
        return model.model_validate(payload)
    except ValidationError:
        return None


# --- the hand-off ---------------------------------------------------------------------------


class ImagePointIn(BaseModel):
    id: str
    vector: list[float]
    payload: ImagePayload


class WindowPointIn(BaseModel):
    id: str
    vector: list[float]
    payload: WindowPayload


class UpsertRequest(BaseModel):
    """Internal: a worker hands the points of one or more images to the index owner."""

    collection: str
    full: list[ImagePointIn] = Field(default_factory=list)
    windows: list[WindowPointIn] = Field(default_factory=list)
    #: The model that made the vectors (``imgsearch_common.catalog``): the first write into
    #: a collection records it, a write by another model is refused (409). Unset: a writer
    #: from before fingerprints, not checked.
    model: ModelRecord | None = None


class AttachRequest(BaseModel):
    """Internal: a worker whose file's content is indexed already asks the index owner to
    add the file to that image, with no encoding (``POST /internal/v1/attach``)."""

    collection: str
    #: The image's point id: a UUID (``ids.image_id`` of the file's SHA-256).
    image_id: str = Field(pattern=_UUID)
    file: FileRecord

    @field_validator("file")
    @classmethod
    def _names_a_file(cls, value: FileRecord) -> FileRecord:
        if not value.stored_path:
            raise ValueError("the file's stored_path must not be empty")
        return value


class AttachAnswer(BaseModel):
    #: False: no such image (the worker indexes the file in full).
    attached: bool
