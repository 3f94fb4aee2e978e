"""Fault campaign: index a thousand images while the stack's processes are killed, then
check that nothing was lost, doubled or made up (``make chaos``).

A program, not a test (``python -m benchmarks.chaos --out DIR``); ``tests/e2e/test_chaos.py``
runs a short version of it. It:

1. cuts ``--images`` small images (160–320 px, JPEG, PNG and WebP, each of its own
   content) from the real photos of ``imgsearch_devstack.photos`` into ``--parts``
   folders, and writes a handful of deliberately bad files into one more;
2. starts the stack as processes (``LocalStack`` on free ports, supervised: a killed
   child is started again by the launcher, as ``make run`` does), with
   ``CLIP_PRETRAINED=random``;
3. queues the folders (the bad one and the first part at once, each next part when the
   queue has drained to half a part) and, while they are indexed, SIGKILLs workers, the
   encoder and the search API, and Redis (which comes back from its append-only file), at
   moments drawn at random from the run's progress (``--seed``): each kill fires when
   that many jobs are handled, after a random delay of up to a second. One fault at a
   time: the encoder, the API and Redis are each killed only when everything is up, and
   the next fault waits until the killed one answers again (workers are killed without
   waiting; the launcher restarts them in the background);
4. meanwhile ``--searchers`` clients search (by image and by text), each from its own
   address, and every answer is recorded: during an outage a search must be answered 503
   with ``Retry-After`` (429 the same) within ``--deadline`` seconds, or, while the API
   itself is down, find nobody listening; a 500, any other 5xx, a 503 without
   ``Retry-After`` or a search not answered in time is a violation; so is a 404
   ``collection_not_found`` once a search found the collection (before the first image is
   written, the campaign's collection does not exist yet, and that is the right answer);
5. once every batch is finished: the consumer group's pending list, the stream and the
   delayed set must be empty, the dead letters exactly the bad files with their reasons;
   the stack stops and the index is reconciled with the files (``benchmarks.reconcile``):
   missing 0, duplicates 0, phantoms 0, windows exactly those of their images.

It prints a table and writes ``OUT/chaos-<time>.json``; the exit status is 0 only when
every invariant holds. The encoder runs ``--model`` (default ViT-S-32, random weights:
the campaign is about delivery, not quality, and the smaller model lets a thousand images
index in minutes on two cores) with ``MAX_WINDOWS=--max-windows`` (default 2), and the
Edge shards optimize every 250 new points (``EDGE_OPTIMIZE_THRESHOLD``), so that API kills
may land in an optimize (the report counts those that did).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from imgsearch_common.windows import WindowLayout
from imgsearch_devstack import LocalStack, Proc, RestartPolicy, StackConfig
from imgsearch_devstack.photos import load_photos

from .campaign_data import CorpusFile, write_bad_files, write_corpus
from .reconcile import check_dead_letters, queue_state, reconcile_index
from .runs import get_json, interrupt_on_signals, machine, until
from .searchers import REFUSED, RESET, Outcome, SearchLoad, image_queries, summarize

COLLECTION = "chaos"
KINDS = ("worker", "encoder", "search-api", "redis")
#: Settings of the stack under the campaign. A killed worker's jobs are taken over after
#: 3 s instead of 2 min; retries and probes are capped at a few seconds so that the run
#: ends soon after the last fault (the defaults are for production, not for a test run).
STACK_ENV = {
    "CLIP_PRETRAINED": "random",
    "LOG_LEVEL": "INFO",
    "TORCH_THREADS": "2",
    "CLAIM_IDLE_MS": "3000",
    "MAINTENANCE_INTERVAL_S": "0.5",
    "RETRY_BASE_S": "0.2",
    "RETRY_MAX_S": "5",
    "BREAKER_PROBE_MAX_S": "2",
    "REDIS_RETRY_MAX_S": "2",
    # Background optimizes of the Edge shards (an out-of-process HNSW build, then a swap)
    # every 250 new points instead of 20 000: they happen during the campaign, and an API
    # kill may land in one (recorded per kill).
    "EDGE_OPTIMIZE_THRESHOLD": "250",
}
#: A restarted child must answer within this long, or the run fails (s).
RECOVERY_S = 180.0


@dataclass
class Kill:
    kind: str
    name: str
    pid: int
    at: float  # on the searchers' clock
    handled: int  # jobs handled when it fired
    back_at: float | None = None  # when it answered again (encoder, API, Redis)
    #: An API kill: whether a shard's optimize was under way (its copy existed).
    during_optimize: bool | None = None

    @property
    def outage_s(self) -> float | None:
        return None if self.back_at is None else round(self.back_at - self.at, 2)


@dataclass
class Run:
    kills: list[Kill] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    queue_answers: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def kill_plan(total: int, counts: dict[str, int], rng: random.Random) -> list[tuple[int, str]]:
    """When each kill fires: ``(jobs handled, kind)``, sorted, the thresholds drawn
    uniformly between 3 % and 90 % of ``total`` jobs."""
    lo, hi = max(1, int(total * 0.03)), max(2, int(total * 0.9))
    plan = [(rng.randint(lo, hi), kind) for kind, n in counts.items() for _ in range(n)]
    return sorted(plan)


def in_outage(outcome: Outcome, kills: Sequence[Kill], kind: str, margin_s: float = 0.5) -> bool:
    """Whether ``outcome`` overlaps an outage of ``kind`` (from the kill until it answered
    again, ``margin_s`` either side)."""
    for k in kills:
        if k.kind != kind:
            continue
        end = (k.back_at if k.back_at is not None else float("inf")) + margin_s
        if outcome.started <= end and outcome.ended >= k.at - margin_s:
            return True
    return False


def violations(outcomes: Sequence[Outcome], kills: Sequence[Kill]) -> list[str]:
    """Searches whose answer breaks the rules (see the module doc), described."""
    out = []
    # The collection exists from the first answer that searched it: it must not vanish.
    found = [o.started for o in outcomes if o.status == 200]
    exists_from = min(found) if found else float("inf")
    for o in outcomes:
        what = f"{o.kind} search at {o.started:.1f}s took {o.seconds:.2f}s: {o.label}"
        if o.status is None:
            if o.error in (REFUSED, RESET) and in_outage(o, kills, "search-api"):
                continue
            out.append(
                what + " (no answer outside an API outage)" if o.error != "timeout" else what
            )
        elif o.status in (429, 503):
            if not o.retry_after:
                out.append(what + " without Retry-After")
        elif o.status == 404 and o.code == "collection_not_found" and o.ended < exists_from:
            continue  # nothing indexed yet: the collection does not exist
        elif o.status != 200:
            out.append(what)
    return out


def by_outage(outcomes: Sequence[Outcome], kills: Sequence[Kill]) -> dict[str, dict[str, int]]:
    """Answers counted by what was down while they were under way."""
    table: dict[str, Counter[str]] = {}
    for o in outcomes:
        down = [k for k in ("encoder", "search-api", "redis") if in_outage(o, kills, k, 0.0)]
        key = "+".join(down) if down else "nothing down"
        table.setdefault(key, Counter())[o.label] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


class Campaign:
    """One run: the stack, the searchers, the faults, the queueing; see the module doc."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)
        self.run = Run()
        self.images_root = (work / "images").resolve()
        self.parts = [self.images_root / f"part-{i}" for i in range(args.parts)]
        self.bad_folder = self.images_root / "bad"
        self.files: list[CorpusFile] = []
        self.bad: dict[Path, str] = {}
        self.layout = WindowLayout(max_windows=args.max_windows)

    # --- set-up -------------------------------------------------------------------------

    def write_files(self) -> None:
        photos = load_photos()
        self.files = write_corpus(photos, self.parts, self.args.images, self.args.seed)
        jpeg = next(f for f in self.files if f.path.suffix == ".jpg").path.read_bytes()
        self.bad = write_bad_files(self.bad_folder, jpeg)

    def stack_config(self) -> StackConfig:
        env = {
            **STACK_ENV,
            "CLIP_MODEL": self.args.model,
            "MAX_WINDOWS": str(self.args.max_windows),
            "INDEX_ROOTS": str(self.images_root),
            **dict(kv.split("=", 1) for kv in self.args.env),
        }
        config = StackConfig.on_free_ports(
            self.work / "stack", workers=self.args.workers, extra_env=env
        )
        return dataclasses.replace(
            config,
            supervise=True,
            # The kills are ours: no crash-loop report for them (burst).
            restart_policy=RestartPolicy(base_s=0.2, max_s=2.0, stable_s=10.0, burst=1_000_000),
        )

    # --- the run ------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        args = self.args
        total = len(self.files) + len(self.bad)
        plan = kill_plan(
            total,
            {
                "worker": args.worker_kills,
                "encoder": args.encoder_kills,
                "search-api": args.api_kills,
                "redis": args.redis_kills,
            },
            self.rng,
        )
        started = time.monotonic()
        with LocalStack(self.stack_config()) as stack:
            startup_s = time.monotonic() - started
            queries = image_queries([f.path for f in self.files], 40, args.seed)
            load = SearchLoad(
                stack.api_url,
                queries,
                searchers=args.searchers,
                collection=COLLECTION,
                deadline_s=args.deadline,
                pause_s=args.search_pause,
                seed=args.seed,
            ).start()
            try:
                self.drive(stack, load, plan)
                finished = self.wait_finished(stack, load)
            finally:
                outcomes = load.stop()
            campaign_s = load.now()
            state = queue_state(stack.redis_url)
            status = get_json(stack.api_url + "/api/status")
            restarts = dict(stack.supervisor.restarts) if stack.supervisor else {}
            logs = str(stack.log_dir)
        index = reconcile_index(self.work / "stack" / "index", COLLECTION, self.files, self.layout)
        dead = check_dead_letters(state.dead_letters, self.bad)
        bad_searches = violations(outcomes, self.run.kills)
        kills = Counter(k.kind for k in self.run.kills)
        wanted = dict(zip(KINDS, (args.worker_kills, args.encoder_kills, args.api_kills,
                                  args.redis_kills), strict=True))  # fmt: skip
        problems = list(self.run.problems)
        if not finished:
            problems.append("the batches did not finish")
        problems += [f"{n} of {wanted[k]} {k} kills" for k, n in _short(kills, wanted).items()]
        if not index.ok:
            problems.append("the index does not match the files")
        if state.pending or state.stream or state.delayed:
            problems.append(f"the queue is not empty: {state.as_dict()}")
        if not dead["exact"]:
            problems.append("the dead letters are not exactly the bad files")
        if bad_searches:
            problems.append(f"{len(bad_searches)} searches broke the rules")
        return {
            "benchmark": "chaos",
            "when": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "stack_env": self.stack_config().extra_env,
            "startup_s": round(startup_s, 1),
            "campaign_s": round(campaign_s, 1),
            "images": len(self.files),
            "bad_files": {p.name: r for p, r in self.bad.items()},
            "kills": {k: kills.get(k, 0) for k in KINDS},
            "restarts": restarts,
            "outages_s": {
                k: [x.outage_s for x in self.run.kills if x.kind == k] for k in KINDS[1:]
            },
            "api_kills_during_optimize": sum(1 for k in self.run.kills if k.during_optimize),
            "kill_log": [dataclasses.asdict(k) for k in self.run.kills],
            "queued": self.run.queued,
            "queue_answers": dict(self.run.queue_answers),
            "reconciliation": index.as_dict(),
            "queue": state.as_dict(),
            "dead_letters": dead,
            "api_status": status,
            "searches": summarize(outcomes),
            "searches_by_outage": by_outage(outcomes, self.run.kills),
            "search_violations": bad_searches[:50],
            "problems": problems,
            "ok": not problems,
            "logs": logs,
        }

    def drive(self, stack: LocalStack, load: SearchLoad, plan: list[tuple[int, str]]) -> None:
        """Queue the folders and fire the kills of ``plan`` as the jobs get handled."""
        args = self.args
        folders = [self.bad_folder, *self.parts]
        part_size = max(1, len(self.files) // max(1, len(self.parts)))
        queued_jobs = 0
        deadline = time.monotonic() + args.timeout
        last_progress, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            handled = self.handled(stack)
            if handled is None:  # the API or Redis is away for a moment
                time.sleep(0.2)
                continue
            if handled != last_progress:
                last_progress, last_change = handled, time.monotonic()
            elif time.monotonic() - last_change > args.stall:
                self.run.problems.append(f"no progress for {args.stall:.0f} s at {handled} jobs")
                return
            while folders and (queued_jobs == 0 or handled >= queued_jobs - part_size // 2):
                count = self.queue_folder(stack, folders.pop(0))
                if count is None:
                    return
                queued_jobs += count
            if plan and handled >= plan[0][0]:
                _, kind = plan.pop(0)
                time.sleep(self.rng.uniform(0.0, 1.0))
                if not self.kill(stack, load, kind, handled):
                    return
                continue
            if not folders and not plan:
                return
            time.sleep(0.1)
        self.run.problems.append(f"the campaign ran out of time ({args.timeout:.0f} s)")

    def handled(self, stack: LocalStack) -> int | None:
        """Jobs done or failed so far over the queued batches (None: no answer now)."""
        n = 0
        for batch in self.run.queued:
            body = get_json(f"{stack.api_url}/api/index/batches/{batch['batch_id']}")
            if body is None:
                return None
            n += int(body["done"]) + int(body["failed"])
        return n

    def queue_folder(self, stack: LocalStack, folder: Path) -> int | None:
        """POST the folder (again after a 503, honouring Retry-After); the jobs queued."""
        for _ in range(60):
            try:
                r = httpx.post(
                    stack.api_url + "/api/index/folder",
                    json={"path": str(folder), "collection": COLLECTION},
                    timeout=60,
                )
            except httpx.HTTPError as exc:
                self.run.queue_answers[type(exc).__name__] += 1
                time.sleep(1.0)
                continue
            self.run.queue_answers[str(r.status_code)] += 1
            if r.status_code == 202:
                body = r.json()
                self.run.queued.append({"folder": folder.name, **body})
                return int(body["queued"])
            if r.status_code in (429, 503) and r.headers.get("retry-after"):
                time.sleep(float(r.headers["retry-after"]))
                continue
            self.run.problems.append(f"queueing {folder.name}: {r.status_code} {r.text[:200]}")
            return None
        self.run.problems.append(f"queueing {folder.name} never succeeded")
        return None

    def kill(self, stack: LocalStack, load: SearchLoad, kind: str, handled: int) -> bool:
        """SIGKILL one process of ``kind``; for all but workers, wait until it is back."""
        if kind == "worker":
            # A worker that has run for a moment (imports done, jobs in hand, most likely).
            def settled() -> list[Proc]:
                now = time.monotonic()
                return [w for w in stack.workers if w.alive() and now - w.started_at >= 2.0]

            if not until(lambda: bool(settled()), RECOVERY_S):
                self.run.problems.append("no worker came back to be killed")
                return False
            victim = self.rng.choice(settled())
            self.run.kills.append(_sigkill(victim, kind, load.now(), handled))
            return True
        proc = {"encoder": stack.encoder, "search-api": stack.api, "redis": stack.redis}[kind]
        assert proc is not None
        if not until(lambda: proc.alive() and proc.ready(), RECOVERY_S):
            self.run.problems.append(f"{kind} was not up to be killed")
            return False
        optimizing = any((self.work / "stack" / "index" / COLLECTION).glob(".*.optimizing"))
        kill = _sigkill(proc, kind, load.now(), handled)
        if kind == "search-api":
            kill.during_optimize = optimizing
        self.run.kills.append(kill)
        if not until(lambda: proc.pid != kill.pid and proc.alive() and proc.ready(), RECOVERY_S):
            self.run.problems.append(f"{kind} did not come back within {RECOVERY_S:.0f} s")
            return False
        kill.back_at = load.now()
        return True

    def wait_finished(self, stack: LocalStack, load: SearchLoad) -> bool:
        """Every queued batch finished, and every job of the corpus queued."""
        queued = sum(int(b["queued"]) for b in self.run.queued)
        if queued != len(self.files) + len(self.bad):
            self.run.problems.append(f"{queued} jobs queued of {len(self.files) + len(self.bad)}")
        deadline = time.monotonic() + self.args.stall
        while time.monotonic() < deadline:
            bodies = [
                get_json(f"{stack.api_url}/api/index/batches/{b['batch_id']}")
                for b in self.run.queued
            ]
            if all(b is not None and b["finished"] for b in bodies):
                # A few more searches on the recovered stack before the searchers stop.
                time.sleep(2.0)
                return True
            time.sleep(0.5)
        return False


def _sigkill(proc: Proc, kind: str, at: float, handled: int) -> Kill:
    # The Popen of now: the supervisor replaces proc.popen when it restarts the child.
    popen = proc.popen
    popen.kill()
    popen.wait(10)
    return Kill(kind, proc.name, popen.pid, at, handled)


def _short(done: Counter[str], wanted: dict[str, int]) -> dict[str, int]:
    return {k: done.get(k, 0) for k, n in wanted.items() if done.get(k, 0) < n}


def table(report: dict[str, Any]) -> str:
    r = report
    lines = [
        f"chaos: {r['images']} images + {len(r['bad_files'])} bad files, "
        f"{r['campaign_s']:.0f} s (stack start {r['startup_s']:.0f} s), "
        f"model {r['stack_env']['CLIP_MODEL']} random, load {r['machine']['load_average_1_5_15']}",
        "",
        f"{'kills':<14}{'SIGKILL':>8}{'restarts':>10}  outages (s)",
    ]
    for kind in KINDS:
        restarts = sum(n for name, n in r["restarts"].items() if _kind_of(name) == kind)
        outages = r["outages_s"].get(kind)
        shown = ", ".join(f"{x:.1f}" if x is not None else "-" for x in outages) if outages else ""
        lines.append(f"{kind:<14}{r['kills'][kind]:>8}{restarts:>10}  {shown}")
    lines.append(f"{'':<14}API kills during a shard optimize: {r['api_kills_during_optimize']}")
    rec = r["reconciliation"]
    q = r["queue"]
    d = r["dead_letters"]
    lines += [
        "",
        f"index         files {rec['files']}, full points {rec['full_points']}, missing "
        f"{rec['missing']}, duplicates/phantoms {rec['duplicates_or_phantoms']}, wrong payload "
        f"{rec['wrong_payload']}",
        f"windows       expected {rec['expected_windows']}, points {rec['window_points']}, "
        f"missing {rec['missing_windows']}, extra {rec['extra_windows']}, wrong "
        f"{rec['wrong_window_payload']}",
        f"queue         pending {q['pending']}, stream {q['stream']}, delayed {q['delayed']}, "
        f"dead letters {d['letters']} (bad files {d['expected']}: "
        f"{'exact' if d['exact'] else 'NOT exact'})",
    ]
    s = r["searches"]
    lines += [
        "",
        f"searches      {s['searches']}: {s['by_status']}; 200 p50/p95/p99 "
        f"{s['latency_ms_200']['p50']:.0f}/{s['latency_ms_200']['p95']:.0f}/"
        f"{s['latency_ms_200']['p99']:.0f} ms; slowest {s['max_s']:.1f} s; 429/503 without "
        f"Retry-After {s['busy_without_retry_after']}",
    ]
    for down, counts in r["searches_by_outage"].items():
        lines.append(f"  {down:<24}{counts}")
    lines += ["", "OK" if r["ok"] else "FAILED: " + "; ".join(r["problems"])]
    return "\n".join(lines)


def _kind_of(name: str) -> str:
    return "worker" if name.startswith("worker-") else name


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/bench"), help="where the JSON goes")
    p.add_argument("--images", type=int, default=1000, help="good images to index")
    p.add_argument("--parts", type=int, default=4, help="folders they are queued in")
    p.add_argument("--worker-kills", type=int, default=50)
    p.add_argument("--encoder-kills", type=int, default=3)
    p.add_argument("--api-kills", type=int, default=3)
    p.add_argument("--redis-kills", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--searchers", type=int, default=1, help="concurrent search clients")
    p.add_argument("--search-pause", type=float, default=0.5, help="s between a client's searches")
    p.add_argument("--deadline", type=float, default=30.0, help="s a search may take")
    p.add_argument("--model", default="ViT-S-32", help="open_clip model (random weights)")
    p.add_argument("--max-windows", type=int, default=2, help="MAX_WINDOWS of the stack")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0, help="s for the whole campaign")
    p.add_argument("--stall", type=float, default=240.0, help="s without progress = failure")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the services")
    p.add_argument("--work", type=Path, help="folder for the files and the stack (a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (kept on failure)")
    p.add_argument("--verbose", action="store_true", help="the launcher's restart messages too")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    # The launcher logs every restart with the last lines of the child's log: fifty of
    # them drown the table. Its errors (a crash loop) still show.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="chaos-", dir=args.work)).resolve()
    campaign = Campaign(args, work)
    campaign.write_files()
    report = campaign.execute()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"chaos-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    report["work"] = str(work)
    path.write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"\nJSON: {path}")
    if report["ok"] and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder (files, index, logs): {work}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
