"""The error answers each route declares in the OpenAPI document: what its code paths can
really answer, in our one error shape (``imgsearch_common.schemas.ErrorResponse``, as
``imgsearch_common.errors`` writes it), each with the codes it carries and why.

Routes take one of the named sets below (``responses=SEARCH_BY_IMAGE``); a set is built
from :class:`Answer` parts, and two parts of the same status have their descriptions
joined. Every route with parameters declares our 422, which keeps FastAPI from adding its
own (``HTTPValidationError``, a shape we never send).

Answers that come from outside a route's own code, declared where they apply:

- 400 ``bad_request`` for a ``Host`` the server does not answer to (``TrustedHosts``):
  every operation;
- 400 ``http_400`` for a body FastAPI cannot parse: every write;
- 403 ``forbidden`` for a cross-site browser write (``SameOriginWrites``) and 413
  ``payload_too_large`` for a body over ``MAX_UPLOAD_BYTES`` (``BodySizeLimit``): every
  write (POST, DELETE);
- 429 ``overloaded`` past the limit per client (``ClientAdmission``): the searches.

The document describes the public listener: on the internal one (``INTERNAL_PORT``) every
operation but ``/health`` answers 404 (``InternalListener``), which is not declared; nor is
405 (a method the path does not have: another operation, not this one's answer).
A 500 is never declared: none is meant to happen (the fuzz checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgsearch_common.schemas import ErrorResponse

#: ``responses=`` of a route: status -> FastAPI's additional response.
Responses = dict[int | str, dict[str, Any]]

#: The headers an error answer may carry, as the document states them.
HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer"},
    },
    "WWW-Authenticate": {
        "description": "`Bearer`: the scheme the key may be sent in",
        "required": True,
        "schema": {"type": "string"},
    },
}
_RETRY_AFTER = ("Retry-After",)
_WWW_AUTHENTICATE = ("WWW-Authenticate",)


@dataclass(frozen=True)
class Answer:
    """An error status a route may answer, when (``description``, Markdown), and the
    headers it carries (names in :data:`HEADERS`)."""

    status: int
    description: str
    headers: tuple[str, ...] = ()


def declare(*answers: Answer) -> Responses:
    """The ``responses=`` of ``answers``, each status once (descriptions joined; a part
    given twice counts once)."""
    merged: dict[int, Answer] = {}
    for answer in dict.fromkeys(answers):
        seen = merged.get(answer.status)
        if seen is not None:
            answer = Answer(
                answer.status,
                f"{seen.description}; {answer.description}",
                tuple(dict.fromkeys(seen.headers + answer.headers)),
            )
        merged[answer.status] = answer
    out: Responses = {}
    for status in sorted(merged):
        answer = merged[status]
        declared: dict[str, Any] = {"model": ErrorResponse, "description": answer.description}
        if answer.headers:
            declared["headers"] = {name: HEADERS[name] for name in answer.headers}
        out[status] = declared
    return out


# --- the parts ---------------------------------------------------------------------------

HOST = Answer(400, "`bad_request`: the `Host` header names a server this one does not answer to")
CROSS_SITE = Answer(
    403, "`forbidden`: a page of another site sent this write (`Origin`, `ALLOWED_ORIGINS`)"
)
BODY_UNPARSED = Answer(
    400,
    "`http_400`: the body could not be parsed (a malformed multipart body, JSON that is not UTF-8)",
)
BODY_TOO_LARGE = Answer(413, "`payload_too_large`: the body is over `MAX_UPLOAD_BYTES`")
VALIDATION = Answer(
    422, "`validation_error`: the parameters or the body do not validate (`details` says where)"
)
API_KEY = Answer(
    401,
    "`unauthorized`: `API_KEY` is set and the request does not carry it "
    "(`X-API-Key` or `Authorization: Bearer`)",
    _WWW_AUTHENTICATE,
)
COLLECTION = Answer(400, "`invalid_collection`: the collection name is not valid")
COLLECTION_MISSING = Answer(
    404, "`collection_not_found`: no such collection (the message names the existing ones)"
)
QUEUE_DOWN = Answer(
    503, "`upstream_unavailable`: the job queue (Redis) is unavailable", _RETRY_AFTER
)
MODEL_MISMATCH = Answer(
    409,
    "`model_mismatch`: another model filled the collection (the message names both; "
    "`POST /api/collections/{name}/reindex` moves it to this one)",
)
#: An image the server decodes (an upload, a query, a fetched URL's body).
IMAGE = (
    Answer(400, "`empty_input`: the image is empty"),
    Answer(413, "`image_too_large`: the image has too many pixels"),
    Answer(415, "`unsupported_image`: not an image, or a format the server does not decode"),
    Answer(422, "`corrupt_image`: the image data is truncated or corrupt"),
)
#: A URL the server fetches.
URL = (
    Answer(
        400,
        "`url_refused`: a URL the server does not fetch (scheme, credentials, a private "
        "or loopback address); `url_fetch_failed`: the remote answered badly or too slowly",
    ),
    Answer(413, "`payload_too_large`: the remote body is over `URL_MAX_BYTES`"),
)
#: The searches' admission and the encoder.
SEARCH_BUSY = (
    Answer(
        429,
        "`overloaded`: this client has too many searches in progress "
        "(`SEARCH_PER_CLIENT`), or the encoder is overloaded",
        _RETRY_AFTER,
    ),
    Answer(
        503,
        "`upstream_unavailable`: too many searches in progress (`SEARCH_CONCURRENCY`), the "
        "CPU pool is full, or the encoder is unavailable",
        _RETRY_AFTER,
    ),
)
CPU_POOL_FULL = Answer(503, "`upstream_unavailable`: the CPU pool is full", _RETRY_AFTER)

#: What every write (POST) may answer.
WRITE = (HOST, BODY_UNPARSED, CROSS_SITE, BODY_TOO_LARGE, VALIDATION)
#: Every indexing route: the API key, the job queue.
INDEXING = (HOST, API_KEY, QUEUE_DOWN)
#: What every deletion (DELETE) may answer: the API key, a cross-site browser's write, a
#: body over the limit (none is read).
DELETION = (HOST, API_KEY, CROSS_SITE, BODY_TOO_LARGE, VALIDATION, COLLECTION)

# --- the sets the routes declare ---------------------------------------------------------

SEARCH_BY_IMAGE = declare(
    *WRITE,
    COLLECTION,
    COLLECTION_MISSING,
    MODEL_MISMATCH,
    *IMAGE,
    Answer(400, "`empty_input`: the uploaded file is empty"),
    *SEARCH_BUSY,
)
SEARCH_BY_URL = declare(
    *WRITE, COLLECTION, COLLECTION_MISSING, MODEL_MISMATCH, *URL, *IMAGE, *SEARCH_BUSY
)
SEARCH_BY_TEXT = declare(
    *WRITE,
    COLLECTION,
    COLLECTION_MISSING,
    MODEL_MISMATCH,
    Answer(400, "`empty_input`: the text is blank"),
    *SEARCH_BUSY,
)
INDEX_FOLDER = declare(
    *INDEXING,
    *WRITE,
    COLLECTION,
    MODEL_MISMATCH,
    Answer(
        400,
        "`bad_request`: the path is not absolute, the folder cannot be listed, or has no "
        "files of the requested extensions",
    ),
    Answer(
        403,
        "`forbidden`: the folder is outside `INDEX_ROOTS` (none set: every folder is), "
        "or the server may not read it",
    ),
    Answer(404, "`not_found`: no such folder on the server"),
    Answer(422, "`validation_error`: an extension that is not an image format the server decodes"),
)
INDEX_UPLOAD = declare(
    *INDEXING,
    *WRITE,
    COLLECTION,
    MODEL_MISMATCH,
    Answer(400, "`empty_input`: no file, or an empty one; `bad_request`: too many files"),
    *IMAGE,
    CPU_POOL_FULL,
)
INDEX_URL = declare(*INDEXING, *WRITE, COLLECTION, MODEL_MISMATCH, *URL, *IMAGE, CPU_POOL_FULL)
BATCH_STATUS = declare(*INDEXING, VALIDATION, Answer(404, "`not_found`: no such batch"))
BATCH_LIST = declare(*INDEXING, VALIDATION)
DEAD_LETTERS = declare(*INDEXING, VALIDATION)
REQUEUE = declare(
    *INDEXING,
    *WRITE,
    Answer(422, "`validation_error`: a `batch_id` that is not a batch id's shape"),
)
HEALTH = declare(HOST)
STATUS = declare(HOST, QUEUE_DOWN)
_IMAGE_FILE = (
    HOST,
    COLLECTION,
    COLLECTION_MISSING,
    VALIDATION,
    Answer(404, "`not_found`: no such image, or its file is not served"),
)
IMAGE_BY_ID = declare(*_IMAGE_FILE)
#: ``{filename:path}`` is ``.*``, which stops at a line feed: such a name matches no route.
IMAGE_BY_NAME = declare(
    *_IMAGE_FILE, Answer(404, "`http_404`: the name has a line feed (no route matches it)")
)
COLLECTIONS = declare(HOST)
DELETE_IMAGE = declare(
    *DELETION, COLLECTION_MISSING, Answer(404, "`not_found`: no such image in the collection")
)
DROP_COLLECTION = declare(*DELETION, COLLECTION_MISSING)
REINDEX = declare(
    *INDEXING,
    *WRITE,
    COLLECTION,
    COLLECTION_MISSING,
    Answer(409, "`reindex_running`: a reindex of the collection is running"),
)
REINDEX_STATUS = declare(
    HOST,
    COLLECTION,
    VALIDATION,
    QUEUE_DOWN,
    Answer(404, "`not_found`: no reindex of the collection lately"),
)
DUPLICATES = declare(
    HOST,
    COLLECTION,
    VALIDATION,
    Answer(404, "`collection_not_found`: no such collection (the message names the existing ones)"),
    Answer(
        503,
        "`upstream_unavailable`: a duplicates scan is running and `DUPLICATES_QUEUE` more "
        "wait (or one waited `SEARCH_QUEUE_WAIT_S`)",
        _RETRY_AFTER,
    ),
)
