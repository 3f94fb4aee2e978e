"""Load run: concurrent searchers with and without indexing beside them (``make load``).

A program, not a test (``python -m benchmarks.load --out DIR``). It starts the stack as
processes (``LocalStack`` on free ports, the default settings, ``CLIP_PRETRAINED=random``
with ``--model``, default ViT-B-32), indexes ``--base-images`` small images cut from the
real photos (the index the searches look in, and the files re-scoring reads), then runs
``--searchers`` closed-loop clients (each from its own address, so that the API's limit per
client sees separate users; half by-image with a crop of an indexed image, half by-text)
through three phases:

- ``searches only``        ``--baseline-seconds``: nothing else runs;
- ``searches + indexing``  ``--seconds``: ``--index-images`` more images are queued at its
                           start and the workers index them the whole time (the encoder
                           batches query crops before indexing crops: this is the phase it
                           is for);
- ``indexing only``        ``--indexing-alone-seconds``: the searchers stop, indexing goes
                           on; its rate against the previous phase's is what the searches
                           cost the indexing.

Per phase: searches by status, p50/p95/p99 of the answered ones (by kind and all), the
images indexed and their rate. The rules: no 5xx but the admission's 503 (``too many
searches``, ``CPU queue is full``) and every 429/503 with ``Retry-After``; no search
unanswered within ``--deadline``. It prints a table, writes ``OUT/load-<time>.json`` and
exits 1 when a rule was broken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from imgsearch_devstack import LocalStack, StackConfig, wait_batch
from imgsearch_devstack.photos import load_photos

from .campaign_data import write_corpus
from .runs import interrupt_on_signals, machine
from .searchers import Outcome, SearchLoad, image_queries, summarize

COLLECTION = "load"
PHASES = ("searches only", "searches + indexing", "indexing only")
#: The admission's refusals (``imgsearch_api.admission``): 503s by design.
ADMISSION_MESSAGES = ("too many searches", "the server's CPU queue is full")
STACK_ENV = {"CLIP_PRETRAINED": "random", "LOG_LEVEL": "WARNING", "TORCH_THREADS": "2"}
WARMUP_S = 10.0


def by_design(o: Outcome) -> bool:
    """A refusal the limits are meant to give: 429, or the admission's 503, with
    ``Retry-After``."""
    if not o.retry_after:
        return False
    return o.status == 429 or (o.status == 503 and o.message.startswith(ADMISSION_MESSAGES))


def broken(outcomes: Sequence[Outcome]) -> list[str]:
    """Searches that break the rules (see the module doc), described."""
    out = []
    for o in outcomes:
        if o.status == 200 or by_design(o):
            continue
        out.append(
            f"{o.phase}: {o.kind} search at {o.started:.1f}s ({o.seconds:.2f}s): {o.label} "
            f"{o.code} {o.message!r} retry-after={o.retry_after}"
        )
    return out


class LoadRun:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.base = (work / "images" / "base").resolve()
        self.extra = (work / "images" / "indexing").resolve()

    def execute(self) -> dict[str, Any]:
        args = self.args
        photos = load_photos()
        base = write_corpus(photos, [self.base], args.base_images, args.seed)
        write_corpus(photos, [self.extra], args.index_images, args.seed + 1)
        env = {
            **STACK_ENV,
            "CLIP_MODEL": args.model,
            "INDEX_ROOTS": str(self.base.parent),
            **dict(kv.split("=", 1) for kv in args.env),
        }
        config = StackConfig.on_free_ports(self.work / "stack", workers=args.workers, extra_env=env)
        phases: dict[str, dict[str, Any]] = {}
        with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as c:
            t = time.monotonic()
            batch = self.queue(c, self.base)
            status = wait_batch(c, batch, timeout=args.setup_timeout)
            setup: dict[str, Any] = {"images": status.done, "failed": status.failed}
            setup["seconds"] = round(time.monotonic() - t, 1)
            load = SearchLoad(
                stack.api_url,
                image_queries([f.path for f in base], 40, args.seed),
                searchers=args.searchers,
                collection=COLLECTION,
                deadline_s=args.deadline,
                seed=args.seed,
            )
            load.phase = "warm-up"
            load.start()
            try:
                time.sleep(WARMUP_S)
                phases[PHASES[0]] = self.phase(load, c, None, args.baseline_seconds, PHASES[0])
                indexing = self.queue(c, self.extra)
                phases[PHASES[1]] = self.phase(load, c, indexing, args.seconds, PHASES[1])
            finally:
                outcomes = load.stop()
            phases[PHASES[2]] = self.phase(
                None, c, indexing, args.indexing_alone_seconds, PHASES[2]
            )
        for name, phase in phases.items():
            mine = [o for o in outcomes if o.phase == name]
            if mine:
                phase["searches"] = summarize(mine)
                phase["by_design_refusals"] = sum(1 for o in mine if by_design(o))
        bad = broken([o for o in outcomes if o.phase in PHASES])
        return {
            "benchmark": "load",
            "when": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "stack_env": env,
            "setup": setup,
            "phases": phases,
            "violations": len(bad),
            "violation_examples": bad[:30],
            "ok": not bad,
        }

    def queue(self, client: httpx.Client, folder: Path) -> str:
        r = client.post("/api/index/folder", json={"path": str(folder), "collection": COLLECTION})
        if r.status_code != 202:
            raise RuntimeError(f"queueing {folder} failed: {r.status_code} {r.text}")
        return str(r.json()["batch_id"])

    def phase(
        self,
        load: SearchLoad | None,
        client: httpx.Client,
        batch: str | None,
        seconds: float,
        name: str,
    ) -> dict[str, Any]:
        """Run ``seconds`` of phase ``name``: the searches are labelled with it; the
        images of ``batch`` indexed meanwhile are counted."""
        done_before = self.done(client, batch)
        if load is not None:
            load.phase = name
        started = time.monotonic()
        time.sleep(seconds)
        if load is not None:
            load.phase = "between phases"
        wall = time.monotonic() - started
        indexed = self.done(client, batch) - done_before
        return {
            "seconds": round(wall, 1),
            "images_indexed": indexed,
            "images_per_s": round(indexed / wall, 3) if wall else 0.0,
        }

    def done(self, client: httpx.Client, batch: str | None) -> int:
        if batch is None:
            return 0
        try:
            r = client.get(f"/api/index/batches/{batch}")
        except httpx.HTTPError:
            return 0
        return int(r.json()["done"]) if r.status_code == 200 else 0


def table(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        f"load: {a['searchers']} searchers (half by image, half by text), model {a['model']} "
        f"random, {report['setup']['images']} images indexed first "
        f"({report['setup']['seconds']:.0f} s), machine load "
        f"{report['machine']['load_average_1_5_15']}",
        "",
        f"{'phase':<22}{'s':>5}{'searches':>9}{'p50':>8}{'p95':>8}{'p99':>8}"
        f"{'img p50':>9}{'text p50':>9}{'indexed/s':>10}  answers",
    ]
    for name, p in report["phases"].items():
        s = p.get("searches")
        if s:
            lat, img, txt = s["latency_ms_200"], s["latency_ms_200_image"], s["latency_ms_200_text"]
            cols = (
                f"{s['searches']:>9}{lat['p50']:>8.0f}{lat['p95']:>8.0f}{lat['p99']:>8.0f}"
                f"{img['p50']:>9.0f}{txt['p50']:>9.0f}"
            )
            answers = str(s["by_status"])
        else:
            cols, answers = f"{'-':>9}{'-':>8}{'-':>8}{'-':>8}{'-':>9}{'-':>9}", ""
        lines.append(f"{name:<22}{p['seconds']:>5.0f}{cols}{p['images_per_s']:>10.3f}  {answers}")
    lines += [
        "",
        "latencies in ms, of the searches answered 200",
        "OK: no 5xx but the admission's, every 429/503 with Retry-After, none unanswered"
        if report["ok"]
        else f"FAILED: {report['violations']} searches broke the rules, e.g. "
        + "; ".join(report["violation_examples"][:3]),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/bench"), help="where the JSON goes")
    p.add_argument("--searchers", type=int, default=8, help="concurrent search clients")
    p.add_argument("--seconds", type=float, default=180.0, help="searches + indexing (s)")
    p.add_argument("--baseline-seconds", type=float, default=60.0, help="searches only (s)")
    p.add_argument("--indexing-alone-seconds", type=float, default=45.0, help="indexing only")
    p.add_argument("--base-images", type=int, default=30, help="images indexed before")
    p.add_argument("--index-images", type=int, default=300, help="images queued to index")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--deadline", type=float, default=60.0, help="s a search may take")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setup-timeout", type=float, default=900.0, help="s for the base index")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the services")
    p.add_argument("--work", type=Path, help="folder for the files and the stack (a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="load-", dir=args.work)).resolve()
    report = LoadRun(args, work).execute()
    report["work"] = str(work)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"load-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"\nJSON: {path}")
    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
