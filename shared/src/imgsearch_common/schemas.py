"""Request and response models of the public REST API (the internal hand-off and the
stored payloads: ``payloads``).

The response shape follows the original system's (``results[]`` with ``id``, ``score``,
``metadata``, ``matched_regions``, ``avg_score``, ``match_type``, plus
``processing_time_ms``) and adds the matched windows' boxes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from .ids import DEFAULT_COLLECTION

#: What a batch id looks like (ours are 32 hex digits); anything else names no batch.
BATCH_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"

MAX_LIMIT = 100
#: Most collections one search names (``collections``).
MAX_SEARCH_COLLECTIONS = 16
MatchType = Literal["full", "partial_to_full", "full_and_partial", "contains"]
#: What a result is to its query, in words a page can show (``imgsearch_api.search.kinds``
#: decides): ``same`` image; the result ``contains_query`` (a region of it matches); the
#: result is ``in_query`` (it appears inside the query); otherwise ``similar``.
ResultKind = Literal["same", "contains_query", "in_query", "similar"]
#: ``region``: the query may be a part of an indexed picture (windows of the index);
#: ``contains``: an indexed picture may appear inside the query (windows of the query);
#: ``auto``: both (costs the query windows' encoding).
MatchMode = Literal["auto", "region", "contains"]


class SearchOptions(BaseModel):
    use_full_matching: bool = True
    use_partial_matching: bool = True
    remove_text: bool = False
    enhance_image: bool = False
    limit: int = Field(default=10, ge=1, le=MAX_LIMIT)
    collection: str = DEFAULT_COLLECTION
    #: Results scoring below this are dropped (the no-match rule). None = the server's
    #: default (``DEFAULT_MIN_SCORE``).
    min_score: float | None = Field(default=None, ge=-1.0, le=2.0)
    #: None = the server's default (``DEFAULT_MATCH_MODE``, ``region`` unless set).
    match_mode: MatchMode | None = None
    #: Several collections searched at once, results merged by score (each result names
    #: its ``collection``); searched instead of ``collection``. Unset or empty: ``collection``.
    collections: list[str] | None = Field(default=None, max_length=MAX_SEARCH_COLLECTIONS)


class UrlSearchRequest(SearchOptions):
    url: str = Field(min_length=1, max_length=4096)


class TextSearchRequest(BaseModel):
    text: str = Field(min_length=1, max_length=1000)
    use_full_matching: bool = True
    use_partial_matching: bool = True
    limit: int = Field(default=10, ge=1, le=MAX_LIMIT)
    collection: str = DEFAULT_COLLECTION
    min_score: float | None = Field(default=None, ge=-1.0, le=2.0)
    #: As in :class:`SearchOptions`.
    collections: list[str] | None = Field(default=None, max_length=MAX_SEARCH_COLLECTIONS)


class ImageMetadata(BaseModel):
    filename: str
    original_path: str
    file_size: int
    indexed_at: float
    width: int
    height: int
    collection: str
    source: str = "folder"
    #: Every path holding this image's content (``original_path`` of each file: a folder
    #: file's path, an upload's name, a URL), first = ``original_path``.
    paths: list[str] = Field(default_factory=list)


class MatchedBox(BaseModel):
    """A matched window (or a box re-scored around one): its box in result-image pixels
    ``[x0, y0, x1, y1]`` and score.

    For ``contains`` matches: the part of the result image that the query shows."""

    box: list[int]
    score: float


class SearchResult(BaseModel):
    id: str
    score: float
    metadata: ImageMetadata | None
    matched_regions: int
    avg_score: float | None
    match_type: MatchType
    full_score: float | None = None
    partial_score: float | None = None
    #: Best score of a query window against this image (``contains``/``auto`` modes).
    contains_score: float | None = None
    matched_boxes: list[MatchedBox] = Field(default_factory=list)
    #: ``contains`` matches: where this image lies in the query, query pixels
    #: ``[x0, y0, x1, y1]``.
    query_box: list[int] | None = None
    image_url: str
    #: The collection this image was found in (a search may name several); always set by
    #: this server (the default stands for answers of servers from before it was).
    collection: str = DEFAULT_COLLECTION
    kind: ResultKind = Field(
        default="similar",
        description="What this image is to the query: `same` (the same picture: a copy, "
        "re-encoded or resized, checked on its pixels), `contains_query` (a region of this "
        "image matches the query, found there in the pixels too; for a text query: a "
        "region scored above the whole image), `in_query` (this image appears inside the "
        "query, found there in the pixels), `similar` (anything else). Text queries are "
        "never `same`.",
    )
    best_box: MatchedBox | None = Field(
        default=None,
        description="The one box to draw by default, in this image's pixels: the whole "
        "image for `same` (with the full-image score), the matched region for "
        "`contains_query`, the part of this image the query shows for `in_query`; null "
        "for `similar` (`matched_boxes` still lists what matched).",
    )
    thumbnail_url: str = Field(
        default="",
        description="A small WebP of this image (256 px on its long side): "
        "`/api/image/{id}/thumbnail?size=256&collection=...`; always set by this server.",
    )


class SearchResponse(BaseModel):
    results: list[SearchResult]
    processing_time_ms: float
    #: Server-side time split (decode, encode, vector_search, aggregate, ...).
    timings_ms: dict[str, float] = Field(default_factory=dict)
    #: Bytes allocated on the encoder's GPU, as its last answer reported them
    #: (``X-GPU-Memory-Used``); 0 on the CPU. The original system's field.
    gpu_memory_used: int = 0


class IndexedCounts(BaseModel):
    """Points of one collection, or of all: images and their windows ("regions")."""

    full_images: int
    partial_images: int


class StatusResponse(BaseModel):
    """``GET /api/status``: the original system's ``status`` and ``indexed_images`` (totals),
    and per collection, and the queue's depth."""

    status: Literal["ok"] = "ok"
    indexed_images: IndexedCounts
    collections: dict[str, IndexedCounts] = Field(default_factory=dict)
    #: ``pending`` (queued and delayed jobs), ``delayed``, ``dead_letters``.
    queue: dict[str, int] = Field(default_factory=dict)


