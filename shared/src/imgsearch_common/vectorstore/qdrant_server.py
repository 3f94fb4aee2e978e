"""Qdrant server back-end (``qdrant-client``), used when ``QDRANT_URL`` is set.

A stored collection ``C`` (a plain ``NAME`` or a revision ``NAME.rN``) is two Qdrant
collections, ``<prefix>C__full`` and ``<prefix>C__window``, created by the first upsert
with the vector size of its vectors. A logical name switched to a revision reads it
through two Qdrant aliases, ``<prefix>NAME.alias__full`` and ``..__window``, named apart
from the plain collection ``NAME`` (which a switch leaves for the caller to drop, and
Qdrant refuses an alias named like a collection). A switch replaces both in one
``update_aliases`` call, which Qdrant applies as one change: a search through them reads
the old target or the new one. Each process caches which names are aliased for
``ALIAS_CACHE_S``; a read that finds nothing with a stale cache looks again (after another
process switched and dropped the old collection, say). Records are one point per stored
collection in ``<prefix>_records`` (never listed).
``url=":memory:"`` runs qdrant-client's in-process local mode (exact search, no payload
indexes): what the contract tests use where no server runs. It keeps aliases as a server
does (created and replaced in one call, refused under a collection's name, deleted with
their collection), in one process. ``drop_collection`` deletes
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
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import httpx
import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import BadRequest, UpstreamUnavailable
from ..ids import logical_name, validate_collection, validate_physical
from ..payloads import INDEXED_KEYS, PARENT_ID
from ._util import (
    check_alias,
    check_find,
    check_target,
    dimension_error,
    in_request_order,
    physical_of,
    search_queries,
    storage_of,
    upsert_vectors,
)
from .base import KINDS, Hit, Kind, PointRecord, VectorStore

log = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY = ":memory:"
DEFAULT_PREFIX = "imgsearch_"
_SEPARATOR = "__"
#: Aliases are named apart from collections (Qdrant refuses an alias named like a
#: collection, and the plain collection of a name may still exist beside its alias).
_ALIAS_MARK = ".alias"
#: Seconds a process trusts the aliases it read (a read that finds nothing looks again).
ALIAS_CACHE_S = 2.0
_RECORDS_NAMESPACE = uuid.UUID("0d7c6f0e-7f59-4d8e-a1d4-5f3b2a9c1e44")


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
        self._alias_cache: dict[str, str] | None = None
        self._alias_kinds: set[tuple[str, Kind]] = set()
        self._alias_at = 0.0

    # --- naming and configuration ---------------------------------------------------------

    def qdrant_name(self, stored: str, kind: Kind) -> str:
        """The Qdrant collection of a stored collection (``NAME`` or ``NAME.rN``) and kind."""
        return f"{self.prefix}{stored}{_SEPARATOR}{kind}"

    def alias_name(self, logical: str, kind: Kind) -> str:
        """The Qdrant alias through which ``logical`` reads its target (see the module)."""
        return f"{self.prefix}{logical}{_ALIAS_MARK}{_SEPARATOR}{kind}"

    @property
    def records_name(self) -> str:
        """The Qdrant collection holding one record point per stored collection."""
        return f"{self.prefix}_records"

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
        structs = [
            models.PointStruct(id=p.id, vector=v, payload=p.payload)
            for p, v in zip(points, vectors, strict=True)
        ]
        for attempt in range(2):
            name = await self._writable(collection, kind, dim, fresh=attempt > 0)
            try:
                await self._rpc(self._client.upsert(name, points=structs, wait=True))
                return
            except _Missing:
                # Dropped (or switched) behind our back since we looked: look again, once.
                self._known.discard(name)
        raise UpstreamUnavailable("the vector store lost the collection while writing to it")

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
        try:
            responses = await self._read(
                collection,
                kind,
                lambda name: self._client.query_batch_points(name, requests=requests),
            )
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
        try:
            records = await self._read(
                collection,
                kind,
                lambda name: self._client.retrieve(
                    name, ids=list(ids), with_payload=True, with_vectors=False
                ),
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
        # On an array value (``paths``) Qdrant matches any element.
        match = models.Filter(
            must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))]
        )
        try:
            records, _ = await self._read(
                collection,
                kind,
                lambda name: self._client.scroll(
                    name, scroll_filter=match, limit=limit, with_payload=True, with_vectors=False
                ),
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
            records, next_offset = await self._read(
                collection,
                kind,
                lambda name: self._client.scroll(
                    name,
                    limit=limit,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                ),
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

        async def rewrite(name: str) -> bool:
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
            return True

        try:
            return await self._read(collection, kind, rewrite)
        except (_Missing, KeyError):
            return False

    async def count(self, collection: str, kind: Kind) -> int:
        check_target(collection, kind)
        try:
            result = await self._read(
                collection, kind, lambda name: self._client.count(name, exact=True)
            )
        except _Missing:
            return 0
        return result.count

    async def delete_image(self, collection: str, image_id: str) -> None:
        validate_physical(collection)
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

            def delete(
                name: str, selector: models.PointsSelector = selector
            ) -> Awaitable[models.UpdateResult]:
                return self._client.delete(name, points_selector=selector, wait=True)

            with contextlib.suppress(_Missing):
                await self._read(collection, kind, delete)

    async def drop_collection(self, collection: str) -> bool:
        validate_physical(collection)
        aliases = await self._aliases(fresh=True)
        if collection == logical_name(collection):
            # The plain collection (shadowed, if an alias exists: a switch left it), then
            # the alias (the name reads nothing from here on), then its target.
            dropped = await self._drop_stored(collection)
            target = aliases.get(collection)
            if target is not None:
                await self._unalias([collection])
                dropped = await self._drop_stored(target) or True
            return dropped
        # A physical name: that collection; an alias reading it goes with it.
        stored = storage_of(collection, {})
        readers = [logical for logical, target in aliases.items() if target == stored]
        if readers:
            await self._unalias(readers)
        return await self._drop_stored(stored) or bool(readers)

    async def resolve(self, collection: str) -> str:
        validate_physical(collection)
        return physical_of(storage_of(collection, await self._aliases(fresh=True)))

    async def switch_alias(self, logical: str, physical: str) -> str | None:
        stored = check_alias(logical, physical)
        aliases = await self._aliases(fresh=True)
        old = aliases.get(logical)
        # One update_aliases call for both kinds: Qdrant applies it as one change, so a
        # search through the alias reads the old target or the new one.
        changes: list[models.AliasOperations] = []
        for kind in KINDS:
            alias = self.alias_name(logical, kind)
            if (logical, kind) in self._alias_kinds:
                changes.append(
                    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
                )
            target = self.qdrant_name(stored, kind)
            if stored != logical and await self._rpc(self._client.collection_exists(target)):
                changes.append(
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
                    )
                )
        if stored != logical and not any(
            isinstance(c, models.CreateAliasOperation) for c in changes
        ):
            # An alias needs a Qdrant collection to point at (Edge refuses the same).
            raise BadRequest(f"collection {physical!r} holds no points: nothing to switch to")
        if changes:
            await self._rpc(self._client.update_collection_aliases(changes))
        self._forget_aliases()
        log.info("collection %s now reads %s (was %s)", logical, stored, old or logical)
        if old is not None:
            return physical_of(old)
        return physical_of(logical) if await self._stored_exists(logical) else None

    async def get_record(self, collection: str) -> dict[str, Any] | None:
        validate_physical(collection)
        stored = storage_of(collection, await self._aliases(fresh=True))
        try:
            found = await self._rpc(
                self._client.retrieve(
                    self.records_name, ids=[_record_id(stored)], with_payload=True
                )
            )
        except _Missing:
            return None
        record = (found[0].payload or {}).get("record") if found else None
        return dict(record) if isinstance(record, dict) else None

    async def put_record(self, collection: str, record: dict[str, Any]) -> None:
        validate_physical(collection)
        stored = storage_of(collection, await self._aliases(fresh=True))
        point = models.PointStruct(
            id=_record_id(stored),
            vector=[1.0],  # a collection needs vectors; records are found by id only
            payload={"collection": stored, "record": dict(record)},
        )
        for _ in range(2):
            await self._ensure(self.records_name, (), 1)
            try:
                await self._rpc(self._client.upsert(self.records_name, points=[point], wait=True))
                return
            except _Missing:
                self._known.discard(self.records_name)
        raise UpstreamUnavailable("the vector store lost the records while writing to them")

    async def collections(self) -> list[str]:
        response = await self._rpc(self._client.get_collections())
        names = set(await self._aliases(fresh=True))
        for description in response.collections:
            stored = self._stored_of(description.name)
            # Revisions (NAME.rN) are not logical names: listed through their alias only.
            if stored is not None and stored == _logical_or_none(stored):
                names.add(stored)
        return sorted(names)

    async def close(self) -> None:
        await self._client.close()

    # --- internals ----------------------------------------------------------------------------

    def _stored_of(self, qdrant_name: str) -> str | None:
        """The stored collection a Qdrant collection of ours holds, else None."""
        suffixes = tuple(f"{_SEPARATOR}{kind}" for kind in KINDS)
        if not qdrant_name.startswith(self.prefix) or not qdrant_name.endswith(suffixes):
            return None
        stored = qdrant_name[len(self.prefix) :].rsplit(_SEPARATOR, 1)[0]
        try:
            return validate_physical(stored)
        except BadRequest:
            return None

    async def _aliases(self, *, fresh: bool = False) -> dict[str, str]:
        """Our aliases: logical name -> stored target. Cached for ``ALIAS_CACHE_S`` (another
        process may switch meanwhile: a read that then finds nothing looks again)."""
        now = time.monotonic()
        if not fresh and self._alias_cache is not None and now - self._alias_at < ALIAS_CACHE_S:
            return self._alias_cache
        response = await self._rpc(self._client.get_aliases())
        aliases: dict[str, str] = {}
        kinds: set[tuple[str, Kind]] = set()
        for description in response.aliases:
            name, kind = self._alias_of(description.alias_name)
            target = self._stored_of(description.collection_name)
            if name is None or kind is None or target is None:
                continue
            aliases[name] = target
            kinds.add((name, kind))
        self._alias_cache, self._alias_kinds, self._alias_at = aliases, kinds, now
        return aliases

    def _alias_of(self, alias: str) -> tuple[str | None, Kind | None]:
        for kind in KINDS:
            tail = f"{_ALIAS_MARK}{_SEPARATOR}{kind}"
            if alias.startswith(self.prefix) and alias.endswith(tail):
                return _logical_or_none(alias[len(self.prefix) : -len(tail)]), kind
        return None, None

    def _forget_aliases(self) -> None:
        self._alias_cache = None

    def _target(self, collection: str, kind: Kind, aliases: dict[str, str]) -> str:
        """The Qdrant name a call on ``collection`` goes to: the alias of an aliased
        logical name (Qdrant resolves it, atomically), else the stored collection's."""
        if collection == logical_name(collection) and collection in aliases:
            return self.alias_name(collection, kind)
        return self.qdrant_name(storage_of(collection, {}), kind)

    async def _read(self, collection: str, kind: Kind, call: Callable[[str], Awaitable[T]]) -> T:
        """``call(qdrant name)`` for ``collection``; when it is missing and the aliases
        changed since they were cached (a switch or a drop in another process), once more
        on the name they give now. Raises ``_Missing`` when it is missing still."""
        name = self._target(collection, kind, await self._aliases())
        try:
            return await self._rpc(call(name))
        except _Missing:
            if collection != logical_name(collection):
                raise
            again = self._target(collection, kind, await self._aliases(fresh=True))
            if again == name:
                raise
            return await self._rpc(call(again))

    async def _writable(self, collection: str, kind: Kind, dim: int, *, fresh: bool) -> str:
        """The Qdrant name an upsert into ``collection`` goes to, created if need be: an
        aliased name's target gets the kind it lacks (and its alias) at its first write."""
        aliases = await self._aliases(fresh=fresh)
        name = self._target(collection, kind, aliases)
        if collection != logical_name(collection) or collection not in aliases:
            await self._ensure(name, INDEXED_KEYS[kind], dim)
            return name
        target = self.qdrant_name(aliases[collection], kind)
        await self._ensure(target, INDEXED_KEYS[kind], dim)
        if (collection, kind) not in self._alias_kinds:
            create = models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=target, alias_name=name)
            )
            with contextlib.suppress(_AlreadyExists):
                await self._rpc(self._client.update_collection_aliases([create]))
            self._alias_kinds.add((collection, kind))
        return name

    async def _unalias(self, logicals: list[str]) -> None:
        """Delete every alias of ``logicals`` (both kinds, one call)."""
        await self._aliases(fresh=True)
        changes: list[models.AliasOperations] = [
            models.DeleteAliasOperation(
                delete_alias=models.DeleteAlias(alias_name=self.alias_name(logical, kind))
            )
            for logical in logicals
            for kind in KINDS
            if (logical, kind) in self._alias_kinds
        ]
        if changes:
            await self._rpc(self._client.update_collection_aliases(changes))
        self._forget_aliases()

    async def _drop_stored(self, stored: str) -> bool:
        """Delete a stored collection's Qdrant collections and its record."""
        existed = False
        for kind in KINDS:
            name = self.qdrant_name(stored, kind)
            # Forgotten first: an upsert of this process after the drop creates it again
            # (others find it missing and create it again, see ``upsert``).
            self._known.discard(name)
            with contextlib.suppress(_Missing):
                existed |= bool(await self._rpc(self._client.delete_collection(name)))
            self._known.discard(name)
        selector = models.PointIdsList(points=[_record_id(stored)])
        with contextlib.suppress(_Missing):
            found = await self._rpc(
                self._client.retrieve(self.records_name, ids=[_record_id(stored)])
            )
            if found:
                existed = True
                await self._rpc(
                    self._client.delete(self.records_name, points_selector=selector, wait=True)
                )
        return existed

    async def _stored_exists(self, stored: str) -> bool:
        for kind in KINDS:
            if await self._rpc(self._client.collection_exists(self.qdrant_name(stored, kind))):
                return True
        return False

    async def _ensure(self, name: str, indexed: tuple[str, ...], dim: int) -> None:
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
                for key in indexed:
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


def _record_id(stored: str) -> str:
    return str(uuid.uuid5(_RECORDS_NAMESPACE, stored))


def _logical_or_none(name: str) -> str | None:
    try:
        return validate_collection(name)
    except BadRequest:
        return None


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
