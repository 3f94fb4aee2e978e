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
- ``dead``               list of dead letters (JSON: job, reason, message, time), oldest
                         first; :meth:`JobQueue.requeue` moves them back onto the stream
- ``batch:<id>``         hash: collection, label, total, created_at, and what queuing a
                         folder found (``new``, ``changed``, ``unchanged``, ``moved``,
                         ``removed``)
- ``batches``            sorted set of the recent batch ids (score = created_at), written
                         with each batch's hash in one transaction, cut to the newest
                         ``MAX_RECENT_BATCHES``; ids whose hash has expired are dropped
                         when it is read (:meth:`JobQueue.recent_batches`)
- ``batch:<id>:done``    set of job ids done;  ``:failed`` set of job ids failed
- ``batch:<id>:errors``  list of JSON errors (capped)

Each terminal transition (done, failed, retry scheduled) and the acknowledgement
happen in one MULTI/EXEC transaction, so progress counts are exact even when a
job is delivered twice.

An entry whose fields are not a job (a producer's bug, another version's format) is
dead-lettered as ``malformed_job`` the moment it is read or claimed, with its raw
fields (capped) and acknowledged: it can neither kill a worker nor come back forever.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .schemas import (
    BATCH_ID_PATTERN,
    BatchError,
    BatchQueued,
    BatchStatus,
    RequeueResult,
    SyncCounts,
)

log = logging.getLogger(__name__)

PREFIX = "imgsearch:"
STREAM = PREFIX + "jobs"
GROUP = "indexers"
DELAYED = PREFIX + "delayed"
DEAD = PREFIX + "dead"
MAX_BATCH_ERRORS = 200
MAX_DEAD_LETTERS = 10_000
BATCH_TTL_S = 7 * 24 * 3600
#: Dead-letter reason of a stream entry that is not a job; such letters are never requeued.
MALFORMED = "malformed_job"
#: A malformed entry's raw fields are kept for a look, within these bounds.
MAX_RAW_FIELDS = 20
MAX_RAW_CHARS = 200
_BATCH_ID_RE = re.compile(BATCH_ID_PATTERN)
#: The recent batches ``GET /api/index/batches`` can list: the newest this many.
RECENT = PREFIX + "batches"
MAX_RECENT_BATCHES = 100
#: A batch's label (what was queued) is cut to this many characters.
MAX_LABEL_CHARS = 300
#: Errors each batch of a listing carries (``GET /api/index/batches/{id}`` gives up to
#: ``MAX_BATCH_ERRORS``): a list of 100 batches stays small.
MAX_LISTED_ERRORS = 20

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


# Moves dead letters back onto the stream, atomically: a crash (of the caller, or of
# Redis before the AOF has it) requeues all of them or none, and a dead letter taken by
# one requeue is gone for a concurrent one. The matching letters (of one batch, when one
# is named), oldest first, up to the limit, are replaced by a tombstone and the tombstones
# removed in one LREM (O(N), not one LREM per letter). Each job keeps its id and starts
# afresh (no attempts, no failure record) in a new batch per collection, whose id derives
# from this call's token; the new batches join the recent ones (``RECENT``).
# KEYS: dead list, stream, recent batches. ARGV: token, limit (0 = all), now, batch TTL,
# batch key prefix, malformed reason, batch id ('' = any), label, most recent batches
# kept, then the wanted reasons (none = every reason).
_REQUEUE_LUA = """
local raws = redis.call('LRANGE', KEYS[1], 0, -1)
local limit = tonumber(ARGV[2])
local from = ARGV[7]
local any = #ARGV < 10
local wanted = {}
for i = 10, #ARGV do wanted[ARGV[i]] = true end
local tomb = 'requeued:' .. ARGV[1]
local moved, batches, order = 0, {}, {}
for i, raw in ipairs(raws) do
  if limit > 0 and moved >= limit then break end
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and type(entry.job) == 'table'
      and type(entry.reason) == 'string' and entry.reason ~= ARGV[6]
      and (any or wanted[entry.reason])
      and (from == '' or entry.job.batch_id == from) then
    local job = entry.job
    local collection = job.collection
    if type(collection) == 'string' and collection ~= '' and type(job.job_id) == 'string'
        and type(job.path) == 'string' then
      local batch = batches[collection]
      if not batch then
        batch = {id = string.sub(redis.sha1hex(ARGV[1] .. '/' .. collection), 1, 32), count = 0}
        batches[collection] = batch
        table.insert(order, collection)
      end
      job.batch_id = batch.id
      job.attempt = '0'
      job.first_failed_at = '0.0'
      job.unexpected_failures = '0'
      local args = {}
      for k, v in pairs(job) do
        table.insert(args, tostring(k))
        table.insert(args, tostring(v))
      end
      redis.call('XADD', KEYS[2], '*', unpack(args))
      redis.call('LSET', KEYS[1], i - 1, tomb)
      batch.count = batch.count + 1
      moved = moved + 1
    end
  end
end
if moved > 0 then redis.call('LREM', KEYS[1], 0, tomb) end
local out = {moved}
for _, collection in ipairs(order) do
  local batch = batches[collection]
  local key = ARGV[5] .. batch.id
  redis.call('HSET', key, 'collection', collection, 'total', batch.count, 'created_at', ARGV[3],
    'label', ARGV[8])
  redis.call('EXPIRE', key, tonumber(ARGV[4]))
  redis.call('ZADD', KEYS[3], ARGV[3], batch.id)
  table.insert(out, collection)
  table.insert(out, batch.id)
  table.insert(out, batch.count)
end
if #order > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[9]))
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
end
return out
"""