class HealthResponse(BaseModel):
    """``GET /health``: the original system's fields, and ours (``checks``)."""

    #: ``degraded``: something a check names is unavailable (still answered 200).
    status: Literal["healthy", "degraded"]
    #: The encoder runs its model on a GPU (false while it does not answer).
    gpu_available: bool
    #: The vector store answered (Qdrant Edge or the Qdrant server).
    qdrant_connected: bool
    #: Points over every collection; null while the vector store does not answer.
    collections: IndexedCounts | None
    #: One line per dependency: ``ok ...``, or ``unavailable``.
    checks: dict[str, str]


class CollectionSummary(BaseModel):
    """A collection of ``GET /api/collections``: its counts and the model that filled it."""

    name: str
    images: int
    #: Window points ("regions").
    windows: int
    #: The model its vectors were made with, as recorded at its first write (``model``,
    #: ``pretrained``, ``image_size``, ``dim``, ``fingerprint``); null when none is recorded.
    model: dict[str, Any] | None = None


class CollectionsResponse(BaseModel):
    """``GET /api/collections``: every collection, sorted by name."""

    collections: list[CollectionSummary]


class ImageDeleted(BaseModel):
    """``DELETE /api/images/{image_id}``: the image and its windows are gone."""

    id: str
    collection: str


class CollectionDropped(BaseModel):
    """``DELETE /api/collections/{name}``: what the collection held when it was dropped."""

    name: str
    images: int
    windows: int


class FolderIndexRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    collection: str = DEFAULT_COLLECTION
    extensions: list[str] | None = None
    recursive: bool = True
    #: Also remove from the index the files under the folder that are gone, and follow
    #: those that moved (same content: no encoding).
    sync: bool = False


class UrlIndexRequest(BaseModel):
    url: str = Field(min_length=1, max_length=4096)
    collection: str = DEFAULT_COLLECTION


class SyncCounts(BaseModel):
    """What queuing a folder found, file by file: ``new`` (not in the index: queued),
    ``changed`` (size or modification time differ: queued), ``unchanged`` (skipped),
    ``moved`` (gone from one path, same content at a new one: its path updated, no job),
    ``removed`` (gone: taken out of the index; with ``sync`` only)."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0


class BatchQueued(SyncCounts):
    batch_id: str
    queued: int
    collection: str


class BatchError(BaseModel):
    path: str
    reason: str
    message: str


class BatchStatus(SyncCounts):
    batch_id: str
    collection: str
    #: What was queued, as it was asked for: the folder's path (``(sync)`` after it when
    #: the folder was synced), ``"3 uploaded files"`` or the one file's name, the URL; the
    #: re-queued dead letters; "" for batches from before labels (or of a reindex).
    label: str = ""
    total: int
    done: int
    failed: int
    pending: int
    finished: bool
    created_at: float
    errors: list[BatchError] = Field(default_factory=list)


class BatchList(BaseModel):
    """``GET /api/index/batches``: the recent batches still known, newest first (each
    with its first errors only: ``GET /api/index/batches/{batch_id}`` gives more)."""

    batches: list[BatchStatus]


#: A dead letter's reason as the queue writes it (``retries_exhausted``, ``missing_file``).
DeadLetterReason = Annotated[str, Field(min_length=1, max_length=64)]


class RequeueRequest(BaseModel):
    """``POST /api/index/dead-letters/requeue``: which dead letters go back to the queue.

    ``reasons`` unset: every reason (``malformed_job`` never: those entries are not jobs).
    ``limit`` unset: all that match, oldest first."""

    reasons: list[DeadLetterReason] | None = Field(default=None, min_length=1, max_length=50)
    #: At most the dead-letter list's length (``MAX_DEAD_LETTERS`` in ``jobs``).
    limit: int | None = Field(default=None, ge=1, le=10_000)
    #: Only the dead letters of this batch (the failed files of ``GET
    #: /api/index/batches/{batch_id}``); unset: of any batch.
    batch_id: str | None = Field(default=None, pattern=BATCH_ID_PATTERN)


class RequeueResult(BaseModel):
    requeued: int
    #: The requeued jobs count in new batches, one per collection: follow them there.
    batches: list[BatchQueued] = Field(default_factory=list)


class ErrorDetail(BaseModel):
    """One reason a request did not validate: where (``loc``: ``body``, ``query``, ``path``,
    ``header`` or ``cookie``, then the field's path) and why (``msg``)."""

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int]
    msg: str


