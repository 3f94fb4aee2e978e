"""Re-embedding a collection without downtime: ``POST /api/collections/{name}/reindex``.

A reindex fills a new physical collection (``NAME.rN``, ``imgsearch_common.ids``) from the
files the old one recorded, while every search keeps answering from the old one; then it
switches the name over in one step (``VectorStore.switch_alias``: a Qdrant alias on a
server, the alias file of the Edge index) and drops the old collection. It is how a
collection moves to a new model (the workers' encoder fills the new one, which records that
model) and how an index is rebuilt after a change of the window layout.

The steps, each safe to repeat (the coordinator may stop at any point and resume):

1. *filling*: one job per file of every image of the old collection, queued into the new one
   as a batch (its progress is the batch's);
2. *catching up*: images written to the old collection since the reindex began (new files
   queued meanwhile) that the new one lacks are queued into it too, once, and followed;
3. *switching*: the alias moves; searches see the old or the new collection, never neither;
4. the images that reached the old collection in the last moments before the switch are
   queued into the name (now the new collection), and the old collection is dropped.

Images deleted during a reindex are deleted from both collections (:meth:`Reindexer.target`
tells the library routes where else to delete). A file gone from the disk cannot be embedded
again: its job fails (``missing_file``) and its image is not carried over — the same rule
as a sync of its folder.

The state lives in Redis (``imgsearch:reindex:<name>``), so a restarted API resumes the
reindex it was running; a lock in Redis lets one API replica at a time coordinate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from imgsearch_common.errors import ImgSearchError
from imgsearch_common.ids import physical_name, revision, validate_collection
from imgsearch_common.jobs import PREFIX, JobQueue
from imgsearch_common.payloads import ImagePayload
from imgsearch_common.schemas import ReindexStatus
from imgsearch_common.vectorstore.base import VectorStore, iter_points

from .library import require_collections

log = logging.getLogger(__name__)

STATE_PREFIX = PREFIX + "reindex:"
#: How long a finished (or failed) reindex's state is kept for ``GET`` to show.
FINISHED_TTL_S = 24 * 3600
#: The coordinator's lock lapses this long after its last renewal (a dead API's lock).
LOCK_TTL_MS = 30_000
#: Job items, as ``JobQueue.create_batch`` takes them: ``(path, source, name)``.
JobItem = tuple[str, str, str]


class ReindexRunning(ImgSearchError):
    status_code = 409
    code = "reindex_running"
    permanent = True


def job_items(payloads: Iterable[ImagePayload]) -> list[JobItem]:
    """One job item per file of each image (a file listed twice: once)."""
    items: dict[str, JobItem] = {}
    for payload in payloads:
        for record in payload.file_records():
            items.setdefault(record.stored_path, (record.stored_path, record.source, record.name))
    return list(items.values())


@dataclass
class Reindexer:
    store: VectorStore
    queue: JobQueue
    redis: Redis
    #: How often a running reindex looks at its batch.
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._token = uuid.uuid4().hex

    # --- the API --------------------------------------------------------------------------

    async def start(self, collection: str) -> ReindexStatus:
        """Begin re-embedding ``collection``; 404 when it does not exist, 409 while a
        reindex of it runs."""
        name = validate_collection(collection)
        await require_collections(self.store, [name], default_exists=False)
        source = await self.store.resolve(name)
        target = physical_name(name, revision(source) + 1)
        state = {
            "collection": name,
            "source": source,
            "target": target,
            "state": "filling",
            "started_at": str(time.time()),
        }
        key = STATE_PREFIX + name
        # A finished reindex's state may be replaced; a running one's may not.
        current = await self._state(name)
        if current is not None and current.state not in ("done", "failed"):
            raise ReindexRunning(
                f"collection {name!r} is being reindexed into {current.target} "
                f"(batch {current.batch_id}): wait for it to finish"
            )
        await self.store.drop_collection(target)  # what an aborted reindex left
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=state)  # type: ignore[arg-type]
            await pipe.execute()
        items = await self._items(source)
        batch_id, _ = await self.queue.create_batch(target, items, label=f"reindex of {name}")
        await self.redis.hset(key, mapping={"batch_id": batch_id, "queued": len(items)})
        self._launch(name)
        status = await self._state(name)
        assert status is not None
        return status

    async def status(self, collection: str) -> ReindexStatus | None:
        return await self._state(validate_collection(collection))

    async def target(self, collection: str) -> str | None:
        """The physical collection a running reindex of ``collection`` fills, if any: a
        deletion must reach it too."""
        state = await self._state(collection)
        if state is None or state.state in ("done", "failed"):
            return None
        return state.target

    async def abandon(self, collection: str, reason: str) -> None:
        """Stop a running reindex of ``collection`` (it was dropped): its target is dropped
        and the name never switches to it."""
        target = await self.target(collection)
        if target is None:
            return
        await self._set(collection, state="failed", error=reason, finished_at=time.time())
        await self.redis.expire(STATE_PREFIX + collection, FINISHED_TTL_S)
        await self.store.drop_collection(target)

    async def resume(self) -> None:
        """Take up the reindexes a previous run of the API left unfinished."""
        async for key in self.redis.scan_iter(match=STATE_PREFIX + "*", count=100):
            name = (key.decode() if isinstance(key, bytes) else str(key))[len(STATE_PREFIX) :]
            if name.endswith(":lock"):
                continue
            state = await self._state(name)
            if state is not None and state.state not in ("done", "failed"):
                log.info("resuming the reindex of %r into %s", name, state.target)
                self._launch(name)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def wait(self, collection: str) -> None:
        """Until this process's coordinator of ``collection`` stops (tests)."""
        task = self._tasks.get(collection)
        if task is not None:
            await asyncio.shield(task)

    # --- the coordinator ------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        running = self._tasks.get(name)
        if running is not None and not running.done():
            return
        self._tasks[name] = asyncio.create_task(self._coordinate(name), name=f"reindex:{name}")

    async def _coordinate(self, name: str) -> None:
        lock = STATE_PREFIX + name + ":lock"
        while not await self.redis.set(lock, self._token, nx=True, px=LOCK_TTL_MS):
            if await self.redis.get(lock) in (self._token, self._token.encode()):
                break
            await asyncio.sleep(self.poll_s)  # another replica coordinates it
            state = await self._state(name)
            if state is None or state.state in ("done", "failed"):
                return
        try:
            await self._run(name, lock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a coordinator must not die silently
            log.exception("the reindex of %r failed", name)
            message = exc.message if isinstance(exc, ImgSearchError) else type(exc).__name__
            await self._set(name, state="failed", error=message, finished_at=time.time())
            await self.redis.expire(STATE_PREFIX + name, FINISHED_TTL_S)
        finally:
            with contextlib.suppress(Exception):
                if await self.redis.get(lock) in (self._token, self._token.encode()):
                    await self.redis.delete(lock)

    async def _run(self, name: str, lock: str) -> None:
        state = await self._state(name)
        assert state is not None
        if state.state == "filling":
            await self._follow(name, state.batch_id, lock)
            state = await self._state(name)
            if state is None or state.state == "failed":
                return  # abandoned (the collection was dropped)
            missing = await self._missing(state.source, state.target, state.started_at)
            batch_id = ""
            if missing:
                batch_id, _ = await self.queue.create_batch(
                    state.target, missing, label=f"reindex of {name}: catch-up"
                )
            await self._set(name, state="catching_up", catch_up_batch_id=batch_id)
            state = await self._state(name)
            assert state is not None
        if state.state == "catching_up":
            await self._follow(name, state.catch_up_batch_id, lock)
            state = await self._state(name)
            if state is None or state.state == "failed":
                return  # abandoned (the collection was dropped)
            await self._set(name, state="switching")
            state = await self._state(name)
            assert state is not None
        if state.state == "switching":
            await self.store.switch_alias(name, state.target)
            log.info("collection %r now searches %s (was %s)", name, state.target, state.source)
            # What reached the old collection just before the switch goes to the name, which
            # is the new collection now; the jobs read the files, not the old collection.
            late = await self._missing(state.source, state.target, state.started_at)
            if late:
                await self.queue.create_batch(name, late, label=f"reindex of {name}: late writes")
            await self.store.drop_collection(state.source)
            await self._set(name, state="done", finished_at=time.time())
            await self.redis.expire(STATE_PREFIX + name, FINISHED_TTL_S)

    async def _follow(self, name: str, batch_id: str, lock: str) -> None:
        """Until the batch is finished (none: at once) or the reindex abandoned, renewing
        the coordinator's lock."""
        while batch_id:
            await self.redis.pexpire(lock, LOCK_TTL_MS)
            status = await self.queue.batch_status(batch_id)
            if status is None or status.finished:
                return
            state = await self._state(name)
            if state is None or state.state == "failed":
                return
            await asyncio.sleep(self.poll_s)

    async def _items(self, physical: str) -> list[JobItem]:
        payloads = []
        async for hit in iter_points(self.store, physical, "full"):
            payload = ImagePayload.read(hit.payload)
            if payload is not None:
                payloads.append(payload)
        return job_items(payloads)

    async def _missing(self, source: str, target: str, since: float) -> list[JobItem]:
        """Job items of the images written to ``source`` since ``since`` that ``target``
        lacks (by image id). Older ones were in the first batch: if they are missing, their
        files failed (gone from the disk), and queuing them again would only fail again."""
        have = {hit.id async for hit in iter_points(self.store, target, "full")}
        payloads = []
        async for hit in iter_points(self.store, source, "full"):
            payload = ImagePayload.read(hit.payload)
            if hit.id not in have and payload is not None and payload.indexed_at >= since:
                payloads.append(payload)
        return job_items(payloads)

    async def _state(self, name: str) -> ReindexStatus | None:
        raw = await self.redis.hgetall(STATE_PREFIX + name)
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        batch = None
        if fields.get("batch_id"):
            batch = await self.queue.batch_status(fields["batch_id"])
        return ReindexStatus(
            collection=fields.get("collection", name),
            source=fields.get("source", ""),
            target=fields.get("target", ""),
            state=fields.get("state", "failed"),  # type: ignore[arg-type]
            batch_id=fields.get("batch_id", ""),
            catch_up_batch_id=fields.get("catch_up_batch_id", ""),
            queued=int(fields.get("queued", 0)),
            done=batch.done if batch else 0,
            failed=batch.failed if batch else 0,
            started_at=float(fields.get("started_at", 0.0)),
            finished_at=float(fields["finished_at"]) if fields.get("finished_at") else None,
            error=fields.get("error") or None,
        )

    async def _set(self, name: str, **fields: Any) -> None:
        await self.redis.hset(STATE_PREFIX + name, mapping={k: str(v) for k, v in fields.items()})


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
