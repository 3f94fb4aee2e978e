"""The indexing job queue: Redis Streams with a consumer group.

Why Streams (and not a list, or a queue library): a consumer group keeps every
delivered-but-unacknowledged entry in a *pending entries list* until a worker
acknowledges it, so a worker killed mid-job loses nothing: its entries stay
pending and another worker (or the same one after a restart) claims them once
they have been idle for ``claim_idle_ms``. That is at-least-once delivery with
no extra moving parts; point ids are deterministic, so a replay is harmless.

Keys (prefix ``imgsearch:``):

- ``jobs``               stream of jobs, one image each; entries are deleted once handled,
                         so its length is the number of outstanding jobs
- ``delayed``            sorted set of jobs waiting for a retry (score = due time)
- ``dead``               list of dead letters (JSON: job, reason, message, time)
- ``batch:<id>``         hash: collection, total, created_at
- ``batch:<id>:done``    set of job ids done;  ``:failed`` set of job ids failed
- ``batch:<id>:errors``  list of JSON errors (capped)
- ``roots``              set of folders that were queued (image serving stays inside them)

Each terminal transition (done, failed, retry scheduled) and the acknowledgement
happen in one MULTI/EXEC transaction, so progress counts are exact even when a
job is delivered twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .schemas import BatchError, BatchStatus

PREFIX = "imgsearch:"
STREAM = PREFIX + "jobs"
GROUP = "indexers"
DELAYED = PREFIX + "delayed"
DEAD = PREFIX + "dead"
ROOTS = PREFIX + "roots"
MAX_BATCH_ERRORS = 200
MAX_DEAD_LETTERS = 10_000
BATCH_TTL_S = 7 * 24 * 3600

# Moves due retries from the delayed set back onto the stream, atomically.
_PROMOTE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, raw in ipairs(due) do
  local fields = cjson.decode(raw)
  local args = {}
  for k, v in pairs(fields) do table.insert(args, k); table.insert(args, v) end
  redis.call('XADD', KEYS[2], '*', unpack(args))
  redis.call('ZREM', KEYS[1], raw)
end
return #due
"""


def _batch_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


@dataclass(frozen=True)
class Job:
    """One image to index. ``path`` is a file on disk the workers can read."""

    job_id: str
    batch_id: str
    collection: str
    path: str
    source: str = "folder"  # folder | upload | url
    name: str = ""  # what the user knows it as: file name or URL
    attempt: int = 0

    def fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Job:
        f = {_s(k): _s(v) for k, v in fields.items()}
        return cls(
            job_id=f["job_id"],
            batch_id=f["batch_id"],
            collection=f["collection"],
            path=f["path"],
            source=f.get("source", "folder"),
            name=f.get("name", ""),
            attempt=int(f.get("attempt", "0")),
        )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Delivery:
    """A job as delivered to a consumer; ``deliveries`` counts claims of this entry."""

    entry_id: str
    job: Job
    deliveries: int = 1


