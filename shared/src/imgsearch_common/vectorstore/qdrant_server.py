"""Qdrant server back-end (``qdrant-client``), used when ``QDRANT_URL`` is set.

A logical collection ``C`` is two Qdrant collections, ``<prefix>C__full`` and
``<prefix>C__window``, created by the first upsert with the vector size of its vectors.
``url=":memory:"`` runs qdrant-client's in-process local mode (exact search, no payload
indexes): what the contract tests use where no server runs. ``drop_collection`` deletes
both; an upsert after it (in any process) creates them again.

Errors: a server that cannot be reached, times out or answers 5xx becomes
:class:`UpstreamUnavailable` (its message names neither the URL nor the key); a missing
collection reads as empty; a rejected request (wrong dimension, bad id) is a BadRequest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

import httpx
import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import BadRequest, UpstreamUnavailable
from ..ids import validate_collection
from ..payloads import INDEXED_KEYS, PARENT_ID
from ._util import (
    check_find,
    check_target,
    dimension_error,
    in_request_order,
    search_queries,
    upsert_vectors,
)
from .base import KINDS, Hit, Kind, PointRecord, VectorStore

log = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY = ":memory:"
DEFAULT_PREFIX = "imgsearch_"
_SEPARATOR = "__"


class _Missing(Exception):
    """The Qdrant collection does not exist (reads answer empty)."""


class _AlreadyExists(Exception):
    """Another creator won the race (success for us)."""


class QdrantServerVectorStore(VectorStore):
    """Vector store on a Qdrant server (or qdrant-client's in-memory mode, ``":memory:"``).

    ``shards``, ``replication_factor`` and ``write_consistency`` go to ``create_collection``
    only when given (the server's defaults otherwise); they matter on a cluster.
    ``transport`` replaces the HTTP transport (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int | None = None,
        replication_factor: int | None = None,
        write_consistency: int | None = None,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        timeout_s: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.prefix = prefix
        self._local = url == MEMORY
        self._shards = shards
        self._replication_factor = replication_factor
        self._write_consistency = write_consistency
        self._hnsw_m = hnsw_m
        self._hnsw_ef_construct = hnsw_ef_construct
        if self._local:
            self._client = AsyncQdrantClient(location=MEMORY)
        else:
            # check_compatibility=False: the check is a blocking request in a thread at
            # construction that only ever emits a warning. Extra keyword arguments of the
            # client reach its httpx.AsyncClient, hence ``transport``.
            extra: dict[str, Any] = {"transport": transport} if transport is not None else {}
            self._client = AsyncQdrantClient(
                url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False, **extra
            )
        self._known: set[str] = set()
        self._create_locks: dict[str, asyncio.Lock] = {}

    # --- naming and configuration ---------------------------------------------------------

    def qdrant_name(self, collection: str, kind: Kind) -> str:
        return f"{self.prefix}{collection}{_SEPARATOR}{kind}"

    def collection_create_kwargs(self, dim: int) -> dict[str, Any]:
        """The keyword arguments ``create_collection`` receives for vectors of ``dim`` floats."""
        kwargs: dict[str, Any] = {
            "vectors_config": models.VectorParams(size=dim, distance=models.Distance.COSINE),
            "hnsw_config": models.HnswConfigDiff(
                m=self._hnsw_m, ef_construct=self._hnsw_ef_construct
            ),
        }
        if self._shards is not None:
            kwargs["shard_number"] = self._shards
        if self._replication_factor is not None:
            kwargs["replication_factor"] = self._replication_factor
        if self._write_consistency is not None:
            kwargs["write_consistency_factor"] = self._write_consistency
        return kwargs

    # --- the interface ----------------------------------------------------------------------

    async def upsert(self, collection: str, kind: Kind, points: Sequence[PointRecord]) -> None:
        vectors, dim = upsert_vectors(collection, kind, points)
        if not vectors:
            return
        name = self.qdrant_name(collection, kind)
        structs = [
            models.PointStruct(id=p.id, vector=v, payload=p.payload)
            for p, v in zip(points, vectors, strict=True)
        ]
        await self._ensure(name, kind, dim)
        try:
            await self._rpc(self._client.upsert(name, points=structs, wait=True))
        except _Missing:
            # Deleted behind our back since we created it: create again, once.
            self._known.discard(name)
            await self._ensure(name, kind, dim)
            await self._rpc(self._client.upsert(name, points=structs, wait=True))

    async def search(
        self,
        collection: str,
        kind: Kind,
        vectors: Sequence[Sequence[float] | np.ndarray],
        limit: int,
    ) -> list[list[Hit]]:
        queries = search_queries(collection, kind, vectors)
        if not queries:
            return []
        if limit < 1:
            return [[] for _ in queries]
        requests = [models.QueryRequest(query=q, limit=limit, with_payload=True) for q in queries]
        name = self.qdrant_name(collection, kind)
        try:
            responses = await self._rpc(self._client.query_batch_points(name, requests=requests))
        except _Missing:
            return [[] for _ in queries]
        return [
            [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r.points]
            for r in responses
        ]

    async def retrieve(self, collection: str, kind: Kind, ids: Sequence[str]) -> list[Hit]:
        check_target(collection, kind)
        if not ids:
            return []
        name = self.qdrant_name(collection, kind)
        try:
            records = await self._rpc(
                self._client.retrieve(name, ids=list(ids), with_payload=True, with_vectors=False)
            )
        except _Missing:
            return []
        hits = [Hit(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]
        return in_request_order(hits, ids)

    async def find(
        self, collection: str, kind: Kind, key: str, value: str, limit: int
    ) -> list[Hit]:
        check_find(collection, kind, key, value)
        if limit < 1:
            return []
        match = models.Filter(
            must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))]
        )
        try:
            records, _ = await self._rpc(
                self._client.scroll(
                    self.qdrant_name(collection, kind),
                    scroll_filter=match,
                    limit=limit,
                    with_payload=True,
                    with_vectors=False,
                )
            )
        except _Missing:
            return []
        return [Hit(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]

    async def scroll(
        self,
        collection: str,
        kind: Kind,
        *,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Hit], str | None]:
        check_target(collection, kind)
        if limit < 1:
            raise ValueError(f"a page holds at least one point, not {limit}")
        try:
            records, next_offset = await self._rpc(
                self._client.scroll(
                    self.qdrant_name(collection, kind),
                    limit=limit,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            )
        except _Missing:
            return [], None
        hits = [
            Hit(
                id=str(r.id),
                score=0.0,
                payload=r.payload or {},
                vector=_dense(r.vector) if with_vectors else None,
            )
            for r in records
        ]
        return hits, None if next_offset is None else str(next_offset)

    async def set_payload(
        self, collection: str, kind: Kind, point_id: str, payload: dict[str, Any]
    ) -> bool:
        check_target(collection, kind)
        name = self.qdrant_name(collection, kind)
        try:
            # A server answers 404 for a missing point; local mode raises KeyError. Asking
            # first makes both a plain False (a delete racing the write is a 404 then).
            found = await self._rpc(
                self._client.retrieve(name, ids=[point_id], with_payload=False, with_vectors=False)
            )
            if not found:
                return False
            await self._rpc(
                self._client.overwrite_payload(name, payload=payload, points=[point_id], wait=True)
            )
        except (_Missing, KeyError):
            return False
        return True

    async def drop_collection(self, collection: str) -> bool:
        validate_collection(collection)
        existed = False
        for kind in KINDS:
            name = self.qdrant_name(collection, kind)
            # Forgotten first: an upsert of this process after the drop creates it again
            # (others find it missing and create it again, see ``upsert``).
            self._known.discard(name)
            with contextlib.suppress(_Missing):
                existed |= bool(await self._rpc(self._client.delete_collection(name)))
            self._known.discard(name)
        return existed

    async def count(self, collection: str, kind: Kind) -> int:
        check_target(collection, kind)
        try:
            result = await self._rpc(
                self._client.count(self.qdrant_name(collection, kind), exact=True)
            )
        except _Missing:
            return 0
        return result.count

    async def delete_image(self, collection: str, image_id: str) -> None:
        validate_collection(collection)
        by_id = models.PointIdsList(points=[image_id])
        by_parent = models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key=PARENT_ID, match=models.MatchValue(value=image_id))]
            )
        )
        targets: tuple[tuple[Kind, models.PointsSelector], ...] = (
            ("full", by_id),
            ("window", by_parent),
        )
        for kind, selector in targets:
            name = self.qdrant_name(collection, kind)
            with contextlib.suppress(_Missing):
                await self._rpc(self._client.delete(name, points_selector=selector, wait=True))

    async def collections(self) -> list[str]:
        response = await self._rpc(self._client.get_collections())
        suffixes = tuple(f"{_SEPARATOR}{kind}" for kind in KINDS)
        names = set()
        for description in response.collections:
            full_name = description.name
            if not full_name.startswith(self.prefix) or not full_name.endswith(suffixes):
                continue
            logical = full_name[len(self.prefix) :].rsplit(_SEPARATOR, 1)[0]
            try:
                names.add(validate_collection(logical))
            except BadRequest:
                continue
        return sorted(names)

    async def close(self) -> None:
        await self._client.close()

    # --- internals ----------------------------------------------------------------------------

    async def _ensure(self, name: str, kind: Kind, dim: int) -> None:
        """Create the Qdrant collection on first use; safe under concurrent first upserts."""
        if name in self._known:
            return
        lock = self._create_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._known:
                return
            if not await self._rpc(self._client.collection_exists(name)):
                try:
                    await self._rpc(
                        self._client.create_collection(name, **self.collection_create_kwargs(dim))
                    )
                    log.info("created Qdrant collection %s (dim %d)", name, dim)
                except _AlreadyExists:
                    pass  # another process (or replica of this service) won the race
            if not self._local:
                # Idempotent on the server, so collections created before an index was
                # added get it too; local mode has no payload indexes (and warns).
                for key in INDEXED_KEYS[kind]:
                    await self._rpc(
                        self._client.create_payload_index(
                            name,
                            field_name=key,
                            field_schema=models.PayloadSchemaType.KEYWORD,
                            wait=True,
                        )
                    )
            self._known.add(name)

    async def _rpc(self, call: Awaitable[T]) -> T:
        """Await one client call, translating its errors into ours."""
        try:
            return await call
        except UnexpectedResponse as exc:
            raise _translate_response(exc) from exc
        except (ResponseHandlingException, httpx.HTTPError, OSError) as exc:
            # Connection refused, DNS, TLS, timeouts. The cause stays chained for the log;
            # the message carries neither the URL nor the API key.
            raise UpstreamUnavailable("the vector store (Qdrant server) is unreachable") from exc
        except ValueError as exc:
            # Local mode reports everything as ValueError.
            translated = _translate_local(exc)
            if translated is exc:
                raise
            raise translated from exc