def _no_default(schema: dict[str, Any]) -> None:
    """The schema of a field that is absent when unset: no `default: null` beside its type."""
    schema.pop("default", None)


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code`` (``invalid_collection``, ``url_refused``,
    ``validation_error``, ``overloaded``, ...; ``imgsearch_common.errors``) and a message
    safe to show."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    #: Only on ``validation_error`` answers of a request that did not validate; absent
    #: otherwise (never null).
    details: list[ErrorDetail] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_no_default
    )


class ErrorResponse(BaseModel):
    """Every error answer of every service: ``{"error": {"code", "message", "details"?}}``,
    as ``imgsearch_common.errors`` writes it. Described here for the OpenAPI document."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


ReindexState = Literal["filling", "catching_up", "switching", "done", "failed"]


class ReindexStatus(BaseModel):
    """A collection's reindex (``POST /api/collections/{name}/reindex``): the physical
    collection it fills (``target``) while searches use ``source``, its step, and the
    progress of the batch that re-embeds the files (``GET /api/index/batches/{batch_id}``
    says more)."""

    collection: str
    source: str
    target: str
    state: ReindexState
    batch_id: str = ""
    #: The images written to ``source`` while the first batch ran ("" when none were).
    catch_up_batch_id: str = ""
    queued: int = 0
    done: int = 0
    failed: int = 0
    started_at: float = 0.0
    finished_at: float | None = None
    error: str | None = None


# --- duplicates (GET /api/duplicates) ------------------------------------------------------

DuplicateTier = Literal["exact", "near", "contained"]
DUPLICATE_TIERS: tuple[DuplicateTier, ...] = ("exact", "near", "contained")
#: Most groups one tier of ``GET /api/duplicates`` answers (``limit``).
MAX_DUPLICATE_GROUPS = 1000


class DuplicateItem(BaseModel):
    """One file of a duplicate group: the image it holds and where it is."""

    id: str
    #: The file (an ``original_path`` of the image; for ``near`` and ``contained`` its first).
    path: str
    width: int
    height: int
    file_size: int


class DuplicateEvidence(BaseModel):
    """What made a pair: ``check`` names the test it passed, the other fields its measures.

    - ``content``: the same SHA-256 (one image held by several files);
    - ``pixels``: identical decoded pixels in two different files;
    - ``thumbnail``: ``near`` — the grey thumbnails of the pixel signatures correlate
      (``correlation``) and so do their gradients (``detail``), at the same aspect ratio;
    - ``located``: ``contained`` — the child found in the parent's pixels at ``box``
      (``correlation`` of the pixels there, ``detail`` of their gradients), covering
      ``area`` of the parent.

    ``clip_score``: the model's cosine similarity that proposed the pair (``near``: of the
    full views; ``contained``: of the child's view and the parent's best window, whose box
    is ``window``), None when the pixels proposed it. ``source``: where the pixels came
    from, ``signature`` (stored at indexing) or ``file`` (read now).
    """

    check: Literal["content", "pixels", "thumbnail", "located"]
    clip_score: float | None = None
    correlation: float | None = None
    detail: float | None = None
    #: ``contained``: ``[x0, y0, x1, y1]`` of the child in the parent's pixels.
    box: list[int] | None = None
    area: float | None = None
    window: list[int] | None = None
    source: Literal["payload", "signature", "file"] = "signature"


class DuplicatePair(BaseModel):
    """Two items of a group (indices into ``items``; ``contained``: ``a`` is the parent)."""

    a: int
    b: int
    #: The verification's score (1 for ``exact``; ``near``, ``contained``: ``correlation``).
    score: float
    evidence: DuplicateEvidence


class DuplicateGroup(BaseModel):
    """Files or images that are copies of one picture (``exact``, ``near``), or a picture
    and the crops of it (``contained``: the parent first)."""

    tier: DuplicateTier
    items: list[DuplicateItem]
    pairs: list[DuplicatePair]


class DuplicatesResponse(BaseModel):
    collection: str
    tiers: list[DuplicateTier]
    groups: list[DuplicateGroup]
    #: Images examined.
    images: int
    #: A tier reached ``limit`` groups and stopped looking: more may exist.
    truncated: bool = False
    processing_time_ms: float
    timings_ms: dict[str, float] = Field(default_factory=dict)