class JobQueue:
    def __init__(self, redis: Redis, *, stream: str = STREAM, group: str = GROUP) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self._promote = redis.register_script(_PROMOTE_LUA)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- producer side ----------------------------------------------------------------

    async def create_batch(
        self,
        collection: str,
        items: Iterable[tuple[str, str, str]],
        *,
        chunk: int = 500,
        root: str | None = None,
    ) -> tuple[str, int]:
        """Queue one job per ``(path, source, name)``; returns ``(batch_id, count)``.

        The batch hash is written first with total 0 and grows as chunks are queued,
        so a batch that is still being queued never looks finished.
        """
        batch_id = uuid.uuid4().hex
        key = _batch_key(batch_id)
        await self.ensure_group()
        await self.redis.hset(
            key,
            mapping={"collection": collection, "total": 0, "created_at": time.time(), "queuing": 1},
        )
        await self.redis.expire(key, BATCH_TTL_S)
        if root:
            await self.redis.sadd(ROOTS, root)
        count = 0
        pending: list[Job] = []
        for path, source, name in items:
            pending.append(Job(uuid.uuid4().hex, batch_id, collection, path, source, name))
            if len(pending) >= chunk:
                count += await self._queue(key, pending)
                pending = []
        if pending:
            count += await self._queue(key, pending)
        await self.redis.hdel(key, "queuing")
        return batch_id, count

    async def _queue(self, key: str, jobs: Sequence[Job]) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            for job in jobs:
                pipe.xadd(self.stream, job.fields())  # type: ignore[arg-type]
            pipe.hincrby(key, "total", len(jobs))
            await pipe.execute()
        return len(jobs)

    async def batch_status(self, batch_id: str) -> BatchStatus | None:
        key = _batch_key(batch_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.scard(key + ":done")
            pipe.scard(key + ":failed")
            pipe.lrange(key + ":errors", 0, MAX_BATCH_ERRORS - 1)
            meta, done, failed, errors = await pipe.execute()
        if not meta:
            return None
        meta = {_s(k): _s(v) for k, v in meta.items()}
        total = int(meta.get("total", 0))
        pending = max(0, total - done - failed)
        return BatchStatus(
            batch_id=batch_id,
            collection=meta.get("collection", ""),
            total=total,
            done=done,
            failed=failed,
            pending=pending,
            finished=pending == 0 and "queuing" not in meta,
            created_at=float(meta.get("created_at", 0.0)),
            errors=[BatchError(**json.loads(e)) for e in errors],
        )

    async def depth(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.zcard(DELAYED)
            pipe.llen(DEAD)
            queued, delayed, dead = await pipe.execute()
        return {
            "pending": int(queued) + int(delayed),
            "delayed": int(delayed),
            "dead_letters": dead,
        }

    async def roots(self) -> set[str]:
        members: set[Any] = await self.redis.smembers(ROOTS)
        return {_s(r) for r in members}

    async def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        raw: list[Any] = await self.redis.lrange(DEAD, -count, -1)
        return [json.loads(x) for x in raw]

    # --- consumer side ----------------------------------------------------------------

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New entries for this consumer (blocks up to ``block_ms``)."""
        answer: Any = await self.redis.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        out: list[Delivery] = []
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                if fields:
                    out.append(Delivery(_s(entry_id), Job.from_fields(fields)))
        return out

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries another consumer left pending for ``min_idle_ms`` (it died)."""
        pending = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=count, idle=min_idle_ms
        )
        if not pending:
            return []
        counts = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
        claimed: Any = await self.redis.xclaim(
            self.stream, self.group, consumer, min_idle_time=min_idle_ms, message_ids=list(counts)
        )
        out: list[Delivery] = []
        for entry_id, fields in claimed:
            eid = _s(entry_id)
            if not fields:  # deleted meanwhile: nothing to do but forget it
                await self.redis.xack(self.stream, self.group, eid)
                continue
            out.append(Delivery(eid, Job.from_fields(fields), counts.get(eid, 1) + 1))
        return out

    async def heartbeat(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer is still working on.

        A slow but alive worker must not have its jobs claimed by others (each claim
        counts as a delivery, and too many look like a worker that keeps crashing).
        ``JUSTID`` re-claims without incrementing the delivery counter.
        """
        if entry_ids:
            await self.redis.xclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_time=0,
                message_ids=list(entry_ids),
                justid=True,
            )

    async def complete(self, delivery: Delivery) -> None:
        job = delivery.job
        key = _batch_key(job.batch_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key + ":done", job.job_id)
            pipe.expire(key + ":done", BATCH_TTL_S)
            pipe.xack(self.stream, self.group, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            await pipe.execute()

    async def fail(self, delivery: Delivery, reason: str, message: str) -> None:
        """Terminal failure: dead-letter with the reason, count it, acknowledge."""
        job = delivery.job
        key = _batch_key(job.batch_id)
        error = BatchError(path=job.name or job.path, reason=reason, message=message)
        dead = {"job": job.fields(), "reason": reason, "message": message, "at": time.time()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key + ":failed", job.job_id)
            pipe.expire(key + ":failed", BATCH_TTL_S)
            pipe.rpush(key + ":errors", error.model_dump_json())
            pipe.ltrim(key + ":errors", 0, MAX_BATCH_ERRORS - 1)
            pipe.expire(key + ":errors", BATCH_TTL_S)
            pipe.rpush(DEAD, json.dumps(dead))
            pipe.ltrim(DEAD, -MAX_DEAD_LETTERS, -1)
            pipe.xack(self.stream, self.group, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            await pipe.execute()

    async def retry_later(self, delivery: Delivery, delay_s: float) -> None:
        """Transient failure: re-queue with ``attempt + 1`` after ``delay_s``, acknowledge."""
        job = delivery.job
        again = Job(**{**asdict(job), "attempt": job.attempt + 1})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(DELAYED, {json.dumps(again.fields(), sort_keys=True): time.time() + delay_s})
            pipe.xack(self.stream, self.group, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            await pipe.execute()

    async def promote_due(self, limit: int = 100) -> int:
        """Move retries whose time has come back onto the stream."""
        return int(await self._promote(keys=[DELAYED, self.stream], args=[time.time(), limit]))