def _dense(vector: Any) -> list[float] | None:
    """A point's one unnamed dense vector as floats (None when it came without one)."""
    if vector is None:
        return None
    return [float(x) for x in cast(list[float], vector)]


def _server_message(exc: UnexpectedResponse) -> str:
    try:
        status = json.loads(exc.content).get("status", {})
        return str(status.get("error", "")) if isinstance(status, dict) else ""
    except (ValueError, AttributeError):
        return ""


def _translate_response(exc: UnexpectedResponse) -> Exception:
    status = exc.status_code or 0
    message = _server_message(exc)
    if status == 404:
        return _Missing()
    if status == 409 or (status == 400 and "already exists" in message):
        return _AlreadyExists()
    if status == 400 or status == 422:
        if "dimension error" in message.lower():
            return dimension_error(message.split("error:")[-1].strip())
        return BadRequest("the vector store rejected the request")
    if status in (401, 403):
        return UpstreamUnavailable("the vector store (Qdrant server) refused our credentials")
    return UpstreamUnavailable(f"the vector store (Qdrant server) answered {status}")


def _translate_local(exc: ValueError) -> Exception:
    text = str(exc)
    if text.endswith("not found"):
        return _Missing()
    if text.endswith("already exists"):
        return _AlreadyExists()
    if "dimension error" in text or "not aligned" in text:
        return dimension_error("the vector has another dimension")
    if "not a valid UUID" in text:
        return BadRequest("point ids must be UUIDs")
    return exc