def _batch_key(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def is_batch_id(value: str) -> bool:
    """Whether ``value`` has the shape of a batch id (``BATCH_ID_PATTERN``)."""
    return bool(_BATCH_ID_RE.match(value))


#: The label ``_requeue_label`` gives a batch of another batch's failed files.
_REQUEUED_LABEL = re.compile(r"failed files of (?P<of>.+), re-queued(?: \([^()]*\))?")


def batch_label(label: str) -> str:
    """``label`` on one line, cut to ``MAX_LABEL_CHARS`` (an ellipsis says it was)."""
    line = " ".join(label.split())
    return line if len(line) <= MAX_LABEL_CHARS else line[: MAX_LABEL_CHARS - 1] + "…"


class MalformedJob(ValueError):
    """Stream fields that do not make a :class:`Job`."""


def is_nogroup(exc: BaseException) -> bool:
    """Whether Redis answered that the stream or its consumer group is gone (``FLUSHALL``,
    or a restart that lost its data): :meth:`JobQueue.ensure_group` makes them again."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


@dataclass(frozen=True)
class Job:
    """One image to index. ``path`` is a file on disk the workers can read."""

    job_id: str
    batch_id: str
    collection: str
    path: str
    source: str = "folder"  # folder | upload | url
    name: str = ""  # what the user knows it as: file name or URL
    #: Failed attempts so far (the backoff's exponent).
    attempt: int = 0
    #: When a retryable failure first struck this job (epoch seconds, 0 = never): the
    #: retry window is counted from it, whichever worker tried.
    first_failed_at: float = 0.0
    #: Failures that were not the services' own errors (a bug, most likely).
    unexpected_failures: int = 0

    def fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Job:
        """The job that ``fields`` (a stream entry's) describe; :class:`MalformedJob` when
        they describe none."""
        try:
            f = {_s(k): _s(v) for k, v in fields.items()}
            job = cls(
                job_id=f["job_id"],
                batch_id=f["batch_id"],
                collection=f["collection"],
                path=f["path"],
                source=f.get("source", "folder"),
                name=f.get("name", ""),
                attempt=int(f.get("attempt", "0")),
                first_failed_at=float(f.get("first_failed_at", "0")),
                unexpected_failures=int(f.get("unexpected_failures", "0")),
            )
        except KeyError as exc:
            raise MalformedJob(f"no {exc.args[0]!r} field") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise MalformedJob(f"unreadable fields ({type(exc).__name__})") from None
        if not (job.job_id and job.batch_id and job.collection and job.path):
            raise MalformedJob("an empty job_id, batch_id, collection or path")
        if job.attempt < 0 or job.unexpected_failures < 0 or not math.isfinite(job.first_failed_at):
            raise MalformedJob("a negative count or a non-finite time")
        return job


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _raw_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """A malformed entry's fields, readable and bounded, for its dead letter."""

    def text(value: Any) -> str:
        out = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return out if len(out) <= MAX_RAW_CHARS else out[:MAX_RAW_CHARS] + "…"

    raw = {text(k): text(v) for k, v in list(fields.items())[:MAX_RAW_FIELDS]}
    if len(fields) > MAX_RAW_FIELDS:
        raw["…"] = f"{len(fields) - MAX_RAW_FIELDS} more fields"
    return raw


def _ask_status(pipe: Any, batch_id: str, max_errors: int) -> None:
    """Queue on ``pipe`` the four reads :func:`_status` takes."""
    key = _batch_key(batch_id)
    pipe.hgetall(key)
    pipe.scard(key + ":done")
    pipe.scard(key + ":failed")
    pipe.lrange(key + ":errors", 0, max_errors - 1)


def _status(
    batch_id: str, meta: dict[Any, Any], done: int, failed: int, errors: list[Any]
) -> BatchStatus | None:
    """A batch's status from its hash, counts and errors (None: no such batch)."""
    if not meta:
        return None
    meta = {_s(k): _s(v) for k, v in meta.items()}
    total = int(meta.get("total", 0))
    pending = max(0, total - done - failed)
    found = {name: int(meta.get(name, 0)) for name in SyncCounts.model_fields}
    return BatchStatus(
        **found,
        batch_id=batch_id,
        collection=meta.get("collection", ""),
        label=meta.get("label", ""),
        total=total,
        done=done,
        failed=failed,
        pending=pending,
        finished=pending == 0 and "queuing" not in meta,
        created_at=float(meta.get("created_at", 0.0)),
        errors=[BatchError(**json.loads(e)) for e in errors],
    )


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
        self._requeue = redis.register_script(_REQUEUE_LUA)

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
        counts: SyncCounts | None = None,
        label: str = "",
    ) -> tuple[str, int]:
        """Queue one job per ``(path, source, name)``; returns ``(batch_id, count)``.

        The batch hash is written first with total 0 and grows as chunks are queued,
        so a batch that is still being queued never looks finished. ``counts``: what
        queuing a folder found, reported with the batch's status. ``label``: what was
        queued, in the caller's words (a folder, "3 uploaded files", a URL). No items: a
        batch that is finished at once. The batch joins the recent ones (``RECENT``) in
        the transaction that writes its hash.
        """
        batch_id = uuid.uuid4().hex
        key = _batch_key(batch_id)
        await self.ensure_group()
        now = time.time()
        meta: dict[str, str | int | float] = {
            "collection": collection,
            "label": batch_label(label),
            "total": 0,
            "created_at": now,
            "queuing": 1,
        }
        if counts is not None:
            meta.update(counts.model_dump())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=meta)  # type: ignore[arg-type]
            pipe.expire(key, BATCH_TTL_S)
            pipe.zadd(RECENT, {batch_id: now})
            pipe.zremrangebyrank(RECENT, 0, -1 - MAX_RECENT_BATCHES)
            pipe.expire(RECENT, BATCH_TTL_S)
            await pipe.execute()
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
        async with self.redis.pipeline(transaction=False) as pipe:
            _ask_status(pipe, batch_id, MAX_BATCH_ERRORS)
            answers = await pipe.execute()
        return _status(batch_id, *answers)

    async def recent_batches(self, limit: int = 20) -> list[BatchStatus]:
        """The newest ``limit`` batches still known (at most ``MAX_RECENT_BATCHES``),
        newest first, each with at most ``MAX_LISTED_ERRORS`` errors. Ids whose batch
        has expired are dropped from the list here."""
        if not 1 <= limit <= MAX_RECENT_BATCHES:
            raise ValueError(f"limit must be 1..{MAX_RECENT_BATCHES}")
        # Anything older than a batch lives is gone: its hash expired with it.
        await self.redis.zremrangebyscore(RECENT, "-inf", f"({time.time() - BATCH_TTL_S}")
        ids = [_s(x) for x in await self.redis.zrevrange(RECENT, 0, limit - 1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                _ask_status(pipe, batch_id, MAX_LISTED_ERRORS)
            answers = await pipe.execute()
        out: list[BatchStatus] = []
        gone: list[str] = []
        for i, batch_id in enumerate(ids):
            status = _status(batch_id, *answers[4 * i : 4 * i + 4])
            if status is None:
                gone.append(batch_id)
            else:
                out.append(status)
        if gone:
            await self.redis.zrem(RECENT, *gone)
        return out

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

    async def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        raw: list[Any] = await self.redis.lrange(DEAD, -count, -1)
        return [json.loads(x) for x in raw]

    async def requeue(
        self,
        reasons: Sequence[str] | None = None,
        limit: int | None = None,
        *,
        batch_id: str | None = None,
    ) -> RequeueResult:
        """Move dead letters back onto the stream (atomically, see ``_REQUEUE_LUA``): those
        with one of ``reasons`` (None: any), of the batch ``batch_id`` (None: of any),
        oldest first, at most ``limit`` (None: all). ``malformed_job`` letters stay: they
        are not jobs. A ``batch_id`` that is no batch id's shape: ValueError.

        Every job is requeued, whether its file still exists or not: the workers are the
        ones that read files (the caller may not even see them), and a job whose file is
        gone comes back as ``missing_file`` in its new batch. The jobs count in new
        batches, one per collection (a batch has one), so their progress can be followed;
        their old batches are finished and keep counting them as failed.
        """
        if batch_id is not None and not is_batch_id(batch_id):
            raise ValueError("not a batch id")
        await self.ensure_group()
        label = await self._requeue_label(batch_id, reasons)
        token = uuid.uuid4().hex
        args: list[str | int | float] = [token, limit or 0, time.time(), BATCH_TTL_S]
        args += [_batch_key(""), MALFORMED, batch_id or "", label, MAX_RECENT_BATCHES]
        args += list(reasons or ())
        answer: list[Any] = await self._requeue(keys=[DEAD, self.stream, RECENT], args=args)
        moved, rest = int(answer[0]), answer[1:]
        batches = [
            BatchQueued(batch_id=_s(rest[i + 1]), queued=int(rest[i + 2]), collection=_s(rest[i]))
            for i in range(0, len(rest), 3)
        ]
        if moved:
            log.info("requeued %d dead letter(s) in %d batch(es)", moved, len(batches))
        return RequeueResult(requeued=moved, batches=batches)

    async def _requeue_label(self, batch_id: str | None, reasons: Sequence[str] | None) -> str:
        """The label of a requeue's batches: which failed files went back."""
        why = f" ({', '.join(reasons)})" if reasons else ""
        if batch_id is None:
            return batch_label(f"dead letters re-queued{why}")
        was = await self.redis.hget(_batch_key(batch_id), "label")
        of = _s(was) if was else f"batch {batch_id}"
        # A requeue of a requeue names the first batch once, not "failed files of failed...".
        if (first := _REQUEUED_LABEL.fullmatch(of)) is not None:
            of = first["of"]
        return batch_label(f"failed files of {of}, re-queued{why}")

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
                    job = await self._job_or_dead_letter(_s(entry_id), fields)
                    if job is not None:
                        out.append(Delivery(_s(entry_id), job))
        return out

    async def has_stale(self, min_idle_ms: int) -> bool:
        """Whether an entry has been pending on a consumer for ``min_idle_ms`` (its worker
        stopped acknowledging: it died, most likely)."""
        pending = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=1, idle=min_idle_ms
        )
        return bool(pending)

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
            job = await self._job_or_dead_letter(eid, fields)
            if job is not None:
                out.append(Delivery(eid, job, counts.get(eid, 1) + 1))
        return out

    async def _job_or_dead_letter(self, entry_id: str, fields: dict[Any, Any]) -> Job | None:
        """The entry's job; or None once an entry that is none is dead-lettered."""
        try:
            return Job.from_fields(fields)
        except MalformedJob as exc:
            await self._dead_letter_malformed(entry_id, fields, str(exc))
            return None

    async def _dead_letter_malformed(
        self, entry_id: str, fields: dict[Any, Any], message: str
    ) -> None:
        raw = _raw_fields(fields)
        dead = {"job": raw, "reason": MALFORMED, "message": message, "at": time.time()}
        batch_id, job_id = raw.get("batch_id", ""), raw.get("job_id", "")
        # Counted in its batch when it names one that exists, so that the batch finishes.
        in_batch = bool(
            job_id
            and _BATCH_ID_RE.match(batch_id)
            and await self.redis.exists(_batch_key(batch_id))
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            if in_batch:
                key = _batch_key(batch_id)
                error = BatchError(
                    path=raw.get("name") or raw.get("path") or f"entry {entry_id}",
                    reason=MALFORMED,
                    message=message,
                )
                pipe.sadd(key + ":failed", job_id)
                pipe.expire(key + ":failed", BATCH_TTL_S)
                pipe.rpush(key + ":errors", error.model_dump_json())
                pipe.ltrim(key + ":errors", 0, MAX_BATCH_ERRORS - 1)
                pipe.expire(key + ":errors", BATCH_TTL_S)
            pipe.rpush(DEAD, json.dumps(dead))
            pipe.ltrim(DEAD, -MAX_DEAD_LETTERS, -1)
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        log.warning("stream entry %s is not a job (%s): dead-lettered", entry_id, message)

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

    async def retry_later(self, delivery: Delivery, delay_s: float, job: Job | None = None) -> None:
        """Re-queue after ``delay_s`` and acknowledge: ``job`` (the worker's record of the
        failure), by default the delivered job with ``attempt + 1``."""
        again = job if job is not None else replace(delivery.job, attempt=delivery.job.attempt + 1)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(DELAYED, {json.dumps(again.fields(), sort_keys=True): time.time() + delay_s})
            pipe.xack(self.stream, self.group, delivery.entry_id)
            pipe.xdel(self.stream, delivery.entry_id)
            await pipe.execute()

    async def promote_due(self, limit: int = 100) -> int:
        """Move retries whose time has come back onto the stream."""
        return int(await self._promote(keys=[DELAYED, self.stream], args=[time.time(), limit]))
